"""`eclor build`: the files that go on a board's filesystem, as a LittleFS
image for `eclor flash` and as a package for `mpremote mip install`.

    eclor build --board esp32_devkitc --role lamp [--device lamp-villerupt-0001] [--out DIR]

Writes to DIR (default build/EP with --device, else build/BOARD-ROLE):

    fs.img        LittleFS v2 image of the board's vfs region (block size 4096,
                  block count = vfs size / 4096), what MicroPython mounts at /
    package.json  {"urls": [[dest, "files/dest"], ...], "deps": [], "version": V}
                  for `mpremote mip install --target / DIR/package.json`
    files/        the same files, loose
    build.json    what was built: board, role, device, version, sha256 of fs.img

What goes in: the firmware compiled by mpy-cross for the board's
architecture (main.py stays source), the shared modules plus only the role's
own (a bin carries no lamp code), board.json (the board's name, chip and the
role's pins, for the ESP32 HAL), and with --device that device's config.json
and secrets.json from `eclor provision` (DEVICES_DIR/EP/). The simulated HAL
modules ship too: they are never imported on an ESP32 (flash, not RAM) and
they let the very same image boot in a virtual board.

Reproducible: files are written in sorted order, littlefs stores no
timestamps and mpy-cross output depends only on the source, so the same
inputs give the same bytes (the tests build twice and compare).
"""
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from eclor.boards import board as boards
from eclor.tools import mpy

ROLES = ("lamp", "bin")
# Path prefixes (relative to firmware/) that belong to one role only.
ROLE_ONLY = {"lamp": ("lamp/", "hal/lamp_"), "bin": ("waste/", "hal/bin_")}
# LittleFS geometry of MicroPython's VfsLfs2 defaults (readsize/progsize 32).
LFS_READ, LFS_PROG, LFS_LOOKAHEAD = 32, 32, 32


class BuildError(Exception):
    pass


def add_arguments(p):
    p.add_argument("--board", required=True, help="board definition (boards/*.json): %s" % ", ".join(boards.names()))
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--device", metavar="EP", help="include this device's config (from eclor provision)")
    p.add_argument("--devices-dir", default="devices", help="where eclor provision wrote EP/config.json (default: devices)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: build/EP or build/BOARD-ROLE)")
    p.add_argument("--source", action="store_true", help="ship .py sources instead of .mpy (for debugging)")
    p.add_argument("--frozen", action="store_true",
                   help="for a MicroPython built with boards/manifest.py: only main.py, board.json and the config")
    p.add_argument("--romfs", action="store_true",
                   help="for a ROMFS-enabled MicroPython: the modules go to romfs.img (mpremote romfs deploy), "
                        "executed in place from flash; fs.img keeps main.py, board.json and the config")


def firmware_version(src=None):
    text = (Path(src or mpy.firmware_dir()) / "version.py").read_text()
    m = re.search(r"VERSION\s*=\s*[\"']([^\"']+)", text)
    return m.group(1) if m else "0"


def role_sources(role, src=None):
    """Firmware files (relative paths) that a board of this role needs."""
    if role not in ROLES:
        raise BuildError("role must be one of %s, got %r" % (", ".join(ROLES), role))
    src = Path(src or mpy.firmware_dir())
    other = [p for r, prefixes in ROLE_ONLY.items() if r != role for p in prefixes]
    rels = list(mpy.firmware_sources(src))
    rels += [p.relative_to(src) for p in sorted(src.rglob("*.json")) if "__pycache__" not in p.parts]
    return [r for r in rels if not r.as_posix().startswith(tuple(other))]


def device_files(ep, role, devices_dir):
    """config.json (+ secrets.json) of a provisioned device, checked against the role."""
    d = Path(devices_dir) / ep
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise BuildError("device %s is not provisioned: %s missing (run eclor provision %s ...)" % (ep, cfg_path, ep))
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise BuildError("%s: not valid JSON: %s" % (cfg_path, e)) from None
    if cfg.get("ep") != ep:
        raise BuildError("%s: ep is %r, not %r" % (cfg_path, cfg.get("ep"), ep))
    if cfg.get("role") != role:
        raise BuildError("device %s has role %r, not %r" % (ep, cfg.get("role"), role))
    out = {"config.json": cfg_path.read_bytes()}
    sec = d / "secrets.json"
    if sec.is_file():
        out["secrets.json"] = sec.read_bytes()
    return out


def stage(b, role, device=None, devices_dir="devices", compiled=True, src=None, frozen=False, rom=None):
    """All the files of the board's filesystem: {posix path: bytes}. With
    frozen, the modules are in the firmware (boards/manifest.py): only
    main.py goes on the filesystem. With rom (a dict), the compiled modules
    go there instead (the ROMFS partition's content) and main.py stays."""
    src = Path(src or mpy.firmware_dir())
    files = {}
    if rom is not None:
        for path, data in _role_files(b, role, src, compiled=True).items():
            (files if path == "main.py" else rom)[path] = data
    elif frozen:
        role_sources(role, src)          # checks the role
        files["main.py"] = (src / "main.py").read_bytes()
    else:
        files.update(_role_files(b, role, src, compiled))
    if role not in b.pins:
        raise BuildError("board %s has no pins for role %s" % (b.name, role))
    files["board.json"] = (json.dumps({"board": b.name, "chip": b.chip, "role": role,
                                       "pins": b.role_pins(role)}, sort_keys=True) + "\n").encode()
    if device:
        files.update(device_files(device, role, devices_dir))
    return files


