"""An emulator of the ESP32 ROM serial bootloader, enough for esptool to flash
it: the tests flash the bytes that would go to a real board into this, take
them back out and boot them, and a technician can rehearse `eclor flash`
without a board.

    python -m eclor.tools.romemu [--port 0] [--pty] [--flash FILE]
    -> prints  socket://127.0.0.1:PORT   (and /dev/pts/N with --pty)
    eclor flash --port socket://127.0.0.1:PORT --no-stub --before no-reset ...

What it speaks (ESP32 ROM, esptool `--no-stub`): SLIP framing; requests
``<BBHI`` (0, cmd, len, checksum) + data; responses ``<BBHI`` (1, cmd, len,
value) + data ending in 4 status bytes (status, error, 0, 0).
SYNC (answered 8 times, non-zero value), READ_REG / WRITE_REG over a small
register file in which the SPI peripheral (0x3FF42000) executes RDID/RDSR
when its USR bit is set, SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE,
FLASH_BEGIN/DATA/END (erase, checksum and sequence checked), SPI_FLASH_MD5
(32 hex characters, as the ROM does). GET_SECURITY_INFO and anything else
fail with "invalid message", as on a real ESP32, whose ROM predates them.

The flash is a bytearray (4 MiB by default); `--flash FILE` loads it from and
saves it to a file (tmp + rename) after FLASH_END, when esptool hangs up and
at exit, so it survives the emulator.
"""
import argparse
import hashlib
import os
import socket
import struct
import sys
import threading

SYNC, FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x08, 0x02, 0x03, 0x04
WRITE_REG, READ_REG, SPI_SET_PARAMS, SPI_ATTACH = 0x09, 0x0A, 0x0B, 0x0D
CHANGE_BAUDRATE, SPI_FLASH_MD5, GET_SECURITY_INFO = 0x0F, 0x13, 0x14
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07

# ROM error codes (second status byte)
ERR_INVALID_MSG, ERR_FAILED, ERR_BAD_CRC, ERR_FLASH_WRITE = 0x05, 0x06, 0x07, 0x08

CHIP_MAGIC_REG, ESP32_MAGIC = 0x40001000, 0x00F01D83
UART_CLKDIV_REG = 0x3FF40014
SPI_BASE = 0x3FF42000
SPI_CMD, SPI_USR2, SPI_W0 = SPI_BASE + 0x00, SPI_BASE + 0x24, SPI_BASE + 0x80
SPI_CMD_USR = 1 << 18
APB_CLK = 40_000_000
# JEDEC id as W0 holds it: manufacturer 0xEF (Winbond), type 0x40, capacity 2^N
JEDEC = {1 << 21: 0x1540EF, 1 << 22: 0x1640EF, 1 << 23: 0x1740EF, 1 << 24: 0x1840EF}


def slip_encode(pkt):
    return b"\xc0" + pkt.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipDecoder:
    """Feed bytes, get whole frames; bytes outside frames are ignored (the
    ROM ignores line noise the same way)."""

    def __init__(self):
        self.buf = None
        self.esc = False

    def feed(self, data):
        frames = []
        for b in data:
            if self.buf is None:
                if b == 0xC0:
                    self.buf = bytearray()
                continue
            if self.esc:
                self.esc = False
                self.buf.append({0xDC: 0xC0, 0xDD: 0xDB}.get(b, b))
            elif b == 0xDB:
                self.esc = True
            elif b == 0xC0:
                if self.buf:
                    frames.append(bytes(self.buf))
                    self.buf = None
                # an empty frame is a frame start after a stray 0xC0: keep the buffer
            else:
                self.buf.append(b)
        return frames


