"""The CBOR Writer of fmt.cbor (`cbor.Writer`: fmt/cbor.py loads this module
on its first use and keeps the class; import it through fmt.cbor): encode
into a reusable bytearray, in place, for packs written every few minutes.
`any()` goes through fmt.cbor.dumps; the other methods write without
allocating.
"""
import struct


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
        # as fmt.cbor._head, in place: the value itself below 24, else 24..27
        # for 1, 2, 4 or 8 big-endian bytes after the initial byte (written by
        # a loop: no struct format string per size, each one an interned name)
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

    def any(self, o):
        """Encode any supported object (fmt.cbor.dumps); ValueError for the rest."""
        from fmt.cbor import dumps
        self.raw(dumps(o))
        return self
