"""SenML packs (RFC 8428) in CBOR (content-format 112) and JSON (110).

A reading is a tuple (name, unit, value, time):
  name  str, appended to the pack's base name (bn)
  unit  str or None (SenML registry symbol: "W", "Wh", "%", "Cel", "V", "m", "s", "ms", ...)
  value int/float -> "v", str -> "vs", bool -> "vb", bytes -> "vd"
  time  absolute UTC seconds, or None for "the pack's base time"
        (give bt and times as ints: an ESP32 float has 24 bits of mantissa,
        so 1.8e9 s as a float is off by up to a minute)
  names and units may be given as bytes (pre-encoded: nothing to allocate)

`encode(readings, bn, bt, w=None)` writes one pack into a new bytearray
(returned), or into the cbor.Writer `w` (reset first; its memoryview
returned): the first record carries bn and
bt, each later record only n/u/value and t relative to bt when its time
differs.

`concat(packs)` joins several encoded CBOR packs into one, decoding only
their first records: each pack's first record must carry its own bn and bt
(else ValueError), and SenML base values hold until the next record that
sets them, so the joined array means exactly the union of the packs (used to
send a backlog in few messages).

`decode(data, ct)` parses a pack and resolves it (RFC 8428 section 4.6)
into the same tuples with full names and absolute times (a resolved time
below 2**28 is relative to "now" and is left as is). Bad input raises
ValueError with the reason; labels ending in "_" (must-understand) are
refused; unknown others are ignored. The decoder lives in fmt/senml_dec.py,
loaded on first use: the roles only encode, and keep its ~3 KB of RAM.
"""
import json
from micropython import const
from fmt import cbor

CT_JSON = const(110)
CT_CBOR = const(112)

# CBOR labels (RFC 8428 table 6); const(): folded into the code, no module
# globals (fmt/senml_dec.py has its own copy of the ones it needs)
_BN = const(-2)
_BT = const(-3)
_N = const(0)
_U = const(1)
_V = const(2)
_VS = const(3)
_VB = const(4)
_T = const(6)
_VD = const(8)
_NUM = (int, float)  # built once: a tuple literal in isinstance() is allocated per call

# The pack is written into a bytearray with fmt.cbor's _head/_enc, or into
# a cbor.Writer given by the caller (reused: nothing allocated per pack):
# without a Writer a lamp's report and each observe notification do not load
# its class (fmt/cborw.py, ~2.2 KB of heap) on top of lamp/state.py and this
# module (docs/lamp.md "Footprint"). The bytes are the same either way.

def _hd(b, major, n):
    # a CBOR head: array or map of n items, text of n bytes
    if isinstance(b, bytearray):
        cbor._head(b, major, n)
    else:
        b.head(major, n)


def _put(b, x):
    # an item: int, float, bool, str (text), bytes-like (byte string)
    if isinstance(b, bytearray):
        cbor._enc(b, x, 0)
    elif x is True or x is False:
        b.simple(x)
    elif isinstance(x, int):
        b.int(x)
    elif isinstance(x, float):
        b.float(x)
    elif isinstance(x, str):
        b.text(x)
    else:
        b.bytes(x)


def _text(b, s):
    # a name or unit as text: str, or bytes pre-encoded (nothing to allocate)
    if isinstance(s, str):
        s = s.encode()
    _hd(b, 3, len(s))
    if isinstance(b, bytearray):
        b.extend(s)
    else:
        b.raw(s)


def encode(readings, bn=None, bt=None, w=None):
    """Encode readings as a SenML CBOR pack into Writer w (reset first) and
    return its memoryview; without w into a new bytearray (returned)."""
    if w is None:
        b = bytearray()
    else:
        b = w.reset()
    _hd(b, 4, len(readings))
    first = True
    for r in readings:
        name, unit, val, t = r
        k = 2
        if first:
            k += (bn is not None) + (bt is not None)
        if unit:
            k += 1
        if t is not None and t != bt:
            k += 1
        _hd(b, 5, k)
        if first:
            if bn is not None:
                _put(b, _BN)
                _text(b, bn)
            if bt is not None:
                _put(b, _BT)
                _put(b, bt)
            first = False
        _put(b, _N)
        _text(b, name)
        if unit:
            _put(b, _U)
            _text(b, unit)
        if val is True or val is False:
            _put(b, _VB)
        elif isinstance(val, str):
            _put(b, _VS)
        elif isinstance(val, cbor.BYTES_LIKE):
            _put(b, _VD)
        elif isinstance(val, _NUM):
            _put(b, _V)
        else:
            raise ValueError("senml: bad value type for a record")
        _put(b, val)
        if t is not None and t != bt:
            _put(b, _T)
            _put(b, t - bt if bt is not None else t)
    return b if w is None else w.value()


def encode_json(readings, bn=None, bt=None):
    """Same pack as encode(), as SenML JSON text (str)."""
    out = []
    for r in readings:
        name, unit, val, t = r
        rec = {}
        if not out:
            if bn is not None:
                rec["bn"] = bn
            if bt is not None:
                rec["bt"] = bt
        rec["n"] = name
        if unit:
            rec["u"] = unit
        if val is True or val is False:
            rec["vb"] = val
        elif isinstance(val, str):
            rec["vs"] = val
        elif isinstance(val, (int, float)):
            rec["v"] = val
        else:
            raise ValueError("senml: bad value type for JSON")
        if t is not None and t != bt:
            rec["t"] = t - bt if bt is not None else t
        out.append(rec)
    return json.dumps(out)


def concat(packs):
    """Join encoded CBOR packs (bytes-like) into one pack (bytes)."""
    total = 0
    bodies = []
    for p in packs:
        # the pack's array head: item count n, its items from pos
        if not len(p) or p[0] >> 5 != 4:
            raise ValueError("senml: pack is not a CBOR array")
        n = p[0] & 0x1F
        pos = 1
        if n > 23:
            if n > 27:
                raise ValueError("senml: bad array head")
            pos += 1 << (n - 24)
            if len(p) < pos:
                raise ValueError("senml: truncated")
            n = 0
            for i in range(1, pos):
                n = (n << 8) | p[i]
        if n:
            first = cbor.decode(p, pos)[0]
            if not isinstance(first, dict) or _BN not in first or _BT not in first:
                raise ValueError("senml: concat needs bn and bt on each pack's first record")
        total += n
        bodies.append(memoryview(p)[pos:])
    out = bytearray()  # no cbor.Writer (fmt/cborw.py): see encode()
    cbor._head(out, 4, total)
    for b in bodies:
        out.extend(b)
    return bytes(out)


def decode(data, ct=CT_CBOR):
    """Parse and resolve a pack; returns a list of (name, unit, value, time)."""
    from fmt.senml_dec import decode as d
    return d(data, ct)