class RomEmulator:
    """The protocol engine, independent of the transport: handle(frame) -> frames."""

    def __init__(self, flash_size=4 << 20, flash_file=None, fail_after=None):
        self.flash_size = flash_size
        self.flash_file = flash_file
        self.flash = bytearray(b"\xff" * flash_size)
        if flash_file and os.path.exists(flash_file):
            data = open(flash_file, "rb").read()[:flash_size]
            self.flash[: len(data)] = data
        self.regs = {}
        self.baud = 115200
        self.begin = None          # (offset, erase_size, num_blocks, block_size)
        self.written = 0           # FLASH_DATA bytes accepted, for fault injection
        self.fail_after = fail_after
        self.lock = threading.Lock()
        self.log = []              # (cmd, ok) for tests and --verbose
        self.dirty = False         # flash changed since the last save

    # -- helpers --------------------------------------------------------
    def _resp(self, cmd, value=0, data=b"", status=0, error=0):
        body = data + bytes((status, error, 0, 0))
        return slip_encode(struct.pack("<BBHI", 1, cmd, len(body), value) + body)

    def read_reg(self, addr):
        if addr == CHIP_MAGIC_REG:
            return ESP32_MAGIC
        if addr == UART_CLKDIV_REG:
            return APB_CLK // self.baud
        return self.regs.get(addr, 0)

    def write_reg(self, addr, value):
        self.regs[addr] = value
        if addr == SPI_CMD and value & SPI_CMD_USR:
            # run the user SPI command the host set up, then clear USR (done)
            op = self.regs.get(SPI_USR2, 0) & 0xFF
            if op == 0x9F:                 # RDID
                self.regs[SPI_W0] = JEDEC.get(self.flash_size, 0x1640EF)
            elif op in (0x05, 0x35):       # RDSR / RDSR2: not busy, no protection
                self.regs[SPI_W0] = 0
            self.regs[SPI_CMD] = value & ~SPI_CMD_USR

    def dump(self, offset, size):
        with self.lock:
            return bytes(self.flash[offset:offset + size])

    def save(self):
        self.dirty = False
        if self.flash_file:
            tmp = self.flash_file + ".tmp"
            with open(tmp, "wb") as f:
                f.write(self.flash)
            os.replace(tmp, self.flash_file)

    # -- one request ----------------------------------------------------
    def handle(self, frame):
        """Returns the bytes to send back (possibly several frames), or None
        to simulate the board going silent (fault injection)."""
        if len(frame) < 8 or frame[0] != 0:
            return b""
        _, cmd, size, chk = struct.unpack("<BBHI", frame[:8])
        data = frame[8:8 + size]
        with self.lock:
            out = self._dispatch(cmd, data, chk)
        self.log.append((cmd, out is not None))
        return out

    def _dispatch(self, cmd, data, chk):
        if cmd == SYNC:
            if data != b"\x07\x07\x12\x20" + b"\x55" * 32:
                return self._resp(cmd, status=1, error=ERR_INVALID_MSG)
            return self._resp(cmd, value=0x20120707) * 8
        if cmd == READ_REG and len(data) == 4:
            return self._resp(cmd, value=self.read_reg(struct.unpack("<I", data)[0]))
        if cmd == WRITE_REG and len(data) >= 8:
            addr, value = struct.unpack("<II", data[:8])
            self.write_reg(addr, value)
            return self._resp(cmd)
        if cmd in (SPI_ATTACH, SPI_SET_PARAMS):
            return self._resp(cmd)
        if cmd == CHANGE_BAUDRATE and len(data) >= 4:
            self.baud = struct.unpack("<I", data[:4])[0] or self.baud
            return self._resp(cmd)
        if cmd == FLASH_BEGIN and len(data) >= 16:
            erase, blocks, bsize, off = struct.unpack("<IIII", data[:16])
            if off + erase > self.flash_size or off + blocks * bsize > self.flash_size:
                return self._resp(cmd, status=1, error=ERR_FAILED)
            self.flash[off:off + erase] = b"\xff" * erase
            self.begin = (off, erase, blocks, bsize)
            return self._resp(cmd)
        if cmd == FLASH_DATA and len(data) >= 16:
            n, seq = struct.unpack("<II", data[:8])
            payload = data[16:16 + n]
            if self.begin is None or len(payload) != n:
                return self._resp(cmd, status=1, error=ERR_INVALID_MSG)
            c = 0xEF
            for b in payload:
                c ^= b
            if c != chk:
                return self._resp(cmd, status=1, error=ERR_BAD_CRC)
            off, _, blocks, bsize = self.begin
            if seq >= blocks:
                return self._resp(cmd, status=1, error=ERR_FLASH_WRITE)
            if self.fail_after is not None and self.written + n > self.fail_after:
                return None          # the board went away mid-write
            at = off + seq * bsize
            end = min(at + n, self.flash_size)
            self.flash[at:end] = payload[: end - at]
            self.written += n
            self.dirty = True
            return self._resp(cmd)
        if cmd == FLASH_END:
            self.begin = None
            self.save()
            return self._resp(cmd)
        if cmd == SPI_FLASH_MD5 and len(data) >= 8:
            addr, size = struct.unpack("<II", data[:8])
            if addr + size > self.flash_size:
                return self._resp(cmd, status=1, error=ERR_FAILED)
            digest = hashlib.md5(self.flash[addr:addr + size]).hexdigest().encode()
            return self._resp(cmd, data=digest)
        # GET_SECURITY_INFO (0x14) and the stub-only commands: an ESP32 ROM
        # does not know them
        return self._resp(cmd, status=1, error=ERR_INVALID_MSG)


