"""Schedule engine: calendar -> level at an instant, as a pure function.

Calendar (JSON or CBOR map, docs/lamp.md):

    {"id": "villerupt-2026", "default": "std",
     "programs": {"std": [{"at": "sunset", "level": 100},
                          {"at": "22:00", "level": 40},
                          {"at": "05:30", "level": 100},
                          {"at": "sunrise", "offset": 10, "level": 0}]},
     "rules": [{"from": "12-24", "to": "01-01", "days": [5, 6], "program": "fest"}],
     "presence": {"level": 80, "hold_s": 120, "gap_s": 10}}

Design choices (the reference model in tests/coap/test_lamp_schedule.py
implements the same words independently):

* An operating day runs from 12:00 local of date D to 12:00 local of D+1, so
  one night belongs to one program. Rules are tried in order with date D and
  its ISO weekday; the first match wins, else "default".
* A fixed time HH:MM at or after 12:00 is on D, before 12:00 on D+1; "sunset"
  is D's sunset, "sunrise" D+1's sunrise, each plus "offset" minutes.
* Switch points act in list order: a point whose instant falls before the
  previous one's is moved to the previous one (dusk after 22:00 in June
  means the "100 % until 22:00" step is empty, not that it lasts all night).
* Before the first point of the operating day the level is 0 (noon is day).
* Presence boost: during the night (D's sunset to D+1's sunrise), for hold_s
  after an accepted motion, the level is at least presence.level. The caller
  rate-limits motions (gap_s) and passes the time of the last accepted one.
* Overrides [level, start, expiry] (UTC s; expiry 0 = until resume) take
  precedence; among active ones the latest start wins.

validate() (in lamp/calcheck.py, imported only when a calendar arrives or at
boot, so its code does not stay on the heap) turns a calendar into a compact
tuple form or raises ValueError with the reason; callers keep the previous
calendar on error. The sun's position (lamp/astro.py) is needed once per
operating day and loaded the same way (lamp.use), its answers kept in _memo.
"""
from micropython import const
from lamp import tz, use

_FIXED = const(0)  # switch point kinds (lamp/calcheck.py)
_SUNSET = const(1)
_SUNRISE = const(2)
_NOON = const(43200)
_PARIS = const(3600)  # tz_std of Europe/Paris (CET)


def validate(cal):
    """Calendar map -> (id, programs, rules, default, presence); ValueError(reason)."""
    return use("calcheck", "validate", cal)


def _in_range(lo, hi, day):
    if lo is None and hi is None:
        return True
    kind = (lo or hi)[0]
    if kind == 1:
        return (lo is None or day >= lo[1]) and (hi is None or day <= hi[1])
    y, m, d = tz.civil_from_days(day)
    md = m * 100 + d
    a = lo[1] if lo else 101
    b = hi[1] if hi else 1231
    if a <= b:
        return a <= md <= b
    return md >= a or md <= b  # wraps over new year


def program_for(cal, day):
    """Name of the program of operating day `day` (local date number)."""
    wd = 1 << tz.weekday(day)
    for lo, hi, mask, prog in cal[2]:
        if mask & wd and _in_range(lo, hi, day):
            return prog
    return cal[3]


# Memo of the last sun events: the controller evaluates every second, the sun
# moves once a day; on the ESP32 every float is a heap object, so recomputing
# would churn the GC for nothing, and lamp.astro is loaded only for a miss.
# Same answers, so level_at stays pure.
_memo = [None, None, None]  # lat, lon, {day * 2 + rising: seconds, or True/False polar day/night}


def _sun(day, lat, lon, rising, start, end):
    # UTC instant of D's sunset (rising False) or D+1's sunrise; polar
    # fallbacks keep the lamp on all of a polar night and off on a polar day.
    d = day + 1 if rising else day
    m = _memo
    if m[0] != lat or m[1] != lon or m[2] is None or len(m[2]) > 8:
        m[0], m[1], m[2] = lat, lon, {}
    k = d * 2 + (1 if rising else 0)
    t = m[2].get(k)
    if t is None:
        # both events of the night with one load of lamp/astro.py: the
        # sunrise's alone was computed at the first step after dusk, inside
        # whatever ran then (in the bench night: an operator command, whose
        # modules are the night's peak -- lamp/astro.py failed to load there)
        t = use("astro", "night", day, lat, lon)
        m[2][day * 2] = t[0]
        m[2][day * 2 + 3] = t[1]  # (day + 1) * 2 + 1
        t = m[2][k]
    if t is True or t is False:  # polar: True when the sun stays up
        if rising:
            return start if t else end
        return end if t else start
    return d * 86400 + t


def night(day, lat, lon, std=_PARIS, dst=True):
    """(sunset, next sunrise) UTC of operating day `day`, polar-safe."""
    s = tz.to_utc(day * 86400 + _NOON, std, dst)
    e = tz.to_utc((day + 1) * 86400 + _NOON, std, dst)
    return _sun(day, lat, lon, False, s, e), _sun(day, lat, lon, True, s, e)


def override(overrides, utc):
    """Level of the active override at `utc` (latest start wins), else None."""
    best = None
    for o in overrides or ():
        if o[1] <= utc and (not o[2] or utc < o[2]):
            if best is None or o[1] >= best[1]:
                best = o
    return None if best is None else best[0]


def evaluate(cal, utc, overrides=None, presence=None, lat=49.47, lon=5.93, std=_PARIS, dst=True):
    """(level, source) at UTC instant `utc`; source: schedule|presence|override."""
    if isinstance(cal, dict):
        cal = validate(cal)
    o = override(overrides, utc)
    if o is not None:
        return o, "override"
    local = utc + tz.offset(utc, std, dst)
    day = local // 86400
    if local - day * 86400 < _NOON:
        day -= 1
    start = tz.to_utc(day * 86400 + _NOON, std, dst)
    end = tz.to_utc((day + 1) * 86400 + _NOON, std, dst)
    level = 0
    prev = start
    ss = sr = None
    for kind, v, lvl in cal[1][program_for(cal, day)]:
        if kind == _FIXED:
            t = tz.to_utc(day * 86400 + _NOON + v * 60, std, dst)
        elif kind == _SUNSET:
            if ss is None:
                ss = _sun(day, lat, lon, False, start, end)
            t = ss + v * 60
        else:
            if sr is None:
                sr = _sun(day, lat, lon, True, start, end)
            t = sr + v * 60
        if t < prev:
            t = prev
        if t > end:
            t = end
        prev = t
        if t <= utc:
            level = lvl
        else:
            break
    pres = cal[4]
    if pres and presence is not None and presence <= utc < presence + pres[1] and level < pres[0]:
        if ss is None:
            ss = _sun(day, lat, lon, False, start, end)
        if sr is None:
            sr = _sun(day, lat, lon, True, start, end)
        if ss <= utc < sr:
            return pres[0], "presence"
    return level, "schedule"


def level_at(cal, utc, overrides=None, presence=None, lat=49.47, lon=5.93):
    """The level 0..100 at `utc` (pure: same inputs, same answer)."""
    return evaluate(cal, utc, overrides, presence, lat, lon)[0]
