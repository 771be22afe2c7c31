"""`eclor vboard`: a virtual board -- the firmware under unix MicroPython on a
pseudo-terminal that `mpremote` (or screen, picocom) uses like a USB serial
port.

    eclor vboard --role lamp --device lamp-test-0001            # fresh fs in vboards/EP/fs
    eclor vboard --role lamp --device EP --image build/EP/fs.img  # boot an `eclor build` image
    eclor vboard --role bin --device EP --fs DIR --set distance=0.4 --set temperature=21
    -> vboard lamp-test-0001: /dev/pts/7   (mpremote connect /dev/pts/7)
    eclor vboard --device EP --set power=0        # change inputs of the running board

Why a supervisor: unix MicroPython has the REPL, the raw REPL and raw-paste
mode mpremote needs, but no soft reset -- Ctrl-D at its prompt ends the
process, and mpremote (without `resume`) soft-resets before every command,
expecting "soft reboot\\r\\n" and a new raw-REPL prompt. So this process owns
the public pty and relays bytes to a `micropython -i tools/vboard_boot.py`
child on a private pty (Ctrl-C still interrupts the firmware: the private
tty sends SIGINT). It watches the stream for the REPL mode and, when the
child exits, does what a board would:

* Ctrl-D at the raw REPL (mpremote's soft reset): print "MPY: soft reboot",
  start a fresh interpreter without main.py and put it back in the raw REPL
  (its start-up banner is hidden) -- the ESP32 port does not run main.py
  after a soft reset from the raw REPL either;
* Ctrl-D at the friendly REPL, machine.soft_reset(): soft reboot that runs
  boot.py and main.py, i.e. the firmware starts again;
* machine.reset() (`mpremote reset`), hal reboot and watchdog (exit 4), or a
  crash: boot again with main.py;
* deep sleep (exit 3, hal/sim.py): quiet until the wake time the firmware
  saved, then boot with main.py -- unless something arrives on the console
  first: that is the technician pressing EN, the board boots at once (RTC
  state lost, as on an EN reset) and gets the bytes (mpremote's Ctrl-C).

The board's filesystem is a directory (--fs, default vboards/EP/fs, filled
on first use with the role's firmware as .mpy (--source: .py), board.json and the device's
config from `eclor provision` or a local one) or a LittleFS image (--image,
written in place like flash). vboard_boot.py mounts it at "/".

Simulated peripherals are the JSON file ECLOR_SIM_FILE that hal/sim.py
re-reads when it changes: vboards/EP/ctl/sim.json, mounted at /_vboard in the
board. --set key=value writes it (tmp + rename), at start or -- when a vboard
of that device already runs -- on the running board. Short names: lamp
power/presence/light/watts/lamp/supply; bin distance/temperature/tilt/battery
(-> bin.dist/temp/tilt/batt); any dotted key is taken as is.

The console (everything the board prints) is appended to vboards/EP/console.log.
"""
import errno
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
import tty
import zlib
from pathlib import Path

from eclor.tools import mpy
from eclor.tools.fleet import gwproc

BOOT = Path(__file__).with_name("vboard_boot.py")
EXIT_DEEPSLEEP, EXIT_RESET, EXIT_SOFT, EXIT_NOFS = 3, 4, 5, 6
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
STARTUP_S = 0.3     # console bytes wait this long after an interpreter starts
# What vboard_boot.py keeps on the heap (its block device / directory VFS
# classes and the machine shim: C drivers in flash on a board), measured
# ~3.9 KB (--fs) and ~4.5 KB (--image, with the LittleFS mount) on top of a
# bare interpreter. The interpreter gets this much more than --heap so that
# the firmware finds what an ESP32 leaves it.
BOOT_HEAP = 6 * 1024
EXIT_MARK = re.compile(rb"\x00\x1b\[vboard-exit (-?\d+)\]\x00")
ALIASES = {"bin": {"distance": "bin.dist", "dist": "bin.dist", "temperature": "bin.temp", "temp": "bin.temp",
                   "tilt": "bin.tilt", "battery": "bin.batt", "batt": "bin.batt"}}


