"""Property tests of the gateway's SenML validator: whatever arrives, parse()
returns well-formed rows or raises SenMLError -- never another exception --
and every row it returns is within the documented rules."""
import math

import cbor2
from hypothesis import given, settings, strategies as S

from eclor.gateway import senml

NOW = 1_800_000_000.0
LABELS = [-2, -3, -4, -5, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -6, "n", "v"]
scalars = S.one_of(S.none(), S.booleans(), S.integers(-2**40, 2**40), S.floats(allow_nan=True),
                   S.text(max_size=12), S.binary(max_size=8),
                   S.sampled_from(["urn:dev:ep:me:", "urn:dev:ep:other:", "power", "level", "ev:fire", "W", "%"]))
records = S.dictionaries(S.sampled_from(LABELS), scalars, max_size=6)
packs = S.one_of(S.lists(records, max_size=8), scalars, S.dictionaries(S.integers(-3, 8), scalars, max_size=3))


@settings(max_examples=400, deadline=None)
@given(packs)
def test_cbor_packs_never_crash(pack):
    try:
        payload = cbor2.dumps(pack)
    except Exception:
        return
    check(payload, 112)


@settings(max_examples=200, deadline=None)
@given(S.binary(max_size=64))
def test_random_bytes_never_crash(data):
    check(data, 112)
    check(data, 110)


def check(payload, ct):
    try:
        rows = senml.parse(payload, ct, "me", NOW)
    except senml.SenMLError as e:
        assert str(e)
        return
    assert 1 <= len(rows) <= 64
    for name, t, v, vs, vb, unit in rows:
        assert name and not name.startswith("urn:") and len(name) <= 64
        assert senml.T_MIN <= t <= NOW + 3600
        assert sum(x is not None for x in (v, vs, vb)) == 1
        if v is not None:
            assert math.isfinite(v)
        spec = senml.KNOWN_NAMES.get(name)
        if spec:
            assert v is not None and spec[1] <= v <= spec[2] and unit == (spec[0] or unit)


def test_relative_and_base_values():
    rows = senml.parse(cbor2.dumps([{-2: "urn:dev:ep:me:", -3: -10, -5: 1.0, 0: "x", 2: 1, 6: 2}]), 112, "me", NOW)
    assert rows == [("x", NOW - 8, 2.0, None, None, None)]
