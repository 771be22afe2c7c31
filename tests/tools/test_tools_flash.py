"""eclor flash through esptool's Python API against the ESP32 ROM bootloader
emulator (tools/romemu.py) on socket:// ports: the bytes land where the board
expects them and pass esptool's MD5 check; every failure is one clear line and
the summary never hides a board that was not (fully) flashed."""
import json
import os
import socket
import threading

import pytest

from eclor.tools import cli
from eclor.tools.romemu import RomEmulator, TcpServer

ROM = ["--no-stub", "--before", "no-reset", "--after", "no-reset", "--connect-attempts", "1"]


def fake_firmware(path, size=200_000, chip_id=0):
    """An ESP image header (magic 0xE9, chip id at byte 12) + deterministic body."""
    head = bytes([0xE9, 3, 2, 0x20]) + b"\x00\x00\x08\x40" + bytes([0xEE, 0, 0, 0]) + chip_id.to_bytes(2, "little")
    body = bytes((i * 7 + 3) & 0xFF for i in range(size - len(head)))
    path.write_bytes(head + body)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A provisioned + built bin device (its fs image is what gets flashed)."""
    d = tmp_path_factory.mktemp("flash")
    assert cli.main(["provision", "bin-rusange-0003", "--role", "bin", "--zone", "sud", "--commune", "Russange",
                     "--lat", "49.48", "--lon", "5.95", "--gateway", "coap://127.0.0.1:5683", "--no-declare",
                     "--out", str(d / "devices")]) == 0
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--device", "bin-rusange-0003",
                     "--devices-dir", str(d / "devices"), "--out", str(d / "build" / "bin-rusange-0003")]) == 0
    # a second device, and a device-less image (the same bytes may go on many boards)
    assert cli.main(["provision", "bin-rusange-0004", "--role", "bin", "--zone", "sud", "--commune", "Russange",
                     "--lat", "49.48", "--lon", "5.95", "--gateway", "coap://127.0.0.1:5683", "--no-declare",
                     "--out", str(d / "devices")]) == 0
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--device", "bin-rusange-0004",
                     "--devices-dir", str(d / "devices"), "--out", str(d / "build" / "bin-rusange-0004")]) == 0
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin",
                     "--out", str(d / "build" / "esp32_devkitc-bin")]) == 0
    return d


@pytest.fixture
def emulator():
    servers = []

    def make(**kw):
        s = TcpServer(RomEmulator(**kw)).start()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def _flash(built, ports, *extra, eps=("bin-rusange-0003",)):
    argv = ["flash", "--board", "esp32_devkitc", "--build-dir", str(built / "build")] + ROM
    for p in ports:
        argv += ["--port", p]
    return cli.main(argv + list(extra) + list(eps))


def test_flash_writes_firmware_and_fs_and_verifies(built, emulator, tmp_path, capsys):
    fw = fake_firmware(tmp_path / "ESP32_GENERIC.bin")
    srv = emulator()
    assert _flash(built, [srv.url], "--firmware", str(fw)) == 0
    out = capsys.readouterr().out
    img = (built / "build" / "bin-rusange-0003" / "fs.img").read_bytes()
    assert srv.emu.dump(0x1000, len(fw.read_bytes())) == fw.read_bytes()
    assert srv.emu.dump(0x200000, 0x200000) == img
    assert srv.emu.dump(0x0, 0x1000) == b"\xff" * 0x1000          # nothing else touched
    assert "Hash of data verified" in out                          # esptool's MD5 check ran
    last = out.strip().splitlines()
    assert last[-1] == "1 of 1 board(s) flashed"
    assert last[-2].startswith(srv.url) and " ok " in last[-2] and "MD5 verified" in last[-2]


def test_several_ports_in_sequence_with_summary(built, emulator, capsys):
    a, b = emulator(), emulator()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "socket://127.0.0.1:%d" % s.getsockname()[1]
    s.close()                                                      # nothing listens there
    rc = _flash(built, [a.url, dead, b.url], "--fs-only", eps=("bin-rusange-0003", "bin-x-9", "bin-rusange-0004"))
    assert rc == 2 and "missing filesystem image" in capsys.readouterr().err    # checked before any board
    assert a.emu.log == [] and b.emu.log == []
    rc = _flash(built, [a.url, dead, b.url], "--fs-only", eps=("bin-rusange-0003", "bin-rusange-0004", "bin-rusange-0004"))
    cap = capsys.readouterr()
    assert rc == 1
    img3 = (built / "build" / "bin-rusange-0003" / "fs.img").read_bytes()
    img4 = (built / "build" / "bin-rusange-0004" / "fs.img").read_bytes()
    assert img3 != img4                                # each board its own identity
    assert a.emu.dump(0x200000, len(img3)) == img3 and b.emu.dump(0x200000, len(img4)) == img4
    rows = cap.out.strip().splitlines()[-4:]
    assert rows[0].startswith(a.url) and " bin-rusange-0003 " in rows[0] and " ok " in rows[0]
    assert rows[1].startswith(dead) and "FAILED" in rows[1] and "no board on %s" % dead in rows[1]
    assert rows[2].startswith(b.url) and " bin-rusange-0004 " in rows[2] and " ok " in rows[2]
    assert rows[3] == "2 of 3 board(s) flashed, 1 FAILED"
    assert cap.err.count("\n") == 1 and "eclor flash: no board on" in cap.err


def test_board_lost_mid_write_is_reported_not_hidden(built, emulator, capsys):
    srv = emulator(fail_after=300_000)
    assert _flash(built, [srv.url], "--fs-only") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("eclor flash: write failed on %s" % srv.url) and "partly written" in err
    assert "\n" not in err


def test_silent_port_is_no_board_answering(built, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    conns = []
    threading.Thread(target=lambda: conns.append(s.accept()), daemon=True).start()
    url = "socket://127.0.0.1:%d" % s.getsockname()[1]
    try:
        assert _flash(built, [url], "--fs-only") == 1
    finally:
        s.close()
    err = capsys.readouterr().err.strip()
    assert err == "eclor flash: no board answering on %s: is it in bootloader mode (hold BOOT, press EN)?" % url


def test_wrong_chip_is_one_line(built, emulator, tmp_path, capsys):
    srv = emulator()                                  # answers as an ESP32
    img = tmp_path / "c3.img"
    img.write_bytes(b"\xff" * 0x10000)
    rc = cli.main(["flash", "--board", "esp32c3_devkitm", "--port", srv.url, "--fs-only", "--image", str(img)]
                  + ROM + ["bin-x"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err == "eclor flash: wrong chip on %s: found ESP32, board esp32c3_devkitm is esp32c3" % srv.url
    assert srv.emu.written == 0


@pytest.mark.parametrize("case,words", [
    ("no_firmware", "missing firmware file: give --firmware ESP32_GENERIC-<version>.bin"),
    ("absent_firmware", "missing firmware file: "),
    ("not_esp_image", "is not an ESP image"),
    ("c3_firmware", "is built for esp32c3, board esp32_devkitc is esp32"),
    ("big_firmware", "is larger than its region: 2097153 bytes > 2093056"),
    ("big_image", "is larger than the vfs region: 2101248 bytes > 2097152"),
    ("no_image", "missing filesystem image"),
    ("other_board", "was built for board esp32_devkitc, not esp32s3_devkitc"),
])
def test_offline_checks_touch_no_board(built, emulator, tmp_path, capsys, case, words):
    srv = emulator()
    argv = ["flash", "--port", srv.url, "--build-dir", str(built / "build")] + ROM
    board, ep = "esp32_devkitc", "bin-rusange-0003"
    if case == "no_firmware":
        pass
    elif case == "absent_firmware":
        argv += ["--firmware", str(tmp_path / "nope.bin")]
    elif case == "not_esp_image":
        (tmp_path / "x.bin").write_bytes(b"\x00" * 100)
        argv += ["--firmware", str(tmp_path / "x.bin")]
    elif case == "c3_firmware":
        argv += ["--firmware", str(fake_firmware(tmp_path / "c3.bin", chip_id=5))]
    elif case == "big_firmware":
        argv += ["--firmware", str(fake_firmware(tmp_path / "big.bin", size=0x200000 + 1))]
    elif case == "big_image":
        (tmp_path / "big.img").write_bytes(b"\xff" * (0x200000 + 4096))
        argv += ["--fs-only", "--image", str(tmp_path / "big.img")]
    elif case == "no_image":
        argv += ["--fs-only"]
        ep = "bin-unbuilt-1"
    elif case == "other_board":
        argv += ["--fs-only"]
        board = "esp32s3_devkitc"
    rc = cli.main(argv + ["--board", board, ep])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.count("\n") == 1, err
    assert srv.emu.log == []                          # not a single frame sent to the board


def test_board_with_a_smaller_flash_is_refused_before_writing(built, emulator, capsys):
    srv = emulator(flash_size=2 << 20)                # a 2 MiB module where 4 MiB are expected
    assert _flash(built, [srv.url], "--fs-only") == 1
    err = capsys.readouterr().err.strip()
    assert err == ("eclor flash: flash too small on %s: the chip has 2097152 bytes, board esp32_devkitc "
                   "needs 4194304 (wrong --board?)" % srv.url)
    assert srv.emu.written == 0


def test_stub_refused_says_no_stub(built, emulator, capsys):
    srv = emulator()                                  # a ROM that cannot run esptool's stub
    rc = cli.main(["flash", "--board", "esp32_devkitc", "--build-dir", str(built / "build"), "--port", srv.url,
                   "--before", "no-reset", "--after", "no-reset", "--connect-attempts", "1", "--fs-only",
                   "bin-rusange-0003"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("eclor flash: flasher stub refused on %s" % srv.url)
    assert err.endswith("try again with --no-stub") and "\n" not in err
    assert srv.emu.written == 0


def test_one_identity_never_goes_on_two_boards(built, emulator, capsys):
    a, b = emulator(), emulator()
    assert _flash(built, [a.url, b.url], "--fs-only") == 2
    err = capsys.readouterr().err
    assert "holds the identity of device bin-rusange-0003: 2 boards would get it" in err and err.count("\n") == 1
    assert _flash(built, [a.url, b.url, a.url], "--fs-only", eps=("bin-rusange-0003", "bin-rusange-0004")) == 2
    assert "3 ports but 2 devices" in capsys.readouterr().err
    assert a.emu.log == [] and b.emu.log == []
    # a build without --device: the same image on every board
    assert _flash(built, [a.url, b.url], "--fs-only", eps=("esp32_devkitc-bin",)) == 0
    img = (built / "build" / "esp32_devkitc-bin" / "fs.img").read_bytes()
    assert a.emu.dump(0x200000, len(img)) == img == b.emu.dump(0x200000, len(img))
