"""Small CBOR (RFC 8949) encoder and decoder for MicroPython.

Enough for SenML packs, command maps and config: unsigned/negative integers
up to 64 bits, byte and text strings, arrays, maps, floats, true/false/null.

Encoding writes into a `Writer`, a bytearray with a fill index: a role that
sends the same kind of pack every few minutes keeps one Writer and calls
`reset()` instead of building a new bytes object each time (less heap
fragmentation on the ESP32). `dumps(obj)` is the convenient one-shot form.

Floats are encoded as the shortest of single/double that gives back the same
value (on the ESP32 floats are 32-bit, so that is always single). Half
precision is decoded but never produced.

Decoding (`loads`, `decode`) of arbitrary bytes raises nothing but
ValueError: truncated input, reserved additional info, indefinite lengths
(not supported: no SenML or command producer needs them), unknown simple
values, unhashable map keys, invalid UTF-8, nesting deeper than 16 levels,
and trailing bytes (loads only). Declared lengths are checked against the
bytes left before anything is allocated, so a 5-byte input cannot ask for a
4-GB list. Tags are skipped: the tagged value is returned as is.
"""
import struct

try:
    from micropython import const
except ImportError:  # also imported by CPython tools
    const = lambda x: x  # noqa: E731

_MAX_DEPTH = const(16)  # nesting limit of any() and decode()
# built once: a tuple literal of names in isinstance() would be allocated per call
BYTES_LIKE = (bytes, bytearray, memoryview)
_SEQ = (list, tuple)


class Writer:
    """Encode into a reusable bytearray. `grow=False` makes overflow a ValueError."""

    def __init__(self, size=128, grow=True):
        self.buf = bytearray(size)
        self.n = 0
        self.grow = grow

    def reset(self):
        self.n = 0
        return self

    def value(self):
        """The bytes written so far, as a memoryview into the buffer (valid until reset)."""
        return memoryview(self.buf)[:self.n]

    def _room(self, k):
        need = self.n + k
        if need > len(self.buf):
            if not self.grow:
                raise ValueError("cbor: buffer full")
            self.buf.extend(bytearray(max(need - len(self.buf), len(self.buf))))

    def raw(self, b):
        k = len(b)
        self._room(k)
        self.buf[self.n:self.n + k] = b
        self.n += k

    def head(self, major, v):
        if v < 0 or v >> 64:
            raise ValueError("cbor: integer out of 64-bit range")
        # additional info: the value itself below 24, else 24..27 for 1, 2, 4
        # or 8 big-endian bytes after the initial byte (written by a loop: no
        # struct format string per size, each one an interned name)
        ai = v if v < 24 else 24 if v < 0x100 else 25 if v < 0x10000 else 26 if v < 0x100000000 else 27
        k = 1 if ai < 24 else 1 + (1 << (ai - 24))
        self._room(k)
        b, n = self.buf, self.n
        b[n] = major << 5 | ai
        i = n + k
        while i > n + 1:
            i -= 1
            b[i] = v & 0xFF
            v >>= 8
        self.n = n + k

    def int(self, v):
        if v >= 0:
            self.head(0, v)
        else:
            self.head(1, -1 - v)

    def float(self, v):
        # single precision when exact (always on the ESP32); NaN/inf are exact
        # too. Packed in place: no bytes object per call
        self._room(5)
        b, n = self.buf, self.n
        struct.pack_into(">f", b, n + 1, v)
        if v != v or struct.unpack_from(">f", b, n + 1)[0] == v:
            b[n] = 0xFA
            self.n = n + 5
        else:
            self._room(9)  # grows b in place (or ValueError on a fixed buffer)
            b[n] = 0xFB
            struct.pack_into(">d", b, n + 1, v)
            self.n = n + 9

    def text(self, s):
        s = s.encode() if isinstance(s, str) else s
        self.head(3, len(s))
        self.raw(s)

    def bytes(self, s):
        self.head(2, len(s))
        self.raw(s)

    def array(self, n):
        self.head(4, n)

    def map(self, n):
        self.head(5, n)

    def simple(self, v):
        # False/True/None -> 0xF4/0xF5/0xF6
        self._room(1)
        self.buf[self.n] = 0xF6 if v is None else (0xF5 if v else 0xF4)
        self.n += 1

    def any(self, o, depth=0):
        """Encode any supported object; ValueError for the rest."""
        if depth > _MAX_DEPTH:
            raise ValueError("cbor: nesting too deep")
        if o is None or o is True or o is False:
            self.simple(o)
        elif isinstance(o, int):
            self.int(o)
        elif isinstance(o, float):
            self.float(o)
        elif isinstance(o, str):
            self.text(o)
        elif isinstance(o, BYTES_LIKE):
            self.bytes(o)
        elif isinstance(o, _SEQ):
            self.array(len(o))
            for x in o:
                self.any(x, depth + 1)
        elif isinstance(o, dict):
            self.map(len(o))
            for k in o:
                self.any(k, depth + 1)
                self.any(o[k], depth + 1)
        else:
            raise ValueError("cbor: cannot encode %s" % type(o).__name__)
        return self


