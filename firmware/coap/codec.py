"""RFC 7252 message codec for MicroPython.

Design notes in the comments below (comments cost nothing to compile on
the board; a long docstring is buffered whole by the lexer)."""
#
# A message is a `Msg`: type, code, message id, token, options, payload.
# Options are a list of `[number, value]` pairs in wire order; a value is
# `bytes` after decoding, and may be `int` (uint), `str` (UTF-8) or bytes when
# encoding.  Repeatable options (Uri-Path, Uri-Query, Location-Path, ETag...)
# simply appear several times.
#
# Design:
# * `decode(data)` never raises on malformed input: it returns a `str` naming
#   the fault (bad version, token length, truncated option, reserved nibble 15,
#   payload marker without payload...) so the endpoint can answer a malformed
#   CON with RST and drop everything else.  On success it returns a `Msg`.
# * `encode(msg, buf)` writes into a caller-owned, pre-allocated bytearray and
#   returns the length; no intermediate bytes are built.  Options are emitted in
#   ascending number order with a stable selection pass (MicroPython's
#   list.sort is not stable, and Uri-Path order matters), so callers may add
#   options in any order.
# * Codes are plain ints `class*32 + detail` (2.05 -> 69) to avoid objects.
# * Only the codes and option numbers the firmware uses are named: every
#   public name costs a dict entry and a qstr in RAM when loaded from .mpy.
#   Others by number: 1 If-Match, 3 Uri-Host, 5 If-None-Match, 7 Uri-Port,
#   9 OSCORE, 20 Location-Query, 35 Proxy-Uri; 4.01 = 129, 4.03 = 131,
#   4.06 = 134, 4.12 = 140, 4.15 = 143, 5.01 = 161, 5.04 = 164.
from micropython import const

_VERSION = const(1)
CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

_EMPTY = const(0)
GET = const(1)
POST = const(2)
PUT = const(3)
DELETE = const(4)

CREATED = const(65)
DELETED = const(66)
CHANGED = const(68)
CONTENT = const(69)
CONTINUE = const(95)
BAD_REQUEST = const(128)
BAD_OPTION = const(130)
NOT_FOUND = const(132)
METHOD_NOT_ALLOWED = const(133)
REQUEST_ENTITY_INCOMPLETE = const(136)
REQUEST_ENTITY_TOO_LARGE = const(141)
INTERNAL_SERVER_ERROR = const(160)
SERVICE_UNAVAILABLE = const(163)

ETAG = const(4)
OBSERVE = const(6)
LOCATION_PATH = const(8)
URI_PATH = const(11)
CONTENT_FORMAT = const(12)
MAX_AGE = const(14)
URI_QUERY = const(15)
ACCEPT = const(17)
BLOCK2 = const(23)
BLOCK1 = const(27)
SIZE2 = const(28)
SIZE1 = const(60)

# Content formats the stack itself uses (fmt/ has the payload ones)
CT_TEXT = const(0)
CT_LINK = const(40)
CT_OCTET = const(42)


def uint(b):
    """Value of a uint option given as bytes (empty -> 0)."""
    n = 0
    for x in b:
        n = (n << 8) | x
    return n


class Msg:
    """One CoAP message.  Used for requests and responses alike.

    Request view: `method` (= code), `path`, `query`, `ct`, `accept`, `peer`.
    Response view: `code`, `payload`, `ct`, `options`.
    """

    def __init__(self, mtype=CON, code=_EMPTY, mid=0, token=b"", options=None, payload=b""):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = options if options is not None else []
        self.payload = payload
        self.peer = None

    def opt(self, num, default=None):
        """First value of option `num` (bytes), or default."""
        for o in self.options:
            if o[0] == num:
                return o[1]
        return default

    def uopt(self, num, default=None):
        """First value of option `num` as an unsigned int, or default."""
        v = self.opt(num)
        return default if v is None else (v if isinstance(v, int) else uint(v))

    def opts(self, num):
        """All values of a repeatable option, in order, as str."""
        return [o[1] if isinstance(o[1], str) else bytes(o[1]).decode() for o in self.options if o[0] == num]

    def drop(self, num):
        self.options = [o for o in self.options if o[0] != num]

    @property
    def method(self):
        return self.code

    @property
    def path(self):
        return "/".join(self.opts(URI_PATH))

    @property
    def query(self):
        return self.opts(URI_QUERY)

    @property
    def ct(self):
        return self.uopt(CONTENT_FORMAT)

    @property
    def accept(self):
        return self.uopt(ACCEPT)