def _marker_prefix(b):
    """True if b could be the beginning of an EXIT_MARK still to be completed."""
    head = b"\x00\x1b[vboard-exit "
    if len(b) <= len(head):
        return head.startswith(b)
    return b.startswith(head) and len(b) < len(head) + 8 and b[len(head):].lstrip(b"-").isdigit()


class VBoardError(Exception):
    pass


def add_arguments(p):
    p.add_argument("--device", required=True, metavar="EP")
    p.add_argument("--role", choices=("lamp", "bin"), help="role (default: from the device config)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fs", metavar="DIR", help="the board's filesystem directory (default vboards/EP/fs)")
    g.add_argument("--image", metavar="FILE", help="boot a LittleFS image from eclor build (written in place)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="simulated input (JSON value or text); on a running vboard: change it and exit")
    p.add_argument("--board", default="esp32_devkitc", help="board whose pins go in board.json of a fresh fs")
    p.add_argument("--gateway", default="coap://127.0.0.1:5683",
                   help="gateway for a fresh fs without a provisioned config (default coap://127.0.0.1:5683)")
    p.add_argument("--devices-dir", default="devices", help="eclor provision output (default: devices)")
    p.add_argument("--state-dir", default="vboards", help="where the vboards keep their files (default: vboards)")
    p.add_argument("--heap", type=int, default=None,
                   help="heap the firmware gets, bytes (default: an ESP32's %d, scaled for a 64-bit host "
                        "as in tools/mpy.device_heap; the vboard's own boot code gets %d more)"
                        % (mpy.ESP32_HEAP, BOOT_HEAP))
    p.add_argument("--speed", type=float, default=1.0, help="simulated clock speed (1 = real time)")
    p.add_argument("--no-main", action="store_true", help="power on to the REPL without running main.py")
    p.add_argument("--echo", action="store_true", help="also print the console on stdout")
    p.add_argument("--source", action="store_true", help="fill a fresh fs with .py sources instead of .mpy")


# -- simulated inputs ---------------------------------------------------------

def parse_sets(items, role):
    """["a.b=1", "power=0"] -> list of ([path...], value)."""
    out = []
    for it in items:
        if "=" not in it:
            raise VBoardError("--set %r: expected KEY=VALUE" % it)
        k, v = it.split("=", 1)
        k = ALIASES.get(role, {}).get(k.strip(), k.strip())
        if not k:
            raise VBoardError("--set %r: empty key" % it)
        try:
            val = json.loads(v)
        except ValueError:
            val = v
        out.append((k.split("."), val))
    return out


def update_inputs(path, sets):
    path = Path(path)
    try:
        cur = json.loads(path.read_text())
    except (OSError, ValueError):
        cur = {}
    for keys, val in sets:
        d = cur
        for k in keys[:-1]:
            if not isinstance(d.get(k), dict):
                d[k] = {}
            d = d[k]
        d[keys[-1]] = val
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cur, sort_keys=True))
    os.replace(tmp, path)
    return cur


# -- the board's filesystem ---------------------------------------------------

def prepare_fs(fs, ep, role, board, devices_dir, gateway, compiled=True):
    """Fill an empty fs directory like `eclor build` fills an image: .mpy for
    the board's architecture (the bytes that ship; compiling .py on the
    board would cost it heap), or sources with --source."""
    from eclor.boards import board as boards
    from eclor.tools import build, provision
    fs = Path(fs)
    if (fs / "main.py").exists() or (fs / "config.json").exists():
        return False
    b = boards.load(board)
    try:
        files = build.stage(b, role, ep, devices_dir, compiled=compiled)
    except build.BuildError as e:
        if "not provisioned" not in str(e):
            raise VBoardError(str(e)) from None
        files = build.stage(b, role, None, devices_dir, compiled=compiled)
        cfg = provision.make_config(ep, role, "vboard", "", 49.47, 5.93, gateway, board=b.name)
        files["config.json"] = (json.dumps(cfg, indent=1, sort_keys=True) + "\n").encode()
    for rel, data in files.items():
        (fs / rel).parent.mkdir(parents=True, exist_ok=True)
        (fs / rel).write_bytes(data)
    return True


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


