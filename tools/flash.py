"""`eclor flash`: write MicroPython and a device's filesystem image to one or
more boards with esptool.

    eclor flash --port /dev/ttyUSB0 --port /dev/ttyUSB1 --board esp32_devkitc \\
                --firmware ESP32_GENERIC-v1.29.bin lamp-villerupt-0001 lamp-villerupt-0002
    eclor flash --port /dev/ttyUSB0 --board esp32_devkitc --fs-only lamp-villerupt-0001

The firmware goes at the board's offset (0x1000 on ESP32, 0x0 on C3/S3), the
LittleFS image `eclor build --device EP` made goes at the board's vfs offset.
Everything that can be checked without the board is checked first (files
exist, the firmware is an ESP image for this chip, each image fits its flash
region, the fs image was built for this board), so a bad input never leaves a
board half-written. esptool is called through its Python API (esptool.main
with an argv list), writes both regions in one session and checks each with
the ROM's MD5. Several ports are flashed one after the other, each with its own
device (a device's identity never goes on two boards; a build without
--device may), then a summary table; the exit status is 0 only if every
board was flashed and verified.

Every failure is one line naming the port and what to do.
"""
import json
import sys
import time
from pathlib import Path

from eclor.boards import board as boards

# chip id in the ESP image extended header (esptool's IMAGE_CHIP_ID)
IMAGE_CHIP_IDS = {0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 13: "esp32c6"}


class FlashError(Exception):
    """A problem found before touching any board: one line, exit status 2."""


def add_arguments(p):
    p.add_argument("ep", metavar="EP", nargs="+",
                   help="device name (its image is BUILD_DIR/EP/fs.img); one per --port, in the same order "
                        "(or one device-less build, e.g. esp32_devkitc-lamp, for every port)")
    p.add_argument("--port", action="append", required=True,
                   help="serial port or socket://HOST:PORT; repeat to flash several boards in sequence")
    p.add_argument("--board", required=True, help="board definition (boards/*.json)")
    p.add_argument("--firmware", metavar="MICROPYTHON.bin", help="MicroPython firmware image for the board")
    p.add_argument("--fs-only", action="store_true", help="write only the filesystem image (MicroPython already on the board)")
    p.add_argument("--image", metavar="FILE", help="filesystem image (default: BUILD_DIR/EP/fs.img)")
    p.add_argument("--build-dir", default="build", help="where `eclor build` put its output (default: build)")
    p.add_argument("--baud", type=int, default=460800)
    p.add_argument("--no-stub", action="store_true", help="talk to the ROM bootloader directly (slower)")
    p.add_argument("--before", default="default-reset", help="esptool --before (default-reset, no-reset, ...)")
    p.add_argument("--after", default="hard-reset", help="esptool --after (hard-reset, no-reset, ...)")
    p.add_argument("--connect-attempts", type=int, default=7)


def image_chip(data):
    """Chip an ESP application/bootloader image is built for, or None if the
    bytes are not an ESP image."""
    if len(data) < 24 or data[0] != 0xE9:
        return None
    return IMAGE_CHIP_IDS.get(int.from_bytes(data[12:14], "little"), "unknown chip id %d" % int.from_bytes(data[12:14], "little"))


def plan(args, ep=None):
    """Check everything that can be checked offline for one device; returns
    (board, regions) where regions is a list of (offset, path, label)."""
    ep = ep or args.ep[0]
    try:
        b = boards.load(args.board)
    except boards.BoardError as e:
        raise FlashError("board: %s" % e) from None
    regions = []
    if not args.fs_only:
        if not args.firmware:
            raise FlashError("missing firmware file: give --firmware %s-<version>.bin "
                             "(micropython.org/download/%s) or use --fs-only"
                             % (b.micropython_board, b.micropython_board))
        fw = Path(args.firmware)
        if not fw.is_file():
            raise FlashError("missing firmware file: %s does not exist" % fw)
        head = fw.read_bytes()[:64]
        chip = image_chip(head)
        if chip is None:
            raise FlashError("firmware %s is not an ESP image (first byte is not 0xE9)" % fw)
        if chip != b.chip:
            raise FlashError("firmware %s is built for %s, board %s is %s" % (fw, chip, b.name, b.chip))
        room = b.vfs_offset - b.firmware_offset
        size = fw.stat().st_size
        if size > room:
            raise FlashError("firmware %s is larger than its region: %d bytes > %d (%#x..%#x)"
                             % (fw, size, room, b.firmware_offset, b.vfs_offset))
        regions.append((b.firmware_offset, fw, "firmware"))
    img = Path(args.image) if args.image else Path(args.build_dir) / ep / "fs.img"
    if not img.is_file():
        raise FlashError("missing filesystem image %s: run eclor build --board %s --role ROLE --device %s"
                         % (img, b.name, ep))
    meta = img.parent / "build.json"
    device = None
    if not args.image and meta.is_file():
        built = json.loads(meta.read_text())
        device = built.get("device")
        if built.get("board") != b.name:
            raise FlashError("image %s was built for board %s, not %s" % (img, built.get("board"), b.name))
        if device is not None and device != ep:
            raise FlashError("image %s was built for device %s, not %s" % (img, device, ep))
    size = img.stat().st_size
    if size > b.vfs_size:
        raise FlashError("filesystem image %s is larger than the vfs region: %d bytes > %d" % (img, size, b.vfs_size))
    if size % b.block_size:
        raise FlashError("filesystem image %s is not a whole number of %d-byte blocks" % (img, b.block_size))
    regions.append((b.vfs_offset, img, "fs"))
    return b, regions, device


