"""Sunrise/sunset of firmware/lamp/astro.py against astral, in float64 and float32.

The ESP32 computes in float32; the unix port and CPython in float64. To test
the float32 behaviour on the host, the very source of astro.py is executed
with every intermediate rounded to float32: its AST is rewritten so that each
float literal becomes F32(literal), F32 is a float subclass whose arithmetic
rounds every result through struct.pack('f'), and math functions round their
result too (the ESP32 libm is correct to about 1 ulp, which this models).
Ints stay exact ints as on the device. The same transform applied to the
textbook Julian-Day formulation shows that it is what the test catches.

Reference: astral's NOAA implementation with the same definition of the event
(zenith 90.833 deg, no extra refraction model): astral.sun.time_of_transit.
astral's own sunrise() uses 90.2667 deg + its refraction model (~90.79 deg);
the brief fixes 0.833 deg, so that is the reference.
"""
import ast
import datetime
import math
import struct
from pathlib import Path

import astral
import astral.sun
import pytest
from hypothesis import given, settings, strategies as st

from mpbridge import MicroBridge

ASTRO = Path(__file__).resolve().parents[2] / "firmware" / "lamp" / "astro.py"
EPOCH = datetime.date(1970, 1, 1)


def r32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


class F32(float):
    def __new__(cls, x):
        return float.__new__(cls, r32(float(x)))


def _op(name):
    base = getattr(float, name)

    def f(a, b):
        r = base(float(a), float(b))
        return r if r is NotImplemented else F32(r)
    return f


for _n in ("add", "sub", "mul", "truediv", "mod", "pow", "floordiv"):
    setattr(F32, "__%s__" % _n, _op("__%s__" % _n))
    setattr(F32, "__r%s__" % _n, _op("__r%s__" % _n))
F32.__neg__ = lambda a: F32(-float(a))


def _m(fn):
    return lambda *a: F32(fn(*[float(x) for x in a]))


class _ToF32(ast.NodeTransformer):
    def visit_Constant(self, node):
        if isinstance(node.value, float):
            return ast.copy_location(ast.Call(ast.Name("F32", ast.Load()), [node], []), node)
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Div):  # int / int is a float32 on the device
            node.left = ast.Call(ast.Name("F32", ast.Load()), [node.left], [])
        return node

    def visit_ImportFrom(self, node):
        return None if node.module in ("math", "dev", "micropython") else node


def load_f32(source, extra=None):
    """Exec firmware source with float32 arithmetic; `from dev import ...`
    is dropped and `extra` supplies those names (const() is the identity)."""
    tree = ast.fix_missing_locations(_ToF32().visit(ast.parse(source)))
    ns = {"F32": F32, "const": lambda v: v}  # micropython.const
    ns.update(extra or {})
    for name in ("sin", "cos", "tan", "asin", "acos", "atan2", "radians", "degrees", "sqrt", "fmod"):
        ns[name] = _m(getattr(math, name))
    exec(compile(tree, "astro_f32", "exec"), ns)
    return ns


def load_f64(source):
    ns = {"const": lambda v: v}  # micropython.const
    exec(compile(source.replace("from micropython import const\n", ""), "astro_f64", "exec"), ns)
    return ns


SRC = ASTRO.read_text()
A32 = load_f32(SRC)
A64 = load_f64(SRC)


def reference(day, lat, lon, rising):
    date = EPOCH + datetime.timedelta(days=day)
    obs = astral.Observer(latitude=lat, longitude=lon)
    direction = astral.SunDirection.RISING if rising else astral.SunDirection.SETTING
    try:
        t = astral.sun.time_of_transit(obs, date, 90.833, direction, with_refraction=False)
    except ValueError:  # math domain error: polar day / night
        return None
    base = datetime.datetime(date.year, date.month, date.day, tzinfo=datetime.timezone.utc)
    return (t - base).total_seconds()