# -- the supervisor -----------------------------------------------------------

class VBoard:
    def __init__(self, ep, state, fs=None, image=None, heap=None, speed=1.0, echo=False):
        self.ep = ep
        self.state = Path(state)
        self.ctl = self.state / "ctl"
        self.ctl.mkdir(parents=True, exist_ok=True)
        self.fs = fs
        self.image = image
        self.heap = heap or mpy.device_heap()
        self.speed = speed
        self.echo = echo
        self.log = open(self.state / "console.log", "ab", buffering=0)
        self.child = None
        self.cmaster = None
        self.raw = False
        self.hide_banner = False   # restarting into the raw REPL: swallow the friendly banner
        self.pending = b""         # host bytes waiting for a board that sleeps / reboots
        self.hold = b""            # child output held while hide_banner
        self.tail = b""            # output held back: maybe the start of EXIT_MARK
        self.boots = 0
        self.t0_real = time.time()
        self.t0_utc = time.time()
        self.stopping = False
        self.sleep_until = None
        self.spawned_at = 0.0
        self.failed = None         # a reason to stop serving (image does not mount)
        # The public pty. The slave fd stays open here so the pty survives
        # clients coming and going (mpremote opens and closes it per command).
        self.pmaster, self.pslave = os.openpty()
        tty.setraw(self.pslave)
        self.path = os.ttyname(self.pslave)
        fl = fcntl.fcntl(self.pmaster, fcntl.F_GETFL)
        fcntl.fcntl(self.pmaster, fcntl.F_SETFL, fl | os.O_NONBLOCK)

    def world_utc(self):
        return self.t0_utc + (time.time() - self.t0_real) * self.speed

    def env(self, run_main):
        extra = {
            "ECLOR_VBOARD_CTL": str(self.ctl.resolve()),
            "ECLOR_VBOARD_MAIN": "1" if run_main else "0",
            "ECLOR_SIM_FILE": "/_vboard/sim.json",
            "ECLOR_SIM_RTC_FILE": "/_vboard/rtc.json",
            "ECLOR_SIM_SPEED": repr(self.speed),
            "ECLOR_SIM_TIME": "%.3f" % self.world_utc(),
            "ECLOR_SIM_ID": "%012x" % (zlib.crc32(self.ep.encode()) | 0x5E0000000000),
        }
        if self.image:
            extra["ECLOR_VBOARD_IMAGE"] = str(Path(self.image).resolve())
        else:
            extra["ECLOR_VBOARD_FS"] = str(Path(self.fs).resolve())
        env = mpy.micropython_env([], extra)
        env["MICROPYPATH"] = ""     # nothing from the host: the board has only its fs
        return env

    def spawn(self, run_main, to_raw=False):
        m, s = os.openpty()
        tty.setraw(s)
        attrs = termios.tcgetattr(s)
        attrs[3] |= termios.ISIG     # Ctrl-C -> SIGINT -> KeyboardInterrupt in the firmware
        termios.tcsetattr(s, termios.TCSANOW, attrs)

        def child_setup():
            # SIGINT ignored until MicroPython installs its own handler (it
            # does when it starts executing): a Ctrl-C arriving during the
            # start-up must not kill the interpreter
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            gwproc.child_setup()                   # own session, dies with the supervisor
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)   # the private pty is its terminal: Ctrl-C works

        self.child = subprocess.Popen(
            mpy.micropython_cmd(["-i", str(BOOT)], self.heap + BOOT_HEAP), stdin=s, stdout=s, stderr=s,
            cwd=str(self.ctl), env=self.env(run_main), preexec_fn=child_setup, close_fds=True)
        os.close(s)
        self.cmaster = m
        self.boots += 1
        self.raw = False
        self.hide_banner = to_raw
        self.hold = b""
        self.spawned_at = time.monotonic()
        if to_raw:
            os.write(m, b"\r\x01")

    def to_host(self, data):
        self.log.write(data)
        if self.echo:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        try:
            os.write(self.pmaster, data)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EIO):
                raise
            # nobody reading: like a UART with no cable, output is lost

    def from_child(self, data):
        if self.hide_banner:
            self.hold += data
            i = self.hold.find(RAW_BANNER)
            if i < 0:
                return
            j = self.hold.rfind(b"MicroPython ", 0, i)
            data = (self.hold[:j] if j >= 0 else b"") + self.hold[i:]
            self.hold = b""
            self.hide_banner = False
        if RAW_BANNER in data:
            self.raw = True
        buf, self.tail = self.tail + data, b""
        m = EXIT_MARK.search(buf)
        if m:
            # main.py ended with SystemExit (reboot, deep sleep): end the
            # interpreter as the process exit it stands for
            self.to_host(buf[:m.start()])
            self.kill_child()
            self.child_exited()
            self.reboot_after(int(m.group(1)))
            return
        k = buf.rfind(b"\x00")
        if k >= 0 and _marker_prefix(buf[k:]):
            # maybe the start of the marker, split across reads: hold it back
            # (only then: NUL bytes are ordinary data in raw-paste mode)
            buf, self.tail = buf[:k], buf[k:]
        self.to_host(buf)

    def from_host(self, data):
        if self.child is None and self.sleep_until is not None:
            # a technician talking to a sleeping board presses EN: reset now
            # (RTC state is lost on an EN reset, so the wake state goes too)
            self.pending += data
            self.sleep_until = None
            try:
                (self.ctl / "rtc.json").unlink()
            except OSError:
                pass
            self.to_host(b"\r\n[vboard: woken from deep sleep by the console]\r\n")
            self.spawn(run_main=True)
            return
        if self.child is None or self.child.poll() is not None or self.pending \
                or time.monotonic() - self.spawned_at < STARTUP_S:
            self.pending += data      # delivered by serve() once the child is up
            return
        if self.raw and b"\x02" in data:
            self.raw = False
        os.write(self.cmaster, data)

    def child_exited(self):
        rc = self.child.wait()
        try:
            os.close(self.cmaster)
        except OSError:
            pass
        self.child = None
        if self.hold or self.tail:
            self.to_host(self.hold + self.tail)
            self.hold = self.tail = b""
        return rc

    def reboot_after(self, rc):
        """What the board does after the interpreter ended with rc."""
        if rc == 0 and self.raw:
            self.to_host(SOFT_REBOOT)
            self.spawn(run_main=False, to_raw=True)
        elif rc in (0, EXIT_SOFT):
            self.to_host(SOFT_REBOOT)
            self.spawn(run_main=True)
        elif rc == EXIT_NOFS:
            self.failed = "--image %s: not a LittleFS filesystem (eclor build makes one)" % self.image
            self.stopping = True
        elif rc == EXIT_DEEPSLEEP:
            try:
                wake = json.loads((self.ctl / "rtc.json").read_text())["utc"]
                delay = max(0.0, (wake - self.world_utc()) / self.speed)
            except (OSError, ValueError, KeyError):
                delay = 1.0
            self.sleep_until = time.time() + delay
        else:
            if rc != EXIT_RESET:
                self.to_host(b"\r\n[vboard: micropython exited with status %d; rebooting]\r\n" % rc)
                time.sleep(0.5)   # no hot loop if the firmware dies at once
            self.spawn(run_main=True)

    def serve(self, run_main=True):
        self.sleep_until = None
        self.spawn(run_main=run_main)
        while not self.stopping:
            if self.child is None and self.sleep_until is not None and time.time() >= self.sleep_until:
                self.sleep_until = None
                self.spawn(run_main=True)
            if self.pending and self.child and time.monotonic() - self.spawned_at >= STARTUP_S:
                data, self.pending = self.pending, b""
                self.from_host(data)
            fds = [self.pmaster] + ([self.cmaster] if self.child else [])
            try:
                r, _, _ = select.select(fds, [], [], 0.2)
            except InterruptedError:
                continue
            if self.pmaster in r:
                try:
                    data = os.read(self.pmaster, 4096)
                except OSError:
                    data = b""
                if data:
                    self.from_host(data)
            if self.child and self.cmaster in r:
                try:
                    data = os.read(self.cmaster, 4096)
                except OSError:
                    data = b""       # EIO: the child closed its side (exited)
                if data:
                    self.from_child(data)
                else:
                    self.reboot_after(self.child_exited())
            elif self.child and self.child.poll() is not None:
                # exited but its output may still be in the pty: drain, then reboot
                try:
                    while True:
                        r, _, _ = select.select([self.cmaster], [], [], 0)
                        if not r:
                            break
                        data = os.read(self.cmaster, 4096)
                        if not data:
                            break
                        self.from_child(data)
                except OSError:
                    pass
                self.reboot_after(self.child_exited())

    def kill_child(self):
        if self.child and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except OSError:
                pass
            self.child.wait()

    def stop(self):
        self.stopping = True
        if self.child and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.child.wait(2)
            except subprocess.TimeoutExpired:
                os.killpg(self.child.pid, signal.SIGKILL)
                self.child.wait()


