"""Property tests of the lamp schedule engine (firmware/lamp/schedule.py, tz.py)
running in unix MicroPython through the bridge, against an independent
CPython reference model written from the rules in docs/lamp.md with
datetime + zoneinfo (Europe/Paris) + astral for the sun.
"""
import datetime
from zoneinfo import ZoneInfo

import astral
import astral.sun
import pytest
from hypothesis import assume, given, settings, strategies as st

from mpbridge import MicroBridge, MicroPythonError

PARIS = ZoneInfo("Europe/Paris")
UTC = datetime.timezone.utc
EPOCH = datetime.date(1970, 1, 1)


@pytest.fixture(scope="module")
def mp():
    with MicroBridge() as b:
        yield b


# ---------------------------------------------------------------- reference model

def _sun(date, lat, lon, rising):
    d = astral.SunDirection.RISING if rising else astral.SunDirection.SETTING
    return astral.sun.time_of_transit(astral.Observer(lat, lon), date, 90.833, d, with_refraction=False)


def _local(date, minutes_after_noon):
    naive = datetime.datetime(date.year, date.month, date.day, 12) + datetime.timedelta(minutes=minutes_after_noon)
    return naive.replace(tzinfo=PARIS, fold=0).astimezone(UTC)


def _date_match(rule, d):
    lo, hi = rule.get("from"), rule.get("to")
    if lo is None and hi is None:
        return True
    if len(lo or hi) == 10:
        return (lo is None or d >= datetime.date.fromisoformat(lo)) and (hi is None or d <= datetime.date.fromisoformat(hi))
    md = (d.month, d.day)
    a = tuple(map(int, lo.split("-"))) if lo else (1, 1)
    b = tuple(map(int, hi.split("-"))) if hi else (12, 31)
    return a <= md <= b if a <= b else (md >= a or md <= b)


def ref_level(cal, utc, overrides, presence, lat, lon, boundaries=None):
    t = datetime.datetime.fromtimestamp(utc, UTC)
    active = [o for o in overrides if o[1] <= utc and (not o[2] or utc < o[2])]
    if active:
        return max(reversed(active), key=lambda o: o[1])[0]  # latest start; tie: last listed
    loc = t.astimezone(PARIS)
    day = loc.date() if loc.hour >= 12 else loc.date() - datetime.timedelta(days=1)
    prog = cal["default"]
    for r in cal.get("rules", []):
        if day.isoweekday() in r.get("days", range(1, 8)) and _date_match(r, day):
            prog = r["program"]
            break
    start, end = _local(day, 0), _local(day, 1440)
    sunset = _sun(day, lat, lon, False)
    sunrise = _sun(day + datetime.timedelta(days=1), lat, lon, True)
    level, prev = 0, start
    for p in cal["programs"][prog]:
        off = datetime.timedelta(minutes=p.get("offset", 0))
        if p["at"] == "sunset":
            when = sunset + off
        elif p["at"] == "sunrise":
            when = sunrise + off
        else:
            h, m = map(int, p["at"].split(":"))
            when = _local(day, (h * 60 + m + p.get("offset", 0) - 720) % 1440)
            if boundaries is not None:
                boundaries.append(None)  # fixed: exact
        if p["at"] in ("sunset", "sunrise") and boundaries is not None:
            boundaries.append(when)
        when = min(max(when, prev), end)
        prev = when
        if when <= t:
            level = p["level"]
    pres = cal.get("presence")
    if pres and presence is not None and presence <= utc < presence + pres.get("hold_s", 60) and level < pres["level"]:
        if boundaries is not None:
            boundaries.extend([sunset, sunrise])
        if sunset <= t < sunrise:
            return pres["level"]
    return level


# ---------------------------------------------------------------- strategies

