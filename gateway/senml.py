"""SenML (RFC 8428) decoding and validation for ``POST /dp`` and observations.

``parse(payload, ct, ep, now)`` returns rows ``(name, t, v, vs, vb, unit)`` or
raises ``SenMLError`` whose text is the diagnostic sent back with 4.00: the
record index and the field at fault, so a firmware author sees what to fix.

Rules (documented in docs/protocol.md):
* CBOR (ct 112, integer labels) or JSON (ct 110, string labels); a non-empty
  array of maps, at most ``max_records`` records.
* Known labels only: bver bn bt bu bv n u v vs vb t ut (s, vd, bs are refused:
  nothing on the wire uses them and silently ignoring a value is worse).
* Exactly one of v / vs / vb per record; v finite; strings <= 64 chars.
* Name = bn + n; a ``urn:dev:ep:EP:`` prefix must name the sender's own ep and
  is stripped; the rest must be a SenML name (RFC 8428 sec. 4.5.1 characters).
* Time = bt + t; values below 2**28 are relative to now (RFC 8428 sec. 4.5.3);
  the result must lie between 2000-01-01 and now + ``max_future`` seconds.
* Names the architecture defines (docs/architecture.md) must use their unit
  and stay in their range.
"""
import json
import math

import cbor2

CT_SENML_JSON = 110
CT_SENML_CBOR = 112

# CBOR integer label -> JSON label
LABELS = {-1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", 0: "n", 1: "u", 2: "v",
          3: "vs", 4: "vb", 6: "t", 7: "ut"}
KNOWN = set(LABELS.values())
REFUSED = {5: "s", 8: "vd", -6: "bs", "s": "s", "vd": "vd", "bs": "bs"}

REL_LIMIT = 1 << 28
T_MIN = 946684800.0  # 2000-01-01

# name -> (unit or None, min, max). vs/vb names have no numeric range.
KNOWN_NAMES = {
    "level": ("%", 0, 100), "target": ("%", 0, 100), "power": ("W", 0, 1e5),
    "energy": ("Wh", 0, 1e12), "hours": ("s", 0, 1e11), "switch_on": (None, 0, 1e12),
    "voltage": ("V", 0, 1000), "current": ("A", 0, 1000), "pf": ("/", -1, 1),
    "fill": ("%", 0, 100), "distance": ("m", 0, 20), "temp": ("Cel", -60, 300),
    "battery": ("V", 0, 10), "dropped": (None, 0, 1e12),
    "awake_ms": ("ms", 0, 1e9), "radio_ms": ("ms", 0, 1e9),
}
VS_NAMES = {"status", "mode"}
VB_NAMES = {"relay"}
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-:./_")


class SenMLError(ValueError):
    pass


def decode(payload, ct):
    """bytes -> list of records with JSON labels. Raises SenMLError."""
    if ct == CT_SENML_CBOR:
        try:
            data = cbor2.loads(payload)
        except Exception as e:
            raise SenMLError("invalid CBOR: %s" % e) from None
    elif ct == CT_SENML_JSON:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise SenMLError("invalid JSON: %s" % e) from None
    else:
        raise SenMLError("unsupported content format %r" % (ct,))
    if not isinstance(data, list):
        raise SenMLError("SenML pack must be an array of records")
    if not data:
        raise SenMLError("empty SenML pack")
    out = []
    cbor = ct == CT_SENML_CBOR
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise SenMLError("record %d: not a map" % i)
        r = {}
        for k, v in rec.items():
            if k in REFUSED:
                raise SenMLError("record %d: label %r (%s) not supported" % (i, k, REFUSED[k]))
            name = LABELS.get(k) if cbor else (k if k in KNOWN else None)
            if name is None:
                raise SenMLError("record %d: unknown label %r" % (i, k))
            r[name] = v
        out.append(r)
    return out


def _num(v, what, i):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SenMLError("record %d: %s must be a number" % (i, what))
    if not math.isfinite(v):
        raise SenMLError("record %d: %s must be finite" % (i, what))
    return float(v)