def run(args):
    ep = args.device
    state = Path(args.state_dir) / ep
    pidfile = state / "vboard.pid"
    # a vboard of this device already runs: --set changes its inputs, nothing else
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text().split()[0])
        except (ValueError, IndexError):
            pid = None
        if pid and _pid_alive(pid):
            if not args.set:
                print("eclor vboard: %s already runs (pid %d) on %s" % (
                    ep, pid, (state / "pty").read_text().strip() if (state / "pty").exists() else "?"), file=sys.stderr)
                return 2
            try:
                cfg = json.loads((state / "role").read_text()) if (state / "role").exists() else {}
                now = update_inputs(state / "ctl" / "sim.json", parse_sets(args.set, cfg.get("role")))
            except VBoardError as e:
                print("eclor vboard: %s" % e, file=sys.stderr)
                return 2
            print("inputs of %s: %s" % (ep, json.dumps(now, sort_keys=True)))
            return 0
    role = args.role
    if not role:
        try:
            role = json.loads((Path(args.devices_dir) / ep / "config.json").read_text())["role"]
        except (OSError, ValueError, KeyError):
            print("eclor vboard: give --role lamp|bin (no provisioned config for %s)" % ep, file=sys.stderr)
            return 2
    state.mkdir(parents=True, exist_ok=True)
    try:
        sets = parse_sets(args.set, role)
        if args.image:
            img = Path(args.image)
            if not img.is_file():
                raise VBoardError("--image %s: no such file" % img)
            if img.stat().st_size % 4096 or img.stat().st_size < 16 * 4096:
                raise VBoardError("--image %s: not a LittleFS image of 4096-byte blocks" % img)
            fs = None
        else:
            fs = Path(args.fs) if args.fs else state / "fs"
            fs.mkdir(parents=True, exist_ok=True)
            prepare_fs(fs, ep, role, args.board, args.devices_dir, args.gateway, compiled=not args.source)
        (state / "ctl").mkdir(exist_ok=True)
        update_inputs(state / "ctl" / "sim.json", sets)
    except VBoardError as e:
        print("eclor vboard: %s" % e, file=sys.stderr)
        return 2
    vb = VBoard(ep, state, fs=fs, image=args.image, heap=args.heap, speed=args.speed, echo=args.echo)
    (state / "pty").write_text(vb.path + "\n")
    (state / "role").write_text(json.dumps({"role": role}))
    pidfile.write_text("%d\n" % os.getpid())

    def on_signal(signum, frame):
        vb.stopping = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("vboard %s (%s): %s   (mpremote connect %s)" % (ep, role, vb.path, vb.path), flush=True)
    print("  fs: %s   inputs: %s   console: %s" % (
        args.image or fs, state / "ctl" / "sim.json", state / "console.log"), flush=True)
    try:
        vb.serve(run_main=not args.no_main)
    finally:
        vb.stop()
        for f in (pidfile, state / "pty"):
            try:
                f.unlink()
            except OSError:
                pass
    if vb.failed:
        print("eclor vboard: %s" % vb.failed, file=sys.stderr)
        return 2
    return 0