def _hhmm(k):  # minutes after noon -> "HH:MM"
    m = (k + 720) % 1440
    return "%02d:%02d" % (m // 60, m % 60)


@st.composite
def programs(draw):
    n = draw(st.integers(1, 6))
    keys = sorted(draw(st.lists(st.integers(0, 1439), min_size=n, max_size=n)))
    pts = []
    for k in keys:
        kind = draw(st.sampled_from(["fixed", "fixed", "sunset", "sunrise"]))
        p = {"level": draw(st.integers(0, 100))}
        if kind == "fixed":
            p["at"] = _hhmm(k)
        else:
            p["at"] = kind
            if draw(st.booleans()):
                p["offset"] = draw(st.integers(-180, 180))
        pts.append(p)
    return pts


@st.composite
def calendars(draw):
    names = draw(st.lists(st.sampled_from(["std", "off", "fest", "wk"]), min_size=1, max_size=3, unique=True))
    cal = {"id": "c", "default": draw(st.sampled_from(names)), "programs": {n: draw(programs()) for n in names}}
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        r = {"program": draw(st.sampled_from(names))}
        if draw(st.booleans()):
            r["days"] = sorted(draw(st.sets(st.integers(1, 7), min_size=1)))
        kind = draw(st.sampled_from(["none", "md", "ymd"]))
        if kind == "md":
            for key in ("from", "to"):
                if draw(st.booleans()):
                    r[key] = "%02d-%02d" % (draw(st.integers(1, 12)), draw(st.integers(1, 28)))
        elif kind == "ymd":
            for key in ("from", "to"):
                if draw(st.booleans()):
                    d = datetime.date(2026, 1, 1) + datetime.timedelta(days=draw(st.integers(-30, 760)))
                    r[key] = d.isoformat()
        rules.append(r)
    if rules:
        cal["rules"] = rules
    if draw(st.booleans()):
        cal["presence"] = {"level": draw(st.integers(0, 100)), "hold_s": draw(st.integers(1, 3600)), "gap_s": 5}
    return cal


T0 = int(datetime.datetime(2026, 1, 1, tzinfo=UTC).timestamp())
instants = st.integers(T0, T0 + 2 * 365 * 86400)


@settings(max_examples=400, deadline=None)
@given(cal=calendars(), utc=instants, data=st.data(),
       lat=st.floats(42, 55), lon=st.floats(-5, 10))
def test_level_matches_reference_model(mp, cal, utc, data, lat, lon):
    overrides = []
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 3))):
            s = utc + data.draw(st.integers(-7200, 7200))
            e = data.draw(st.sampled_from([0, s + data.draw(st.integers(1, 7200))]))
            overrides.append([data.draw(st.integers(0, 100)), s, e])
    presence = data.draw(st.one_of(st.none(), st.integers(utc - 4000, utc + 100)))
    bounds = []
    want = ref_level(cal, utc, overrides, presence, lat, lon, bounds)
    t = datetime.datetime.fromtimestamp(utc, UTC)
    # The device's sun is within a minute of astral's: skip instants that
    # fall within 90 s of a sun-derived boundary.
    assume(all(b is None or abs((b - t).total_seconds()) > 90 for b in bounds))
    got = mp.call("lamp.schedule.level_at", cal, utc, overrides, presence, lat, lon)
    assert 0 <= got <= 100
    assert got == want, (got, want)


@settings(max_examples=300, deadline=None)
@given(utc=st.integers(820454400, 4102444800))  # EU rule in force since 1996
def test_paris_offset_matches_zoneinfo(mp, utc):
    want = int(datetime.datetime.fromtimestamp(utc, UTC).astimezone(PARIS).utcoffset().total_seconds())
    assert mp.call("lamp.tz.offset", utc) == want


@settings(max_examples=300, deadline=None)
@given(local=st.datetimes(datetime.datetime(1996, 1, 1), datetime.datetime(2090, 1, 1)))
def test_local_to_utc_matches_zoneinfo_fold0(mp, local):
    local = local.replace(second=0, microsecond=0)
    want = int(local.replace(tzinfo=PARIS, fold=0).timestamp())
    secs = int(local.replace(tzinfo=UTC).timestamp())
    assert mp.call("lamp.tz.to_utc", secs) == want