def _ext(buf, n, i):
    """Read an extended delta/length for nibble n at buf[i]; -> (value, i) or (-1, i)."""
    if n < 13:
        return n, i
    if n == 13:
        if i >= len(buf):
            return -1, i
        return buf[i] + 13, i + 1
    if n == 14:
        if i + 1 >= len(buf):
            return -1, i
        return ((buf[i] << 8) | buf[i + 1]) + 269, i + 2
    return -2, i


def decode(data):
    """bytes -> Msg, or a str naming why the datagram is malformed.

    Never raises for any input bytes."""
    n = len(data)
    if n < 4:
        return "short header"
    b0 = data[0]
    if b0 >> 6 != _VERSION:
        return "bad version"
    tkl = b0 & 15
    if tkl > 8:
        return "token length"
    if n < 4 + tkl:
        return "truncated token"
    m = Msg((b0 >> 4) & 3, data[1], (data[2] << 8) | data[3], bytes(data[4:4 + tkl]))
    if m.code == _EMPTY and n > 4:
        return "empty message with content"
    i = 4 + tkl
    num = 0
    opts = m.options
    while i < n:
        b = data[i]
        i += 1
        if b == 0xFF:
            if i >= n:
                return "payload marker without payload"
            m.payload = bytes(data[i:])
            break
        d, i = _ext(data, b >> 4, i)
        if d < 0:
            return "reserved nibble 15" if d == -2 else "truncated option"
        ln, i = _ext(data, b & 15, i)
        if ln < 0:
            return "reserved nibble 15" if ln == -2 else "truncated option"
        if i + ln > n:
            return "truncated option"
        num += d
        opts.append([num, bytes(data[i:i + ln])])
        i += ln
    return m


def _olen(v):
    if isinstance(v, int):
        n = 0
        while v:
            n += 1
            v >>= 8
        return n
    return len(v)


def _nib(x):
    return x if x < 13 else (13 if x < 269 else 14)


def _put_ext(buf, i, x):
    if 13 <= x < 269:
        buf[i] = x - 13
        return i + 1
    if x >= 269:
        x -= 269
        buf[i] = x >> 8
        buf[i + 1] = x & 255
        return i + 2
    return i


def encode(m, buf):
    """Write Msg m into bytearray buf; return the length.

    Raises ValueError when a field is out of range (programming error on our
    side, not input from the network) or IndexError when buf is too small."""
    tok = m.token
    if len(tok) > 8:
        raise ValueError("token")
    buf[0] = 0x40 | (m.mtype << 4) | len(tok)
    buf[1] = m.code
    buf[2] = (m.mid >> 8) & 255
    buf[3] = m.mid & 255
    i = 4
    for x in tok:
        buf[i] = x
        i += 1
    last = 0
    opts = m.options
    cur = -1
    while True:
        # next smallest option number above `cur`: stable, allocation-free
        nxt = 0x10000
        for o in opts:
            if cur < o[0] < nxt:
                nxt = o[0]
        if nxt == 0x10000:
            break
        cur = nxt
        for o in opts:
            if o[0] != cur:
                continue
            v = o[1]
            if isinstance(v, str):
                v = v.encode()
            d = cur - last
            ln = _olen(v)
            buf[i] = (_nib(d) << 4) | _nib(ln)
            i = _put_ext(buf, i + 1, d)
            i = _put_ext(buf, i, ln)
            if isinstance(v, int):
                k = ln
                while k:
                    k -= 1
                    buf[i + k] = v & 255
                    v >>= 8
                i += ln
            else:
                buf[i:i + ln] = v
                i += ln
            last = cur
    p = m.payload
    if p:
        buf[i] = 0xFF
        i += 1
        buf[i:i + len(p)] = p
        i += len(p)
    return i
