"""Property tests: firmware SenML (fmt/senml.py in unix MicroPython, through
the bridge) against a CPython reference resolver of RFC 8428 section 4.6,
reading CBOR with cbor2 and JSON with the json module."""
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpbridge import MicroBridge

cbor2 = pytest.importorskip("cbor2")
HERE = Path(__file__).resolve().parent
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*\Z")
JSON_LABELS = {"bn": -2, "bt": -3, "bu": -4, "bv": -5, "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6}


@pytest.fixture(scope="module")
def mp():
    with MicroBridge(extra_path=[HERE]) as b:
        yield b


def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def ref_resolve(recs):
    """RFC 8428 4.6 resolution of a pack given as a list of {int label: value}."""
    if not isinstance(recs, list):
        raise ValueError("not an array")
    bn, bt, bu, bv = "", 0, None, 0
    out = []
    for r in recs:
        if not isinstance(r, dict):
            raise ValueError("record not a map")
        if any(isinstance(k, str) and k.endswith("_") for k in r):
            raise ValueError("must understand")
        if -2 in r:
            if not isinstance(r[-2], str):
                raise ValueError
            bn = r[-2]
        for lab in (-3, -5):
            if lab in r and not num(r[lab]):
                raise ValueError
        bt = r.get(-3, bt)
        bv = r.get(-5, bv)
        if -4 in r:
            if not isinstance(r[-4], str):
                raise ValueError
            bu = r[-4]
        n = r.get(0, "")
        if not isinstance(n, str):
            raise ValueError
        name = bn + n
        if not NAME_RE.match(name):
            raise ValueError("name")
        unit = r.get(1, bu)
        if unit is not None and not isinstance(unit, str):
            raise ValueError
        present = [k for k in (2, 3, 4, 8) if k in r]
        if not present and 5 in r:
            present = [5]
        if len(present) != 1:
            raise ValueError("value count")
        k = present[0]
        v = r[k]
        if k in (2, 5):
            if not num(v):
                raise ValueError
            if k == 2:
                v = v + bv
        elif k == 3 and not isinstance(v, str):
            raise ValueError
        elif k == 4 and not isinstance(v, bool):
            raise ValueError
        elif k == 8 and not isinstance(v, bytes):
            raise ValueError
        t = r.get(6, 0)
        if not num(t):
            raise ValueError
        out.append((name, unit, v, bt + t))
    return out


def from_json(recs):
    return [{JSON_LABELS[k]: v for k, v in r.items() if k in JSON_LABELS} for r in recs]


names = st.from_regex(r"[a-z0-9][a-z0-9:._/-]{0,12}", fullmatch=True)
units = st.sampled_from([None, "W", "Wh", "%", "Cel", "V", "m", "s", "ms", "dBm", "/"])
values = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.text(max_size=12), st.booleans())
bts = st.one_of(st.none(), st.integers(1_600_000_000, 2_000_000_000))


@st.composite
def packs(draw, based=False):
    bt = draw(st.integers(1_600_000_000, 2_000_000_000) if based else bts)
    rs = []
    for _ in range(draw(st.integers(1, 6))):
        t = draw(st.one_of(st.none(), st.integers(-3600, 3600)))
        if t is not None and bt is not None:
            t = bt + t
        rs.append([draw(names), draw(units), draw(values), t])
    bn = draw(st.sampled_from(["urn:dev:ep:lamp-1:", "urn:dev:ep:bin-7:"] + ([] if based else [None])))
    return bn, bt, rs


def expected(bn, bt, rs):
    return [((bn or "") + n, u, v, t if t is not None else (bt or 0)) for n, u, v, t in rs]


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert list(x[:3]) == list(y[:3]) and type(x[2]) is type(y[2]), (x, y)
        assert math.isclose(x[3], y[3], abs_tol=1e-6), (x, y)


@SETTINGS
@given(packs())
def test_cbor_encode_matches_reference(mp, p):
    bn, bt, rs = p
    out = mp.call("fmt_bridge_fns.senml_encode", cbor2.dumps(rs), bn, bt)
    same(ref_resolve(cbor2.loads(out)), expected(bn, bt, rs))
    # and the firmware decoder reads its own packs back
    r = mp.call("fmt_bridge_fns.senml_decode", out, 112)
    assert r[0] == "ok", r
    same(cbor2.loads(r[1]), expected(bn, bt, rs))


@SETTINGS
@given(packs())
def test_json_encode_matches_reference(mp, p):
    bn, bt, rs = p
    out = mp.call("fmt_bridge_fns.senml_encode_json", cbor2.dumps(rs), bn, bt)
    same(ref_resolve(from_json(json.loads(out))), expected(bn, bt, rs))
    r = mp.call("fmt_bridge_fns.senml_decode", out.encode(), 110)
    assert r[0] == "ok", r
    same(cbor2.loads(r[1]), expected(bn, bt, rs))


@SETTINGS
@given(st.lists(packs(based=True), min_size=1, max_size=4))
def test_concat_means_the_union(mp, ps):
    enc = [mp.call("fmt_bridge_fns.senml_encode", cbor2.dumps(rs), bn, bt) for bn, bt, rs in ps]
    joined = mp.call("fmt_bridge_fns.senml_concat", enc)
    want = [x for bn, bt, rs in ps for x in expected(bn, bt, rs)]
    same(ref_resolve(cbor2.loads(joined)), want)


def test_concat_refuses_packs_without_base_fields(mp):
    a = mp.call("fmt_bridge_fns.senml_encode", cbor2.dumps([["x", None, 1, None]]), "urn:a:", 1_700_000_000)
    b = mp.call("fmt_bridge_fns.senml_encode", cbor2.dumps([["x", None, 1, None]]), None, None)
    with pytest.raises(Exception, match="bn and bt"):
        mp.call("fmt_bridge_fns.senml_concat", [a, b])


label_vals = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                       st.booleans(), st.binary(max_size=3), st.none())


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from([-5, -4, -3, -2, 0, 1, 2, 3, 4, 5, 6, 8, 7, 99, "x_", "y"]),
                                label_vals, max_size=5), max_size=4))
def test_arbitrary_cbor_packs_resolve_like_the_reference(mp, recs):
    recs = [{k: v for k, v in r.items() if v is not None} for r in recs]
    r = mp.call("fmt_bridge_fns.senml_decode", cbor2.dumps(recs), 112)
    try:
        ref = ref_resolve(recs)
    except (ValueError, TypeError):
        assert r[:2] == ["err", "ValueError"], (r, recs)
        return
    assert r[0] == "ok", (r, recs)
    got = cbor2.loads(r[1])
    assert len(got) == len(ref)
    for x, y in zip(got, ref):
        assert x[:2] == list(y[:2])
        assert x[2] == y[2] or (isinstance(x[2], float) and math.isclose(x[2], y[2], rel_tol=1e-12))
        assert math.isclose(x[3], y[3], rel_tol=1e-12, abs_tol=1e-9)


@SETTINGS
@given(st.binary(max_size=48), st.sampled_from([110, 112, 0]))
def test_arbitrary_bytes_only_raise_value_error(mp, data, ct):
    r = mp.call("fmt_bridge_fns.senml_decode", data, ct)
    assert r[0] == "ok" or r[1] == "ValueError", r
