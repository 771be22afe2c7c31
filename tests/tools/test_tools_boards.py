"""Board definitions: every shipped board loads, and each kind of mistake is
refused with one message that names the file and the bad field."""
import copy
import json

import pytest

from eclor.boards import board as boards
from eclor.tools import cli


def test_shipped_boards_load_with_the_esp32_facts():
    names = boards.names()
    assert {"esp32_devkitc", "esp32c3_devkitm", "esp32s3_devkitc"} <= set(names)
    b = boards.load("esp32_devkitc")
    assert (b.chip, b.mpy_arch, b.firmware_offset, b.flash_size) == ("esp32", "xtensawin", 0x1000, 4 << 20)
    assert (b.vfs_offset, b.vfs_size, b.block_size, b.block_count) == (0x200000, 0x200000, 4096, 512)
    c3 = boards.load("esp32c3_devkitm")
    assert (c3.chip, c3.mpy_arch, c3.firmware_offset) == ("esp32c3", "rv32imc", 0)
    s3 = boards.load("esp32s3_devkitc")
    assert (s3.chip, s3.mpy_arch, s3.firmware_offset, s3.vfs_offset + s3.vfs_size) == ("esp32s3", "xtensawin", 0, 8 << 20)
    for n in names:
        bd = boards.load(n)
        assert set(bd.pins) == {"lamp", "bin"}
        assert bd.vfs_offset + bd.vfs_size <= bd.flash_size


BASE = json.loads((boards.boards_dir() / "esp32_devkitc.json").read_text())


def _mut(path, value):
    d = copy.deepcopy(BASE)
    *parents, last = path
    cur = d
    for k in parents:
        cur = cur[k]
    if value is KeyError:
        del cur[last]
    else:
        cur[last] = value
    return d


@pytest.mark.parametrize("path,value,field,words", [
    (("chip",), "esp8266", "chip", "not supported"),
    (("mpy_arch",), "rv32imc", "mpy_arch", "does not run on esp32"),
    (("firmware_offset",), "0x0", "firmware_offset", "wrong for esp32"),
    (("firmware_offset",), "zero", "firmware_offset", "integer"),
    (("flash_size",), "0x300000", "flash_size", "MiB"),
    (("vfs", "offset"), "0x200800", "vfs.offset", "multiple of the block size"),
    (("vfs", "offset"), "0x8000", "vfs.offset", "overlaps"),
    (("vfs", "size"), "0x300000", "vfs.size", "past the end"),
    (("vfs", "block_size"), 512, "vfs.block_size", "4096"),
    (("vfs", "size"), KeyError, "vfs.size", "missing"),
    (("pins", "lamp", "pwm"), 34, "pins.lamp.pwm", "input-only"),
    (("pins", "lamp", "relay"), 7, "pins.lamp.relay", "SPI flash"),
    (("pins", "lamp", "relay"), 25, "pins.lamp.relay", "already used by pins.lamp.pwm"),
    (("pins", "lamp", "light_adc"), 4, "pins.lamp.light_adc", "ADC1"),
    (("pins", "lamp", "pir"), 40, "pins.lamp.pir", "does not exist"),
    (("pins", "lamp", "pir"), "35", "pins.lamp.pir", "GPIO number"),
    (("pins", "lamp", "pwm"), KeyError, "pins.lamp.pwm", "missing"),
    (("pins", "lamp", "dimmer"), 2, "pins.lamp.dimmer", "unknown pin"),
    (("pins", "bin", "battery_divider"), 0.5, "pins.bin.battery_divider", "ratio"),
    (("pins", "bin", "echo"), KeyError, "pins.bin.echo", "missing"),
    (("pins", "kiosk"), {}, "pins.kiosk", "unknown role"),
    (("flsh_size",), 4, "flsh_size", "unknown field"),
])
def test_each_bad_field_is_named(path, value, field, words):
    with pytest.raises(boards.BoardError) as e:
        boards.validate(_mut(path, value), "esp32_devkitc.json")
    msg = str(e.value)
    assert msg.startswith("esp32_devkitc.json: %s: " % field), msg
    assert words in msg
    assert "\n" not in msg


def test_lamp_meter_needs_pulse_pins_or_current_adc():
    d = _mut(("pins", "lamp", "meter_cf"), KeyError)
    with pytest.raises(boards.BoardError, match="pins.lamp: needs a power meter"):
        boards.validate(d, "esp32_devkitc.json")
    d["pins"]["lamp"].pop("meter_cf1")
    d["pins"]["lamp"].pop("meter_sel")
    d["pins"]["lamp"]["current_adc"] = 39
    assert boards.validate(d, "esp32_devkitc.json").pins["lamp"]["current_adc"] == 39


def test_file_errors_and_unknown_board(tmp_path):
    with pytest.raises(boards.BoardError, match=r"unknown board 'esp33' \(known: esp32_devkitc"):
        boards.load("esp33")
    p = tmp_path / "broken.json"
    p.write_text("{ not json")
    with pytest.raises(boards.BoardError, match="broken.json: not valid JSON"):
        boards.load(p)
    p = tmp_path / "other.json"
    p.write_text(json.dumps(BASE))
    with pytest.raises(boards.BoardError, match="other.json: name: 'esp32_devkitc' does not match"):
        boards.load(p)


def test_cli_unknown_board_is_one_line(capsys, tmp_path):
    assert cli.main(["build", "--board", "nope", "--role", "lamp", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown board 'nope'" in err
