"""Small CBOR (RFC 8949) encoder and decoder for MicroPython.

Enough for SenML packs, command maps and config: unsigned/negative integers
up to 64 bits, byte and text strings, arrays, maps, floats, true/false/null.

`dumps(obj)` encodes small objects (command results, a calendar) into a new
bytes object. Packs are written into a `Writer` (fmt/cborw.py, loaded on
the first `cbor.Writer`: see __getattr__ below), a bytearray with a fill
index: a role that sends the same kind of pack every few minutes keeps one
Writer and calls `reset()` instead of building a new bytes object each time
(less heap fragmentation on the ESP32).

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

_MAX_DEPTH = const(16)  # nesting limit of dumps() and decode()
# built once: a tuple literal of names in isinstance() would be allocated per call
BYTES_LIKE = (bytes, bytearray, memoryview)
_SEQ = (list, tuple)


def _head(b, major, v):
    # the initial byte and the argument (RFC 8949 3.1) appended to bytearray b:
    # the value itself below 24, else 24..27 and 1, 2, 4 or 8 big-endian bytes
    if v < 0 or v >> 64:
        raise ValueError("cbor: integer out of 64-bit range")
    if v < 24:
        b.append(major << 5 | v)
        return
    k = 1 if v < 0x100 else 2 if v < 0x10000 else 4 if v < 0x100000000 else 8
    b.append(major << 5 | (24 if k == 1 else 25 if k == 2 else 26 if k == 4 else 27))
    b.extend(v.to_bytes(k, "big"))


def _enc(b, o, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("cbor: nesting too deep")
    if o is None or o is True or o is False:
        b.append(0xF6 if o is None else (0xF5 if o else 0xF4))
    elif isinstance(o, int):
        if o >= 0:
            _head(b, 0, o)
        else:
            _head(b, 1, -1 - o)
    elif isinstance(o, float):
        # single precision when exact (always on the ESP32); NaN/inf are exact too
        f = struct.pack(">f", o)
        if o != o or struct.unpack(">f", f)[0] == o:
            b.append(0xFA)
            b.extend(f)
        else:
            b.append(0xFB)
            b.extend(struct.pack(">d", o))
    elif isinstance(o, str):
        o = o.encode()
        _head(b, 3, len(o))
        b.extend(o)
    elif isinstance(o, BYTES_LIKE):
        _head(b, 2, len(o))
        b.extend(o)
    elif isinstance(o, _SEQ):
        _head(b, 4, len(o))
        for x in o:
            _enc(b, x, depth + 1)
    elif isinstance(o, dict):
        _head(b, 5, len(o))
        for k in o:
            _enc(b, k, depth + 1)
            _enc(b, o[k], depth + 1)
    else:
        raise ValueError("cbor: cannot encode %s" % type(o).__name__)


def dumps(o):
    """Encode o to bytes; ValueError for what CBOR here cannot carry."""
    b = bytearray()
    _enc(b, o, 0)
    return bytes(b)


def __getattr__(name):
    # cbor.Writer: its class is in fmt/cborw.py, loaded on first use and
    # kept in this module's globals, not in sys.modules -- so it is on the
    # heap as long as this module (lamp.use() and the bin's cycle drop
    # fmt.cbor after a call) and only for the users that write packs
    # (fmt.senml, waste.sense): a command, a calendar, a clock sync decode
    # and dumps() small maps without it (~2 KB less at a calendar command)
    if name != "Writer":
        raise AttributeError(name)
    import sys
    w = __import__("fmt.cborw", None, None, ("Writer",)).Writer
    sys.modules.pop("fmt.cborw", None)
    try:
        delattr(sys.modules["fmt"], "cborw")
    except (KeyError, AttributeError):
        pass
    globals()["Writer"] = w
    return w


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
