"""ROMFS: `eclor build --romfs` and the host launcher (tools/romfs.py) that
mounts an image outside MicroPython's GC heap, as a ROMFS partition is on a
board. Checked in the real unix MicroPython: the image mounts, the firmware
imports from it, and its bytecode stays out of the heap."""
import json
import subprocess

from eclor.tools import cli, mpy, romfs

ROM_SCRIPT = r"""
import gc, os, sys
print('PATH', sys.path[0], sys.path[1])
import app, coap.codec
print('FILE', app.__file__, coap.codec.__file__)
print('BOARD', open('/rom/' + sys.argv[1]).read() if len(sys.argv) > 1 else '-')
try:
    open('/rom/x', 'w')
    print('RO no')
except OSError:
    print('RO yes')
"""

# The same modules imported in place from /rom and copied into the heap from
# the writable filesystem, side by side in one process.
HEAP_SCRIPT = r"""
import gc, os
names = %r
def cost(load):
    gc.collect(); a = gc.mem_alloc()
    mods = [load(n) for n in names]
    gc.collect(); b = gc.mem_alloc()
    return b - a, mods
import sys
for n in names:                 # their dependencies stay loaded: both sides count the modules alone
    __import__(n)
old = [sys.modules.pop(n) for n in names]   # kept alive: the re-import's cost is not offset by freeing them
rom, keep1 = cost(lambda n: __import__(n))
for n in names:
    with open('/rom/' + n.replace('.', '/') + '.mpy', 'rb') as f:
        data = f.read()
    with open('copy_' + n.replace('.', '_') + '.mpy', 'wb') as f:
        f.write(data)
    del data
fs, keep2 = cost(lambda n: __import__('copy_' + n.replace('.', '_')))
print('HEAP', rom, fs)
"""


def _image(tmp_path):
    tree = tmp_path / "fw"
    mpy.compile_tree(tree)
    img = tmp_path / "fw.romfs"
    img.write_bytes(romfs.tree_image(tree))
    return img


def test_image_is_reproducible_and_boots_the_firmware_from_rom(tmp_path):
    img = _image(tmp_path)
    assert romfs.tree_image(tmp_path / "fw") == img.read_bytes()
    script = tmp_path / "s.py"
    script.write_text(ROM_SCRIPT)
    r = mpy.run([str(script), "version.mpy"], path_dirs=[], cwd=tmp_path, timeout=60, romfs=img)
    assert r.returncode == 0, r.stdout + r.stderr
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    assert out["PATH"] == "/rom /rom/lib"
    assert out["FILE"] == "/rom/app.mpy /rom/coap/codec.mpy"
    assert out["BOARD"].startswith("M\x06")            # a file of the image read back
    assert out["RO"] == "yes"


def test_rom_bytecode_stays_out_of_the_heap(tmp_path):
    img = _image(tmp_path)
    script = tmp_path / "h.py"
    names = ["coap.codec", "fmt.cbor", "lamp.schedule", "waste.ranger"]
    script.write_text(HEAP_SCRIPT % (names,))
    r = mpy.run([str(script)], path_dirs=[], cwd=tmp_path, heapsize=256 * 1024, timeout=60, romfs=img)
    assert r.returncode == 0, r.stdout + r.stderr
    rom, fs = map(int, r.stdout.split("HEAP ")[1].split())
    assert 0 < rom < 0.75 * fs, (rom, fs)


def test_launcher_status_and_errors(tmp_path):
    img = _image(tmp_path)
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('RUN')\nsys.exit(3)\n")
    r = subprocess.run(mpy.micropython_cmd([str(bad)], romfs=img), capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "RUN" in r.stdout, (r.returncode, r.stdout, r.stderr)
    r = subprocess.run(mpy.micropython_cmd([], romfs=img), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "script" in r.stderr


def test_build_romfs_puts_the_modules_in_the_image_and_keeps_main_on_the_filesystem(tmp_path, capsys):
    out = tmp_path / "b"
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--romfs", "--out", str(out)]) == 0
    meta = json.loads((out / "build.json").read_text())
    assert sorted(meta["files"]) == ["board.json", "main.py"]
    rom = meta["romfs"]
    assert "app.mpy" in rom["files"] and "waste/cycle.mpy" in rom["files"]
    assert not any(p.startswith("lamp/") for p in rom["files"])
    assert rom["bytes"] == (out / "romfs.img").stat().st_size
    again = tmp_path / "b2"
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--romfs", "--out", str(again)]) == 0
    assert (again / "romfs.img").read_bytes() == (out / "romfs.img").read_bytes()
    assert "mpremote romfs deploy" in capsys.readouterr().out
    # --frozen and --romfs exclude each other
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--romfs", "--frozen",
                     "--out", str(tmp_path / "x")]) == 2
