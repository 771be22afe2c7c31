"""Board definitions: load one boards/<name>.json and check it against what the
chip really is, so a typo in a pin or an offset is caught on the technician's
desk and not after the board has been flashed.

    from eclor.boards.board import load, names
    b = load("esp32_devkitc")       # or a path to a .json file
    b.chip, b.mpy_arch, b.firmware_offset, b.vfs_offset, b.vfs_size
    b.pins["lamp"]["pwm"]

Every error is a BoardError whose message names the file and the bad field,
e.g. ``esp32_devkitc.json: pins.lamp.pwm: GPIO 34 is input-only on esp32``.

Numbers may be written as JSON integers or as "0x..." strings (offsets read
better in hex, as in Espressif's partition tables).
"""
import json
from pathlib import Path

BLOCK_SIZE = 4096

# What the chips are (ESP-IDF datasheets; MicroPython esp32 port board.json
# for the firmware offset: 0x1000 for ESP32/S2, 0x0 for C3/S3/C6).
CHIPS = {
    "esp32": {
        "arch": "xtensawin", "offset": 0x1000,
        "gpio": set(range(0, 40)) - {20, 24, 28, 29, 30, 31},
        "flash": set(range(6, 12)),          # wired to the SPI flash
        "input_only": set(range(34, 40)),
        "adc1": set(range(32, 40)),          # ADC2 is unusable while Wi-Fi is on
    },
    "esp32c3": {
        "arch": "rv32imc", "offset": 0x0,
        "gpio": set(range(0, 22)),
        "flash": set(range(12, 18)),
        "input_only": set(),
        "adc1": set(range(0, 5)),
    },
    "esp32s3": {
        "arch": "xtensawin", "offset": 0x0,
        "gpio": set(range(0, 22)) | set(range(26, 49)),
        "flash": set(range(26, 33)),
        "input_only": set(),
        "adc1": set(range(1, 11)),
    },
}

# Pins each role needs, by what the firmware does with them.
ROLE_PINS = {
    "lamp": {
        "out": ("pwm", "relay", "meter_sel"),
        "in": ("meter_cf", "meter_cf1", "pir", "relay_fb"),
        "adc": ("light_adc", "current_adc"),
        "required": ("pwm", "relay", "pir", "light_adc"),
        # the power meter is either an HLW8012/BL0937 (CF, CF1, SEL) or a
        # current transformer on an ADC input
        "one_of": (("meter_cf", "meter_cf1", "meter_sel"), ("current_adc",)),
    },
    "bin": {
        "out": ("trigger", "temp_1wire", "sensor_power"),
        "in": ("echo", "tilt"),
        "adc": ("battery_adc",),
        "required": ("trigger", "echo", "temp_1wire", "tilt", "battery_adc"),
        "one_of": (),
    },
}
ROLE_EXTRA = {"bin": {"battery_divider"}}

FIELDS = ("name", "description", "micropython_board", "chip", "mpy_arch",
          "firmware_offset", "flash_size", "vfs", "pins")


class BoardError(ValueError):
    pass


def boards_dir():
    from eclor.tools import mpy
    return mpy.boards_dir()


def names():
    return sorted(p.stem for p in boards_dir().glob("*.json"))


class Board:
    def __init__(self, d):
        self.raw = d
        self.name = d["name"]
        self.description = d.get("description", "")
        self.micropython_board = d["micropython_board"]
        self.chip = d["chip"]
        self.mpy_arch = d["mpy_arch"]
        self.firmware_offset = _int(d["firmware_offset"])
        self.flash_size = _int(d["flash_size"])
        self.vfs_offset = _int(d["vfs"]["offset"])
        self.vfs_size = _int(d["vfs"]["size"])
        self.block_size = _int(d["vfs"].get("block_size", BLOCK_SIZE))
        self.block_count = self.vfs_size // self.block_size
        self.pins = d["pins"]

    def role_pins(self, role):
        return dict(self.pins[role])

    def __repr__(self):
        return "<Board %s %s>" % (self.name, self.chip)


def _int(v):
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 0)
    raise TypeError


def load(name_or_path):
    """Load and validate a board; name (boards/<name>.json) or a path."""
    p = Path(name_or_path)
    if p.suffix != ".json":
        p = boards_dir() / (str(name_or_path) + ".json")
        if not p.exists():
            raise BoardError("unknown board %r (known: %s)" % (str(name_or_path), ", ".join(names())))
    try:
        d = json.loads(p.read_text())
    except OSError as e:
        raise BoardError("%s: cannot read: %s" % (p, e.strerror)) from None
    except ValueError as e:
        raise BoardError("%s: not valid JSON: %s" % (p.name, e)) from None
    return validate(d, p.name)