def pair(args):
    """[(port, ep, board, regions)]: one device identity per board."""
    ports, eps = args.port, args.ep
    if len(eps) == len(ports):
        pairs = list(zip(ports, eps))
    elif len(eps) == 1:
        pairs = [(p, eps[0]) for p in ports]
    else:
        raise FlashError("%d ports but %d devices: give one device per --port, in the same order"
                         % (len(ports), len(eps)))
    dup = sorted({p for p in ports if ports.count(p) > 1})
    if dup:
        raise FlashError("port %s given twice" % dup[0])
    out = []
    for port, ep in pairs:
        b, regions, device = plan(args, ep)
        if device is not None and len(eps) == 1 and len(ports) > 1:
            raise FlashError("%s holds the identity of device %s: %d boards would get it; give one device "
                             "per --port (or flash a build without --device)" % (regions[-1][1], device, len(ports)))
        out.append((port, ep, b, regions))
    return out


def _one_line(port, b, err):
    """esptool's multi-line FatalError -> (one line, board possibly partly written)."""
    msg = str(err).strip()
    first = msg.splitlines()[0] if msg else type(err).__name__
    if "Could not open" in msg or "could not open port" in msg:
        return "no board on %s: the port does not exist or is busy" % port, False
    if "No serial data received" in msg or "Failed to connect" in msg:
        return "no board answering on %s: is it in bootloader mode (hold BOOT, press EN)?" % port, False
    if "Wrong chip argument" in msg or "Wrong --chip" in msg:
        found = first.split("This chip is ", 1)[-1].split(",", 1)[0]
        return "wrong chip on %s: found %s, board %s is %s" % (port, found, b.name, b.chip), False
    if "RAM download mode" in msg or "stub" in first.lower():
        return ("flasher stub refused on %s (%s): try again with --no-stub" % (port, first)), False
    if "will not fit in" in msg and "bytes of flash" in msg:
        have = msg.split("will not fit in ", 1)[1].split(" ", 1)[0]
        return ("flash too small on %s: the chip has %s bytes, board %s needs %d (wrong --board?)"
                % (port, have, b.name, b.flash_size)), False
    return ("write failed on %s: %s -- the flash may be partly written, flash this board again"
            % (port, first)), True


def flash_port(port, b, regions, args, out=sys.stdout):
    """Flash one board. Returns (ok, seconds, detail)."""
    import esptool
    argv = ["--chip", b.chip, "--port", port, "--baud", str(args.baud),
            "--before", args.before, "--after", args.after,
            "--connect-attempts", str(args.connect_attempts)]
    if args.no_stub:
        argv.append("--no-stub")
    argv += ["write-flash", "--flash-size", "keep"]
    for off, path, _ in regions:
        argv += ["%#x" % off, str(path)]
    t0 = time.monotonic()
    try:
        esptool.main(argv)
    except (Exception, SystemExit) as e:  # FatalError, serial errors, click usage errors
        line, _ = _one_line(port, b, e)
        return False, time.monotonic() - t0, line
    detail = ", ".join("%s %#x (%d KiB)" % (label, off, (Path(path).stat().st_size + 1023) // 1024)
                       for off, path, label in regions) + ", MD5 verified"
    return True, time.monotonic() - t0, detail


def run(args):
    try:
        jobs = pair(args)
    except FlashError as e:
        print("eclor flash: %s" % e, file=sys.stderr)
        return 2
    results = []
    n = len(jobs)
    for i, (port, ep, b, regions) in enumerate(jobs, 1):
        print("== [%d/%d] %s: %s on %s ==" % (i, n, ep, b.name, port), flush=True)
        ok, secs, detail = flash_port(port, b, regions, args)
        if not ok:
            print("eclor flash: %s" % detail, file=sys.stderr, flush=True)
        results.append((port, ep, ok, secs, detail))
    w = max(len("port"), max(len(r[0]) for r in results))
    we = max(len("device"), max(len(r[1]) for r in results))
    print()
    print("%-*s  %-*s  %-6s  %6s  %s" % (w, "port", we, "device", "result", "time", "detail"))
    for port, ep, ok, secs, detail in results:
        print("%-*s  %-*s  %-6s  %5.1fs  %s" % (w, port, we, ep, "ok" if ok else "FAILED", secs, detail))
    failed = sum(1 for r in results if not r[2])
    print("%d of %d board(s) flashed%s" % (n - failed, n, "" if not failed else ", %d FAILED" % failed))
    return 0 if not failed else 1
