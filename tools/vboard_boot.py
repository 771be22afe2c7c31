# The MicroPython side of a virtual board (eclor vboard), run as
#   micropython -X heapsize=... -i vboard_boot.py
# It makes the unix port look like a board's filesystem and boot, then the
# interpreter's own REPL (friendly and raw, thanks to -i) serves mpremote.
#
# 1. The board's filesystem becomes "/": a host directory (VfsPosix) or a
#    LittleFS image file (VfsLfs2 over the file-backed block device below,
#    the same on-disk format the ESP32 port mounts). Paths like "/lib" and
#    the firmware's relative paths then mean what they mean on a board, and
#    `mpremote fs` / `mip install` write into the board, not the host.
# 2. The supervisor's control directory is mounted at /_vboard: the simulated
#    inputs (ECLOR_SIM_FILE) and the RTC kept across deep sleep live there.
# 3. machine.reset() / machine.soft_reset() exist: they end the process
#    with a status the supervisor turns into a reboot (the unix port has no
#    reset; `mpremote reset` calls machine.reset()). A SystemExit out of
#    main.py (hal.sim's reboot and deep sleep) is passed on as a marker.
# 4. boot.py, then main.py when the supervisor says so (ECLOR_VBOARD_MAIN=1:
#    power-on, reset, soft reboot from the friendly REPL; not after a soft
#    reboot from the raw REPL -- as on the ESP32 port).
# Names are underscored and deleted: this module's globals are the REPL's.
import os
import sys
import vfs

_EXIT_RESET = 4  # = hal.sim EXIT_REBOOT: the supervisor restarts with main.py
_EXIT_SOFT = 5
_EXIT_NOFS = 6  # the image does not mount: the supervisor stops
_EXIT_MARK = "\x00\x1b[vboard-exit %d]\x00"


class FileBlockDev:
    """A LittleFS block device over an image file (extended interface: offset
    reads/writes, erase via ioctl 6), like the ESP32 port's flash partition."""

    def __init__(self, f, block_size):
        self.f = f
        self.bs = block_size
        f.seek(0, 2)
        self.n = f.tell() // block_size
        self.erased = b"\xff" * 256  # allocated once (erase runs often), small (heap is scarce)

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=None):
        if off is None:  # simple interface: erase then program whole blocks
            off = 0
        self.f.seek(block * self.bs + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase: NOR flash erases to 0xFF
            self.f.seek(arg * self.bs)
            for _ in range(self.bs // 256):
                self.f.write(self.erased)
            return 0
        if op == 3:  # sync
            self.f.flush()
            return 0
        return 0


class DirFS(vfs.VfsPosix):
    """The board's directory, whose ilistdir also gives sizes as LittleFS
    does on a board (mpremote `fs ls` shows them). Only ilistdir is Python:
    stat and open stay native, imports cost no extra heap."""

    def ilistdir(self, d):
        base = d if d.endswith("/") else d + "/"
        for e in super().ilistdir(d):
            yield (e[0], e[1], e[2], 0 if e[1] == 0x4000 else self.stat(base + e[0])[6])


class _Machine:
    pass


def _vb_machine():
    import machine
    m = _Machine()
    for k in dir(machine):
        if not k.startswith("__"):
            setattr(m, k, getattr(machine, k))

    # defaults bind sys.exit now: the module globals are deleted below
    def reset(_exit=sys.exit, _rc=_EXIT_RESET):
        _exit(_rc)

    def soft_reset(_exit=sys.exit, _rc=_EXIT_SOFT):
        _exit(_rc)

    m.reset = reset
    m.soft_reset = soft_reset
    m.__name__ = "machine"
    sys.modules["machine"] = m


def _vb_mount():
    img = os.getenv("ECLOR_VBOARD_IMAGE")
    ctl = os.getenv("ECLOR_VBOARD_CTL")
    if img:
        f = open(img, "r+b")
        try:
            root = vfs.VfsLfs2(FileBlockDev(f, int(os.getenv("ECLOR_VBOARD_BLOCK") or 4096)))
        except OSError as e:
            # not LittleFS: a board would format it; a file given by mistake
            # must not be, so stop here (the supervisor reports it)
            print("vboard: the image is not a LittleFS filesystem (%s)" % e)
            _vb_halt(_EXIT_NOFS)
    else:
        root = DirFS(os.getenv("ECLOR_VBOARD_FS"))
    ctlfs = vfs.VfsPosix(ctl) if ctl else None
    vfs.umount("/")
    vfs.mount(root, "/")
    if ctlfs:
        vfs.mount(ctlfs, "/_vboard")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]


def _vb_halt(code):
    # With -i a SystemExit drops to the REPL instead of ending the process,
    # and the unix port has no os._exit: tell the supervisor (which strips
    # this marker and ends the process) and wait for it.
    print(_EXIT_MARK % code, end="")
    import time
    while True:
        time.sleep(1)


def _vb_run(name):
    try:
        os.stat(name)
    except OSError:
        return
    with open(name) as f:
        src = f.read()
    try:
        exec(compile(src, name, "exec"), globals())
    except SystemExit as e:
        code = e.args[0] if e.args else 0
        _vb_halt(code if isinstance(code, int) else 1)


_vb_mount()
_vb_machine()
_vb_run("boot.py")
if os.getenv("ECLOR_VBOARD_MAIN") == "1":
    _vb_run("main.py")
del _vb_mount, _vb_machine, _vb_run, _vb_halt, _EXIT_NOFS, _Machine, _EXIT_RESET, _EXIT_SOFT, _EXIT_MARK, FileBlockDev, DirFS
del os, sys, vfs