def dumps(o):
    """Encode o to bytes."""
    return bytes(Writer(32).any(o).value())


def _need(data, pos, k):
    if pos + k > len(data):
        raise ValueError("cbor: truncated")


def _item(data, p, depth):
    # one item from data[p[0]:]; p[0] is moved past it in place, so that
    # no (obj, pos) tuple is allocated per item
    if depth > _MAX_DEPTH:
        raise ValueError("cbor: nesting too deep")
    pos = p[0]
    _need(data, pos, 1)
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 0x1F
    if major == 7:
        p[0] = pos + (0 if ai < 24 else 2 if ai == 25 else 4 if ai == 26 else 8)
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22 or ai == 23:
            return None
        if ai == 25:
            _need(data, pos, 2)
            # half precision (sign, 5-bit exponent, 10-bit mantissa)
            e = (data[pos] >> 2) & 0x1F
            m = (data[pos] & 3) << 8 | data[pos + 1]
            if e == 0:
                v = m * 5.960464477539063e-08  # 2**-24
            elif e == 31:
                v = float("nan") if m else float("inf")
            else:
                v = (1024 + m) * (2.0 ** (e - 25))
            return -v if data[pos] & 0x80 else v
        if ai == 26:
            _need(data, pos, 4)
            return struct.unpack_from(">f", data, pos)[0]
        if ai == 27:
            _need(data, pos, 8)
            return struct.unpack_from(">d", data, pos)[0]
        raise ValueError("cbor: unsupported simple value %d" % ai)
    if ai < 24:
        v = ai
    elif ai < 28:
        k = 1 << (ai - 24)
        _need(data, pos, k)
        v = 0
        for i in range(k):
            v = (v << 8) | data[pos + i]
        pos += k
    elif ai == 31:
        raise ValueError("cbor: indefinite length not supported")
    else:
        raise ValueError("cbor: reserved additional info %d" % ai)
    p[0] = pos
    if major == 0:
        return v
    if major == 1:
        return -1 - v
    if major == 2 or major == 3:
        _need(data, pos, v)
        p[0] = pos + v
        s = bytes(data[pos:pos + v])
        if major == 3:
            try:
                s = s.decode()
            except Exception:
                raise ValueError("cbor: invalid UTF-8")
        return s
    if major == 6:  # tag: return the tagged item
        return _item(data, p, depth + 1)
    # arrays and maps: every item needs at least one byte
    if v > len(data) - pos:
        raise ValueError("cbor: truncated")
    depth += 1
    if major == 4:
        out = []
        for _ in range(v):
            out.append(_item(data, p, depth))
        return out
    out = {}
    for _ in range(v):
        k = _item(data, p, depth)
        x = _item(data, p, depth)
        if isinstance(k, _SEQ) or isinstance(k, dict):
            raise ValueError("cbor: unhashable map key")
        out[k] = x
    return out


def decode(data, pos=0, depth=0):
    """Decode one item from data[pos:]; returns (obj, next_pos). ValueError on bad input."""
    p = [pos]
    return _item(data, p, depth), p[0]


def loads(data):
    """Decode exactly one item from data (bytes-like). ValueError on bad input."""
    p = [0]
    o = _item(data, p, 0)
    if p[0] != len(data):
        raise ValueError("cbor: trailing bytes")
    return o