def validate(d, where="board"):
    def bad(field, msg):
        raise BoardError("%s: %s: %s" % (where, field, msg))

    if not isinstance(d, dict):
        raise BoardError("%s: must be a JSON object" % where)
    for k in d:
        if k not in FIELDS:
            bad(k, "unknown field (expected one of %s)" % ", ".join(FIELDS))
    for k in FIELDS:
        if k != "description" and k not in d:
            bad(k, "missing")
    for k in ("name", "micropython_board", "chip", "mpy_arch"):
        if not isinstance(d[k], str) or not d[k]:
            bad(k, "must be a non-empty string")
    if where.endswith(".json") and d["name"] != where[:-5]:
        bad("name", "%r does not match the file name %s" % (d["name"], where))
    chip = CHIPS.get(d["chip"])
    if chip is None:
        bad("chip", "%r is not supported (supported: %s)" % (d["chip"], ", ".join(sorted(CHIPS))))
    if d["mpy_arch"] != chip["arch"]:
        bad("mpy_arch", "%r does not run on %s (needs %s)" % (d["mpy_arch"], d["chip"], chip["arch"]))

    def num(field, v):
        try:
            n = _int(v)
        except (TypeError, ValueError):
            bad(field, "must be an integer or a \"0x...\" string, got %r" % (v,))
        if n < 0:
            bad(field, "must not be negative")
        return n

    off = num("firmware_offset", d["firmware_offset"])
    if off != chip["offset"]:
        bad("firmware_offset", "%#x is wrong for %s (the ROM boots from %#x)" % (off, d["chip"], chip["offset"]))
    size = num("flash_size", d["flash_size"])
    if size not in [1 << n for n in range(20, 25)]:
        bad("flash_size", "%#x is not 1, 2, 4, 8 or 16 MiB" % size)
    vfs = d["vfs"]
    if not isinstance(vfs, dict):
        bad("vfs", "must be an object with offset, size, block_size")
    for k in vfs:
        if k not in ("offset", "size", "block_size"):
            bad("vfs." + k, "unknown field")
    for k in ("offset", "size"):
        if k not in vfs:
            bad("vfs." + k, "missing")
    bs = num("vfs.block_size", vfs.get("block_size", BLOCK_SIZE))
    if bs != BLOCK_SIZE:
        bad("vfs.block_size", "must be %d (the ESP32 flash sector; MicroPython's LittleFS uses it)" % BLOCK_SIZE)
    voff = num("vfs.offset", vfs["offset"])
    vsize = num("vfs.size", vfs["size"])
    if voff % bs:
        bad("vfs.offset", "%#x is not a multiple of the block size %d" % (voff, bs))
    if vsize % bs or vsize < 16 * bs:
        bad("vfs.size", "%#x must be a multiple of %d and at least 16 blocks" % (vsize, bs))
    if voff <= 0x10000:
        bad("vfs.offset", "%#x overlaps the bootloader, partition table or firmware" % voff)
    if voff + vsize > size:
        bad("vfs.size", "region %#x..%#x runs past the end of the %#x-byte flash" % (voff, voff + vsize, size))

    pins = d["pins"]
    if not isinstance(pins, dict) or not pins:
        bad("pins", "must be an object with one entry per role (lamp, bin)")
    for role, rp in pins.items():
        spec = ROLE_PINS.get(role)
        where_r = "pins." + role
        if spec is None:
            bad(where_r, "unknown role (roles: %s)" % ", ".join(ROLE_PINS))
        if not isinstance(rp, dict):
            bad(where_r, "must be an object name -> GPIO number")
        known = set(spec["out"] + spec["in"] + spec["adc"]) | ROLE_EXTRA.get(role, set())
        for k in rp:
            if k not in known:
                bad(where_r + "." + k, "unknown pin (known: %s)" % ", ".join(sorted(known)))
        for k in spec["required"]:
            if k not in rp:
                bad(where_r + "." + k, "missing")
        if spec["one_of"] and not any(all(k in rp for k in group) for group in spec["one_of"]):
            bad(where_r, "needs a power meter: %s" % " or ".join("+".join(g) for g in spec["one_of"]))
        used = {}
        for k, v in rp.items():
            f = where_r + "." + k
            if k == "battery_divider":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1.0 <= v <= 20.0:
                    bad(f, "must be the divider ratio, a number from 1 to 20, got %r" % (v,))
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                bad(f, "must be a GPIO number, got %r" % (v,))
            if v not in chip["gpio"]:
                bad(f, "GPIO %d does not exist on %s" % (v, d["chip"]))
            if v in chip["flash"]:
                bad(f, "GPIO %d is wired to the SPI flash on %s" % (v, d["chip"]))
            if k in spec["out"] and v in chip["input_only"]:
                bad(f, "GPIO %d is input-only on %s" % (v, d["chip"]))
            if k in spec["adc"] and v not in chip["adc1"]:
                bad(f, "GPIO %d is not an ADC1 channel on %s (ADC2 stops working with Wi-Fi)" % (v, d["chip"]))
            if v in used:
                bad(f, "GPIO %d is already used by %s.%s" % (v, where_r, used[v]))
            used[v] = k
    return Board(d)