def _role_files(b, role, src, compiled):
    files = {}
    with tempfile.TemporaryDirectory(prefix="eclor-build-") as tmp:
        tsrc = Path(tmp) / "src"
        for rel in role_sources(role, src):
            (tsrc / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, tsrc / rel)
        if compiled:
            out = Path(tmp) / "out"
            try:
                mpy.compile_tree(out, tsrc, arch=b.mpy_arch)
            except Exception as e:  # CalledProcessError from mpy-cross
                raise BuildError("mpy-cross failed: %s" % (getattr(e, "stderr", "") or e).strip()) from None
        else:
            out = tsrc
        for p in sorted(out.rglob("*")):
            if p.is_file():
                files[p.relative_to(out).as_posix()] = p.read_bytes()
    return files


def make_image(files, block_size, block_count):
    """LittleFS v2 image holding files; same files -> same bytes."""
    from littlefs import LittleFS
    fs = LittleFS(block_size=block_size, block_count=block_count, read_size=LFS_READ,
                  prog_size=LFS_PROG, lookahead_size=LFS_LOOKAHEAD)
    made = set()
    for path in sorted(files):
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                fs.mkdir(d)
                made.add(d)
        with fs.open(path, "wb") as f:
            f.write(files[path])
    used = fs.used_block_count if hasattr(fs, "used_block_count") else None
    data = bytes(fs.context.buffer)
    if len(data) != block_size * block_count:
        raise BuildError("littlefs produced %d bytes, expected %d" % (len(data), block_size * block_count))
    return data, used


def _write(path, data, private=False):
    """tmp + rename, so an interrupted build never leaves a truncated image."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600 if private else 0o644)
    os.replace(tmp, path)


def build(board_name, role, device=None, out=None, devices_dir="devices", compiled=True, frozen=False,
          romfs=False):
    if frozen and romfs:
        raise BuildError("--frozen and --romfs exclude each other: the modules are either in the firmware or in ROMFS")
    try:
        b = boards.load(board_name)
    except boards.BoardError as e:
        raise BuildError(str(e)) from None
    rom = {} if romfs else None
    files = stage(b, role, device, devices_dir, compiled, frozen=frozen, rom=rom)
    out = Path(out or (Path("build") / (device or "%s-%s" % (b.name, role))))
    out.mkdir(parents=True, exist_ok=True)
    private = "secrets.json" in files
    if private:
        os.chmod(out, 0o700)
    image, used = make_image(files, b.block_size, b.block_count)
    _write(out / "fs.img", image, private)
    rom_image = None
    if rom is not None:
        from eclor.tools import romfs as romfs_mod
        rom_image = romfs_mod.image(rom)
        _write(out / "romfs.img", rom_image)
    elif (out / "romfs.img").exists():
        (out / "romfs.img").unlink()
    if (out / "files").exists():
        shutil.rmtree(out / "files")
    for path in sorted(files):
        (out / "files" / path).parent.mkdir(parents=True, exist_ok=True)
        _write(out / "files" / path, files[path], private and path == "secrets.json")
    version = firmware_version()
    pkg = {"urls": [[p, "files/" + p] for p in sorted(files)], "deps": [], "version": version}
    _write(out / "package.json", (json.dumps(pkg, indent=1) + "\n").encode())
    meta = {"board": b.name, "chip": b.chip, "role": role, "device": device, "version": version,
            "mpy_arch": None if not (compiled or romfs) or frozen else b.mpy_arch, "frozen": frozen,
            "romfs": None if rom_image is None else {
                "bytes": len(rom_image), "sha256": hashlib.sha256(rom_image).hexdigest(),
                "files": {p: hashlib.sha256(rom[p]).hexdigest()[:16] for p in sorted(rom)}},
            "vfs_offset": "%#x" % b.vfs_offset, "vfs_size": "%#x" % b.vfs_size,
            "block_size": b.block_size, "block_count": b.block_count,
            "fs_sha256": hashlib.sha256(image).hexdigest(),
            "files": {p: hashlib.sha256(files[p]).hexdigest()[:16] for p in sorted(files)}}
    _write(out / "build.json", (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    return out, meta, sum(len(v) for v in files.values())


def run(args):
    try:
        out, meta, nbytes = build(args.board, args.role, args.device, args.out, args.devices_dir,
                                  compiled=not args.source, frozen=args.frozen, romfs=args.romfs)
    except BuildError as e:
        print("eclor build: %s" % e, file=sys.stderr)
        return 2
    print("built %s %s%s for %s (%s): %d files, %d bytes" % (
        meta["role"], meta["version"], " device " + args.device if args.device else "", meta["board"],
        "frozen modules" if args.frozen else meta["mpy_arch"] or "source", len(meta["files"]), nbytes))
    if meta["romfs"]:
        print("  %s  ROMFS %d B, %d modules: mpremote romfs deploy %s (needs a ROMFS-enabled firmware)" % (
            out / "romfs.img", meta["romfs"]["bytes"], len(meta["romfs"]["files"]), out / "romfs.img"))
    print("  %s  LittleFS %d x %d B, sha256 %s" % (out / "fs.img", meta["block_count"], meta["block_size"], meta["fs_sha256"][:16]))
    print("  %s  mpremote mip install --target / %s" % (out / "package.json", out / "package.json"))
    return 0