def resolve(records, ep, now, max_records=64, max_future=3600):
    """Records (JSON labels) -> rows (name, t, v, vs, vb, unit)."""
    if len(records) > max_records:
        raise SenMLError("too many records: %d > %d" % (len(records), max_records))
    bn, bt, bu, bv = "", 0.0, None, 0.0
    prefix = "urn:dev:ep:"
    mine = prefix + ep + ":" if ep else None
    rows = []
    for i, r in enumerate(records):
        if "bver" in r and (isinstance(r["bver"], bool) or not isinstance(r["bver"], int)
                            or r["bver"] > 10):
            raise SenMLError("record %d: unsupported bver %r" % (i, r["bver"]))
        if "bn" in r:
            if not isinstance(r["bn"], str):
                raise SenMLError("record %d: bn must be a string" % i)
            bn = r["bn"]
        if "bt" in r:
            bt = _num(r["bt"], "bt", i)
        if "bu" in r:
            if not isinstance(r["bu"], str):
                raise SenMLError("record %d: bu must be a string" % i)
            bu = r["bu"]
        if "bv" in r:
            bv = _num(r["bv"], "bv", i)
        n = r.get("n", "")
        if not isinstance(n, str):
            raise SenMLError("record %d: n must be a string" % i)
        name = bn + n
        if name.startswith(prefix):
            if mine is None or not name.startswith(mine):
                raise SenMLError("record %d: name %r does not belong to the sender (ep %r)"
                                 % (i, name, ep))
            name = name[len(mine):]
        if not name or len(name) > 64 or not (name[0].isalnum()) or not _NAME_OK.issuperset(name):
            raise SenMLError("record %d: invalid name %r" % (i, name))
        vals = [k for k in ("v", "vs", "vb") if k in r]
        if len(vals) != 1:
            raise SenMLError("record %d (%s): needs exactly one of v, vs, vb" % (i, name))
        v = vs = vb = None
        if "v" in r:
            v = _num(r["v"], "v", i) + bv
        elif "vs" in r:
            vs = r["vs"]
            if not isinstance(vs, str) or len(vs) > 64:
                raise SenMLError("record %d (%s): vs must be a string of at most 64 chars" % (i, name))
        else:
            vb = r["vb"]
            if not isinstance(vb, bool):
                raise SenMLError("record %d (%s): vb must be true or false" % (i, name))
            vb = int(vb)
        unit = r.get("u", bu)
        if unit is not None and (not isinstance(unit, str) or len(unit) > 16):
            raise SenMLError("record %d (%s): u must be a short string" % (i, name))
        t = bt + (_num(r["t"], "t", i) if "t" in r else 0.0)
        if t < REL_LIMIT:
            t = now + t
        if t < T_MIN or t > now + max_future:
            raise SenMLError("record %d (%s): time %.0f out of range" % (i, name, t))
        spec = KNOWN_NAMES.get(name)
        if spec is not None:
            if v is None:
                raise SenMLError("record %d (%s): numeric value v expected" % (i, name))
            want, lo, hi = spec
            if want is not None and unit is not None and unit != want:
                raise SenMLError("record %d (%s): unit must be %r, not %r" % (i, name, want, unit))
            if unit is None:
                unit = want
            if not lo <= v <= hi:
                raise SenMLError("record %d (%s): value %g out of range [%g, %g]" % (i, name, v, lo, hi))
        elif name in VS_NAMES and vs is None:
            raise SenMLError("record %d (%s): string value vs expected" % (i, name))
        elif (name in VB_NAMES or name.startswith("ev:")) and vb is None:
            raise SenMLError("record %d (%s): boolean value vb expected" % (i, name))
        rows.append((name, round(t, 3), v, vs, vb, unit))
    return rows


def parse(payload, ct, ep, now, max_records=64, max_future=3600):
    return resolve(decode(payload, ct), ep, now, max_records, max_future)
