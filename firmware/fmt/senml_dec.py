"""SenML pack decoder and resolver (RFC 8428 section 4.6); see fmt/senml.py.

Kept apart from the encoder so that a device that only sends readings does
not load it. Bad input raises ValueError with the reason.
"""
import json
from fmt import cbor
from fmt.senml import CT_CBOR, CT_JSON

# RFC 8428 labels: CBOR int -> JSON name. Records of both formats are read
# through the names (CBOR labels translated first).
_LABELS = {-2: "bn", -3: "bt", -4: "bu", -5: "bv", 0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s",
           6: "t", 8: "vd", 7: "ut", -1: "bver", -6: "bs"}
_NAMES = ("bn", "bt", "bu", "bv", "n", "u", "v", "vs", "vb", "s", "t", "vd", "ut", "bver", "bs")


def decode(data, ct=CT_CBOR):
    """Parse and resolve a pack; returns a list of (name, unit, value, time)."""
    if ct == CT_CBOR:
        recs = cbor.loads(data)
    elif ct == CT_JSON:
        try:
            recs = json.loads(data)
        except Exception:
            raise ValueError("senml: invalid JSON")
    else:
        raise ValueError("senml: unsupported content-format %s" % ct)
    if not isinstance(recs, list):
        raise ValueError("senml: pack must be an array")
    bn = ""
    bt = 0
    bu = None
    bv = 0
    out = []
    for rec in recs:
        if not isinstance(rec, dict):
            raise ValueError("senml: record must be a map")
        r = {}
        for k in rec:
            if isinstance(k, str):
                lab = k if ct == CT_JSON and k in _NAMES else None
                if lab is None and k.endswith("_"):
                    raise ValueError("senml: must-understand label " + k)
            elif ct == CT_JSON:
                raise ValueError("senml: bad label")
            else:
                lab = _LABELS.get(k)
            if lab is not None:
                r[lab] = rec[k]
        rec = r
        x = rec.get("bn")
        if x is not None:
            if not isinstance(x, str):
                raise ValueError("senml: bn must be text")
            bn = x
        x = rec.get("bt")
        if x is not None:
            bt = _check_num(x, "bt")
        x = rec.get("bu")
        if x is not None:
            bu = _check_str(x, "bu")
        x = rec.get("bv")
        if x is not None:
            bv = _check_num(x, "bv")
        name = bn + _check_str(rec.get("n", ""), "n")
        if not name:
            raise ValueError("senml: record without a name")
        _check_name(name)
        unit = rec.get("u", bu)
        if unit is not None:
            _check_str(unit, "u")
        k = 0
        val = None
        if "v" in rec:
            val = _check_num(rec["v"], "v") + bv
            k += 1
        if "vs" in rec:
            val = _check_str(rec["vs"], "vs")
            k += 1
        if "vb" in rec:
            val = rec["vb"]
            if val is not True and val is not False:
                raise ValueError("senml: vb must be a boolean")
            k += 1
        if "vd" in rec:
            val = rec["vd"]
            if ct == CT_JSON:
                raise ValueError("senml: vd not supported in JSON")
            # a body reassembled from blocks arrives as a bytearray
            if not isinstance(val, (bytes, bytearray)):
                raise ValueError("senml: vd must be bytes")
            k += 1
        if k == 0 and "s" in rec:
            val = _check_num(rec["s"], "s")
            k = 1
        if k != 1:
            raise ValueError("senml: record needs exactly one value")
        t = bt + _check_num(rec.get("t", 0), "t")
        out.append((name, unit, val, t))
    return out


def _check_num(x, what):
    if x is True or x is False or not isinstance(x, (int, float)):
        raise ValueError("senml: %s must be a number" % what)
    return x


def _check_str(x, what):
    if not isinstance(x, str):
        raise ValueError("senml: %s must be text" % what)
    return x


def _check_name(name):
    # RFC 8428 4.5.1: ASCII letter or digit first, then letters, digits and - : . / _
    for i in range(len(name)):
        c = name[i]
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or (i and c in "-:./_")):
            raise ValueError("senml: bad character in name")
