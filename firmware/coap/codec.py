"""RFC 7252 message codec for MicroPython.

Design notes in the comments below (comments cost nothing to compile on
the board; a long docstring is buffered whole by the lexer)."""
#
# A message is a `Msg`: type, code, message id, token, options, payload.
# Options are a list of `(number, value)` pairs in wire order (tuples when
# decoded; lists are accepted when encoding); a value is
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
# * The public names of codes, types, option numbers and content formats
#   (`codec.GET`, `codec.CONTENT`, `codec.URI_PATH`...) are not module
#   globals: `__getattr__` below finds them in one string on access.  Loaded
#   from .mpy, every module-level name costs a dict slot and a qstr in RAM
#   (~45 B each on the 64-bit host, 40 names: 1.8 KB); the string costs its
#   bytes once.  Inside the stack the modules use their own `_X = const(n)`,
#   which cost nothing at run time.  Not named (use the number): 1 If-Match,
#   3 Uri-Host, 5 If-None-Match, 7 Uri-Port, 9 OSCORE, 20 Location-Query,
#   35 Proxy-Uri; 4.01 = 129, 4.03 = 131, 4.06 = 134, 4.12 = 140,
#   4.15 = 143, 5.01 = 161, 5.04 = 164.
from micropython import const

_VERSION = const(1)
_CON = const(0)
_NON = const(1)
_EMPTY = const(0)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_URI_QUERY = const(15)
_ACCEPT = const(17)


def __getattr__(name):
    # "NAME value " pairs: message types, methods, response codes, options,
    # the content formats the stack itself uses (fmt/ has the payload ones)
    t = (" CON 0 NON 1 ACK 2 RST 3 GET 1 POST 2 PUT 3 DELETE 4"
         " CREATED 65 DELETED 66 CHANGED 68 CONTENT 69 CONTINUE 95"
         " BAD_REQUEST 128 BAD_OPTION 130 NOT_FOUND 132 METHOD_NOT_ALLOWED 133"
         " REQUEST_ENTITY_INCOMPLETE 136 REQUEST_ENTITY_TOO_LARGE 141"
         " INTERNAL_SERVER_ERROR 160 SERVICE_UNAVAILABLE 163"
         " ETAG 4 OBSERVE 6 LOCATION_PATH 8 URI_PATH 11 CONTENT_FORMAT 12 MAX_AGE 14"
         " URI_QUERY 15 ACCEPT 17 BLOCK2 23 BLOCK1 27 SIZE2 28 SIZE1 60"
         " CT_TEXT 0 CT_LINK 40 CT_OCTET 42 ")
    i = t.find(" %s " % name)
    if i < 0:
        raise AttributeError(name)
    i += len(name) + 2
    return int(t[i:t.index(" ", i)])


class Msg:
    """One CoAP message.  Used for requests and responses alike.

    Request view: `method` (= code), `path`, `query`, `ct`, `accept`, `peer`.
    Response view: `code`, `payload`, `ct`, `options`.
    """

    def __init__(self, mtype=_CON, code=_EMPTY, mid=0, token=b"", options=None, payload=b""):
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
        return default if v is None else (v if isinstance(v, int) else int.from_bytes(v, "big"))

    # a loop rather than a list comprehension here and in the endpoint:
    # loaded from .mpy, each comprehension is one more function (raw code
    # and bytecode blob) resident in RAM.  Removing an option (Block2 after
    # reassembly) is coap.block.drop, loaded only with block-wise.

    def opts(self, num):
        """All values of a repeatable option, in order, as str."""
        r = []
        for o in self.options:
            if o[0] == num:
                r.append(o[1] if isinstance(o[1], str) else bytes(o[1]).decode())
        return r

    def __getattr__(self, name):
        # the request views, computed on access: one method here costs
        # less RAM than a property (and its getter) for each
        if name == "method":
            return self.code
        if name == "path":
            return "/".join(self.opts(_URI_PATH))
        if name == "query":
            return self.opts(_URI_QUERY)
        if name == "ct":
            return self.uopt(_CONTENT_FORMAT)
        if name == "accept":
            return self.uopt(_ACCEPT)
        raise AttributeError(name)


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
        # the delta nibble, then the length nibble, each with its extended
        # bytes (13: +1 byte, 14: +2 bytes, 15 reserved); written here
        # rather than as a helper function, which would be resident code
        ln = None
        for x in (b >> 4, b & 15):
            if x == 13:
                if i >= n:
                    return "truncated option"
                x = data[i] + 13
                i += 1
            elif x == 14:
                if i + 1 >= n:
                    return "truncated option"
                x = ((data[i] << 8) | data[i + 1]) + 269
                i += 2
            elif x == 15:
                return "reserved nibble 15"
            d = ln  # after both: d the delta, ln the length
            ln = x
        if i + ln > n:
            return "truncated option"
        num += d
        # a tuple: 32 B on the 64-bit host against 64 B for a 2-item list
        # (its own item array), for every option of every message received
        opts.append((num, bytes(data[i:i + ln])))
        i += ln
    return m


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
    i = 4 + len(tok)
    buf[4:i] = tok
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
            if isinstance(v, int):
                ln = 0
                x = v
                while x:
                    ln += 1
                    x >>= 8
            else:
                ln = len(v)
            # option header at buf[i]: delta and length nibbles, then their
            # extended bytes (13: +1 byte, 14: +2 bytes); here rather than a
            # helper function, which would be resident code
            j = i + 1
            h = 0
            for x in (cur - last, ln):
                h <<= 4
                if x < 13:
                    h |= x
                elif x < 269:
                    h |= 13
                    buf[j] = x - 13
                    j += 1
                else:
                    h |= 14
                    x -= 269
                    buf[j] = x >> 8
                    buf[j + 1] = x & 255
                    j += 2
            buf[i] = h
            i = j
            if isinstance(v, int):
                k = ln
                while k:
                    k -= 1
                    buf[i + k] = v & 255
                    v >>= 8
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