@settings(max_examples=200, deadline=None)
@given(d=st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31)))
def test_civil_dates(mp, d):
    z = (d - EPOCH).days
    assert mp.call("lamp.tz.days_from_civil", d.year, d.month, d.day) == z
    assert mp.call("lamp.tz.civil_from_days", z) == [d.year, d.month, d.day]
    assert mp.call("lamp.tz.weekday", z) == d.isoweekday()


GOOD = {"id": "x", "default": "std", "programs": {"std": [{"at": "sunset", "level": 100}, {"at": "sunrise", "level": 0}]}}


@pytest.mark.parametrize("bad, reason", [
    ([1, 2], "calendar must be a map"),
    ({"default": "std"}, "programs must be a map"),
    ({**GOOD, "default": "nope"}, "default must name a program"),
    ({**GOOD, "programs": {"std": [{"at": "25:00", "level": 5}]}}, "'at' must be HH:MM"),
    ({**GOOD, "programs": {"std": [{"at": "sunset", "level": 101}]}}, "level must be an integer 0..100"),
    ({**GOOD, "programs": {"std": [{"at": "sunset", "level": 1, "offset": 900}]}}, "offset"),
    ({**GOOD, "programs": {"std": [{"at": "05:00", "level": 1}, {"at": "22:00", "level": 1}]}}, "out of order"),
    ({**GOOD, "rules": [{"program": "zz"}]}, "rule 1: unknown program"),
    ({**GOOD, "rules": [{"program": "std", "from": "02-30x"}]}, "rule 1 from: date must be"),
    ({**GOOD, "rules": [{"program": "std", "from": "2026-02-30"}]}, "rule 1 from: date must be"),
    ({**GOOD, "rules": [{"program": "std", "days": [0]}]}, "weekday must be an integer 1..7"),
    ({**GOOD, "rules": [{"program": "std", "from": "01-01", "to": "2026-02-01"}]}, "both"),
    ({**GOOD, "presence": {"level": "high"}}, "presence level"),
])
def test_invalid_calendar_rejected_with_reason(mp, bad, reason):
    with pytest.raises(MicroPythonError) as e:
        mp.call("lamp.schedule.validate", bad)
    assert e.value.args[0].startswith("ValueError: ") and reason in e.value.args[0], e.value.args[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8) | st.sampled_from(["sunset", "sunrise", "12:00", "std", "01-01"]),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["id", "default", "programs", "rules", "std", "at", "level", "offset", "from", "to", "days", "program", "presence"]), c, max_size=5),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(junk=json_values)
def test_junk_calendar_is_valid_or_a_clear_valueerror(mp, junk):
    try:
        mp.call("lamp.schedule.validate", junk)
    except MicroPythonError as e:
        assert e.args[0].startswith("ValueError: "), e.args[0]


def test_polar_night_and_day_stay_safe(mp):
    cal = {"default": "p", "programs": {"p": [{"at": "sunset", "level": 100}, {"at": "23:00", "level": 50}, {"at": "sunrise", "level": 0}]}}
    dec = int(datetime.datetime(2026, 12, 21, 12, 30, tzinfo=UTC).timestamp())
    jun = int(datetime.datetime(2026, 6, 21, 21, 30, tzinfo=UTC).timestamp())
    # 78 N (Svalbard): polar night -> lit at noon; midnight sun -> off at 23:30
    assert mp.call("lamp.schedule.level_at", cal, dec, [], None, 78.2, 15.6) == 100
    assert mp.call("lamp.schedule.level_at", cal, jun, [], None, 78.2, 15.6) == 0


@settings(max_examples=200, deadline=None)
@given(cal=calendars(), utc=st.integers(T0 - 40 * 365 * 86400, T0 + 60 * 365 * 86400),
       lat=st.floats(-90, 90), lon=st.floats(-180, 180), presence=st.one_of(st.none(), instants))
def test_level_in_range_anywhere_anytime(mp, cal, utc, lat, lon, presence):
    # polar days and nights, the date line, far past and future: a level, never an exception
    got = mp.call("lamp.schedule.level_at", cal, utc, [], presence, lat, lon)
    assert isinstance(got, int) and 0 <= got <= 100
