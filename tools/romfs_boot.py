# MicroPython (unix port) boot step of the ROMFS launcher (tools/romfs.py):
# what a ROMFS-enabled firmware does at start-up -- mount the ROM partition
# at /rom, /rom and /rom/lib first on sys.path -- then run the script given
# after this one as __main__. The partition is the launcher's buffer
# (ECLOR_ROMFS=address:size), outside the GC heap like the board's flash.
import os
import sys
import uctypes
import vfs

_a, _n = os.getenv("ECLOR_ROMFS").split(":")
vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(_a), int(_n))), "/rom")
sys.path[:0] = ["/rom", "/rom/lib"]
sys.argv.pop(0)
_script = sys.argv[0]
_d = _script.rpartition("/")[0]
sys.path[sys.path.index(__file__.rpartition("/")[0] or "")] = _d or ""   # the script's directory, not this one's
del _a, _n, _d
_g = {"__name__": "__main__", "__file__": _script}
with open(_script) as _f:
    _code = compile(_f.read(), _script, "exec")
del _f
exec(_code, _g)