def _serve_stream(emu, recv, send, stop):
    dec = SlipDecoder()
    while not stop.is_set():
        data = recv()
        if not data:
            return
        for frame in dec.feed(data):
            out = emu.handle(frame)
            if out is None:
                return           # go silent: drop the connection
            if out:
                send(out)


class TcpServer:
    """socket://HOST:PORT server (one client at a time, like one USB cable)."""

    def __init__(self, emu, host="127.0.0.1", port=0):
        self.emu = emu
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1)
        self.sock.settimeout(0.2)        # accept() wakes up to see stop
        self.port = self.sock.getsockname()[1]
        self.url = "socket://%s:%d" % (host, self.port)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(0.2)

            def recv(conn=conn):
                while not self.stop.is_set():
                    try:
                        return conn.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        return b""
                return b""

            try:
                _serve_stream(self.emu, recv, conn.sendall, self.stop)
            except OSError:
                pass
            finally:
                conn.close()
                # esptool --after no-reset sends no FLASH_END: save when it hangs up
                if self.emu.dirty:
                    with self.emu.lock:
                        self.emu.save()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


class PtyServer:
    """The same on a pseudo-terminal, for tools that want a /dev/pts path."""

    def __init__(self, emu):
        import tty
        self.emu = emu
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave            # kept open so the pty survives reconnects
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        import select

        def recv():
            while not self.stop.is_set():
                r, _, _ = select.select([self.master], [], [], 0.2)
                if r:
                    try:
                        return os.read(self.master, 65536)
                    except OSError:
                        return b""
            return b""

        def send(b):
            while b:
                b = b[os.write(self.master, b):]

        while not self.stop.is_set():
            _serve_stream(self.emu, recv, send, self.stop)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self._slave)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m eclor.tools.romemu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    ap.add_argument("--pty", action="store_true", help="also serve on a pseudo-terminal")
    ap.add_argument("--flash", metavar="FILE", help="flash contents file (loaded, saved after each write)")
    ap.add_argument("--flash-size", default="4MB", choices=["2MB", "4MB", "8MB", "16MB"])
    a = ap.parse_args(argv)
    emu = RomEmulator(int(a.flash_size[:-2]) << 20, a.flash)
    srv = TcpServer(emu, a.host, a.port).start()
    print(srv.url, flush=True)
    pty_srv = None
    if a.pty:
        pty_srv = PtyServer(emu).start()
        print(pty_srv.path, flush=True)
    import signal
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
        if pty_srv:
            pty_srv.close()
        emu.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