def test_f32_shim_really_rounds():
    x = F32(0.1) * 3.0
    assert type(x) is F32 and float(x) == r32(float(x)) and float(x) != 0.1 * 3.0
    # the rewritten module computes in F32: its solar() returns F32 values
    dec, eqt = A32["_solar"](9800 - 0.5)
    assert type(dec) is F32 and type(eqt) is F32


def _grid():
    # latitudes -65..65 every 5 deg, 40 dates 2000..2060, longitudes spread
    for i, lat in enumerate(range(-65, 66, 5)):
        for k in range(40):
            day = 10957 + k * 557 + i * 13
            lon = ((k * 47 + i * 29) % 360) - 180
            yield day, float(lat), float(lon)


@pytest.mark.parametrize("impl", ["f64", "f32"])
def test_within_one_minute_of_astral_across_latitudes_and_dates(impl):
    event = (A32 if impl == "f32" else A64)["event"]
    worst = 0.0
    n = 0
    for day, lat, lon in _grid():
        for rising in (True, False):
            ref = reference(day, lat, lon, rising)
            got = event(day, lat, lon, rising)
            assert (ref is None) == (got is None), (day, lat, lon, rising, ref, got)
            if ref is None:
                continue
            worst = max(worst, abs(got - ref))
            n += 1
            assert abs(got - ref) < 60, (impl, day, lat, lon, rising, got, ref)
    assert n > 2000
    print("%s: worst %.1f s over %d events" % (impl, worst, n))


def test_julian_day_formulation_fails_in_f32():
    # The textbook form carries the event as a Julian Day (~2.46e6, whose
    # float32 ulp is 0.25 day): run through the same shim it is off by hours,
    # so the check above can fail; in float64 the same variant is fine.
    old = "    return int(minutes * 60.0 + 0.5) if minutes >= 0 else -int(-minutes * 60.0 + 0.5)"
    new = "    jd = 2440587.5 + day + minutes / 1440.0\n    return (jd - 2440587.5 - day) * 86400.0"
    naive = SRC.replace(old, new)
    assert naive != SRC
    ev64 = load_f64(naive)["event"]
    assert abs(ev64(20000, 49.47, 5.93, True) - reference(20000, 49.47, 5.93, True)) < 60
    ev = load_f32(naive)["event"]
    worst = max(abs(ev(day, lat, lon, True) - reference(day, lat, lon, True))
                for day, lat, lon in [(20000, 49.47, 5.93), (20443, 49.47, 5.93), (21000, 30.0, 100.0), (21100, -40.0, -70.0)])
    assert worst > 60, worst


def test_villerupt_solstices_against_astral_sunrise():
    # astral's own sunrise/sunset differ from the 0.833 deg definition by a
    # fraction of a minute at 49 N: the device agrees with it too.
    obs = astral.Observer(49.47, 5.93)
    for date in (datetime.date(2026, 12, 21), datetime.date(2026, 6, 21)):
        day = (date - EPOCH).days
        base = datetime.datetime(date.year, date.month, date.day, tzinfo=datetime.timezone.utc)
        rise = A32["event"](day, 49.47, 5.93, True)
        sset = A32["event"](day, 49.47, 5.93, False)
        assert abs(rise - (astral.sun.sunrise(obs, date) - base).total_seconds()) < 60
        assert abs(sset - (astral.sun.sunset(obs, date) - base).total_seconds()) < 60


@pytest.fixture(scope="module")
def bridge():
    with MicroBridge() as mp:
        yield mp


@settings(max_examples=150, deadline=None)
@given(day=st.integers(10957, 32000), lat=st.floats(-65, 65), lon=st.floats(-180, 180), rising=st.booleans())
def test_micropython_astro_matches_astral(bridge, day, lat, lon, rising):
    got = bridge.call("lamp.astro.event", day, lat, lon, rising)
    ref = reference(day, lat, lon, rising)
    if ref is None or got is None:
        # only on the edge of a polar day/night (|cos H| ~ 1), where both agree closely
        assert abs(lat) > 60, (got, ref)
        return
    assert abs(got - ref) < 60, (got, ref)
