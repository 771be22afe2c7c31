"""SenML packs (RFC 8428) in CBOR (content-format 112) and JSON (110).

A reading is a tuple (name, unit, value, time):
  name  str, appended to the pack's base name (bn)
  unit  str or None (SenML registry symbol: "W", "Wh", "%", "Cel", "V", "m", "s", "ms", ...)
  value int/float -> "v", str -> "vs", bool -> "vb", bytes -> "vd"
  time  absolute UTC seconds, or None for "the pack's base time"
        (give bt and times as ints: an ESP32 float has 24 bits of mantissa,
        so 1.8e9 s as a float is off by up to a minute)
  names and units may be given as bytes (pre-encoded: nothing to allocate)

`encode(readings, bn, bt, w)` writes one pack into the cbor.Writer `w`
(reset first) and returns a memoryview of it: the first record carries bn and
bt, each later record only n/u/value and t relative to bt when its time
differs. Roles keep one Writer for their reports.

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

def _num(w, x):
    if isinstance(x, int):
        w.int(x)
    else:
        w.float(x)


def encode(readings, bn=None, bt=None, w=None):
    """Encode readings as a SenML CBOR pack into Writer w; returns its memoryview."""
    if w is None:
        w = cbor.Writer(64)
    w.reset()
    w.array(len(readings))
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
        w.map(k)
        if first:
            if bn is not None:
                w.int(_BN)
                w.text(bn)
            if bt is not None:
                w.int(_BT)
                _num(w, bt)
            first = False
        w.int(_N)
        w.text(name)
        if unit:
            w.int(_U)
            w.text(unit)
        if val is True or val is False:
            w.int(_VB)
            w.simple(val)
        elif isinstance(val, str):
            w.int(_VS)
            w.text(val)
        elif isinstance(val, cbor.BYTES_LIKE):
            w.int(_VD)
            w.bytes(val)
        elif isinstance(val, _NUM):
            w.int(_V)
            _num(w, val)
        else:
            raise ValueError("senml: bad value type for a record")
        if t is not None and t != bt:
            w.int(_T)
            _num(w, t - bt if bt is not None else t)
    return w.value()


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
    w = cbor.Writer(16)
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
    w.array(total)
    for b in bodies:
        w.raw(b)
    return bytes(w.value())


def decode(data, ct=CT_CBOR):
    """Parse and resolve a pack; returns a list of (name, unit, value, time)."""
    from fmt.senml_dec import decode as d
    return d(data, ct)
