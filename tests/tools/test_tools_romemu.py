"""The ESP32 ROM bootloader emulator itself: framing and the answers esptool
relies on, checked frame by frame (the flash tests check it end to end)."""
import hashlib
import struct

import esptool

from eclor.tools import romemu
from eclor.tools.romemu import RomEmulator, SlipDecoder, TcpServer, slip_encode


def req(cmd, data=b"", chk=0):
    return struct.pack("<BBHI", 0, cmd, len(data), chk) + data


def answers(emu, cmd, data=b"", chk=0):
    out = emu.handle(req(cmd, data, chk))
    frames = SlipDecoder().feed(out)
    res = []
    for f in frames:
        one, op, size, val = struct.unpack("<BBHI", f[:8])
        assert one == 1 and op == cmd and size == len(f) - 8
        res.append((val, f[8:-4], f[-4:]))
    return res


def test_slip_round_trip_with_escapes():
    pkt = bytes([0xC0, 1, 0xDB, 2, 0xDB, 0xDC, 0xC0])
    enc = slip_encode(pkt)
    assert enc == b"\xc0\xdb\xdc\x01\xdb\xdd\x02\xdb\xdd\xdc\xdb\xdc\xc0"
    d = SlipDecoder()
    assert d.feed(b"noise" + enc[:5]) == [] and d.feed(enc[5:]) == [pkt]


def test_sync_registers_and_unsupported_commands():
    emu = RomEmulator()
    sync = answers(emu, romemu.SYNC, b"\x07\x07\x12\x20" + b"\x55" * 32)
    assert len(sync) == 8 and all(v != 0 and st[:2] == b"\x00\x00" for v, _, st in sync)
    assert answers(emu, romemu.READ_REG, struct.pack("<I", 0x40001000))[0][0] == 0x00F01D83
    assert answers(emu, romemu.READ_REG, struct.pack("<I", 0x3FF40014))[0][0] == 40_000_000 // 115200
    # flash id through the SPI peripheral: USR2 = RDID, CMD.USR set -> W0 = JEDEC id, USR cleared
    answers(emu, romemu.WRITE_REG, struct.pack("<IIII", romemu.SPI_USR2, (7 << 28) | 0x9F, 0xFFFFFFFF, 0))
    answers(emu, romemu.WRITE_REG, struct.pack("<IIII", romemu.SPI_CMD, 1 << 18, 0xFFFFFFFF, 0))
    assert answers(emu, romemu.READ_REG, struct.pack("<I", romemu.SPI_CMD))[0][0] & (1 << 18) == 0
    assert answers(emu, romemu.READ_REG, struct.pack("<I", romemu.SPI_W0))[0][0] == 0x1640EF
    # not in an ESP32 ROM: status 1, error 5 (invalid message)
    assert answers(emu, romemu.GET_SECURITY_INFO)[0][2] == b"\x01\x05\x00\x00"


def test_flash_begin_data_md5_and_bad_checksum(tmp_path):
    emu = RomEmulator(flash_file=str(tmp_path / "flash.bin"))
    data = bytes(range(256)) * 4
    assert answers(emu, romemu.FLASH_BEGIN, struct.pack("<IIII", 0x2000, 2, 0x400, 0x10000))[0][2][0] == 0
    chk = 0xEF
    for b in data:
        chk ^= b
    bad = answers(emu, romemu.FLASH_DATA, struct.pack("<IIII", len(data), 0, 0, 0) + data, chk ^ 1)
    assert bad[0][2][:2] == b"\x01\x07"                          # invalid CRC, nothing written
    assert emu.dump(0x10000, 16) == b"\xff" * 16
    assert answers(emu, romemu.FLASH_DATA, struct.pack("<IIII", len(data), 1, 0, 0) + data, chk)[0][2][0] == 0
    assert emu.dump(0x10400, len(data)) == data                  # block 1 at offset + 1 * 0x400
    md5 = answers(emu, romemu.SPI_FLASH_MD5, struct.pack("<IIII", 0x10000, 0x800, 0, 0))[0][1]
    assert md5 == hashlib.md5(b"\xff" * 0x400 + data).hexdigest().encode()
    answers(emu, romemu.FLASH_END, struct.pack("<I", 1))
    assert (tmp_path / "flash.bin").read_bytes()[0x10400:0x10800] == data


def test_esptool_reads_the_flash_id_and_mac(capsys):
    srv = TcpServer(RomEmulator()).start()
    try:
        esptool.main(["--chip", "esp32", "--port", srv.url, "--no-stub", "--before", "no-reset",
                      "--after", "no-reset", "flash-id"])
    finally:
        srv.close()
    out = capsys.readouterr().out
    assert "Chip type:          ESP32" in out or "ESP32" in out
    assert "Manufacturer: ef" in out and "Device: 4016" in out
    assert "4MB" in out


def test_esptool_writes_over_the_pty_transport(tmp_path):
    from eclor.tools.romemu import PtyServer
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes((i * 31) & 0xFF for i in range(9000)))
    emu = RomEmulator()
    srv = PtyServer(emu).start()
    try:
        esptool.main(["--chip", "esp32", "--port", srv.path, "--baud", "115200", "--no-stub",
                      "--before", "no-reset", "--after", "no-reset", "write-flash", "0x10000", str(blob)])
    finally:
        srv.close()
    assert emu.dump(0x10000, 9000) == blob.read_bytes()
