"""Calendar validation (docs/lamp.md): a calendar map -> the compact form
lamp/schedule.py evaluates, or ValueError with a reason a technician can act
on; and its storage: load at boot, install, read back (Controller's
set_calendar and calendar_cbor). Loaded only when a calendar arrives, is
read, or at boot, then dropped: a calendar command loads this module only.
fmt.cbor is imported by the functions that decode or encode: a calendar
command hands the calendar over already encoded (lamp/cmd.py), so its
validation and install run without fmt.cbor on the heap.
"""
from micropython import const
from dev import store
from lamp import tz

_MAX_PROGRAMS = const(8)
_MAX_POINTS = const(12)
_MAX_RULES = const(16)
_FIXED = const(0)  # switch point kinds (lamp/schedule.py)
_SUNSET = const(1)
_SUNRISE = const(2)
# The reasons a calendar is refused, in one string picked by index (_bad):
# one object on the heap while this module is loaded (with a calendar
# command's) instead of one per message, each ~50 B beyond its characters
# on the 64-bit port (measured: ~0.8 KB for these 16).
_WHY = const("%s must be an integer %d..%d"  # 0
             "|%s: 'at' must be HH:MM, sunset or sunrise"  # 1
             "|%s: date must be MM-DD or YYYY-MM-DD"  # 2
             "|%s: must be a list of 1..%d switch points"  # 3
             "|%s: must be a map"  # 4
             "|%s: fixed times out of order (the day runs 12:00 to 12:00)"  # 5
             "|calendar must be a map"  # 6
             "|id must be a string of at most 32 characters"  # 7
             "|programs must be a map of 1..%d named programs"  # 8
             "|program names must be strings of 1..16 characters"  # 9
             "|default must name a program"  # 10
             "|rules must be a list of at most %d rules"  # 11
             "|%s: unknown program %r"  # 12
             "|%s: from and to must both be MM-DD or both YYYY-MM-DD"  # 13
             "|%s: days must be a list of ISO weekdays 1..7"  # 14
             "|presence must be a map")  # 15


def _bad(i, *args):
    # ValueError(reason i of _WHY, formatted with args)
    return ValueError(_WHY.split("|")[i] % args)


def _int(v, lo, hi, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        raise _bad(0, what, lo, hi)
    return v


def _hhmm(s, what):
    try:
        h, m = s.split(":")
        if len(h) == 2 and len(m) == 2:
            h, m = int(h), int(m)
            if 0 <= h < 24 and 0 <= m < 60:
                return h * 60 + m
    except (ValueError, AttributeError, TypeError):
        pass
    raise _bad(1, what)


def _date(s, what):
    # "MM-DD" (every year) -> (0, m*100+d); "YYYY-MM-DD" -> (1, day number)
    try:
        p = s.split("-")
        if len(p) == 2 and len(p[0]) == 2 and len(p[1]) == 2:
            m, d = int(p[0]), int(p[1])
            if 1 <= m <= 12 and 1 <= d <= 31:
                return 0, m * 100 + d
        elif len(p) == 3 and len(p[0]) == 4:
            y, m, d = int(p[0]), int(p[1]), int(p[2])
            if 1 <= m <= 12 and 1 <= d <= 31:
                z = tz.days_from_civil(y, m, d)
                if tz.civil_from_days(z) == (y, m, d):
                    return 1, z
    except (ValueError, AttributeError, TypeError):
        pass
    raise _bad(2, what)


def _program(name, pts):
    what = "program %s" % name
    if not isinstance(pts, list) or not pts or len(pts) > _MAX_POINTS:
        raise _bad(3, what, _MAX_POINTS)
    out = []
    prev = -1
    for i, p in enumerate(pts):
        w = "%s point %d" % (what, i + 1)
        if not isinstance(p, dict):
            raise _bad(4, w)
        at = p.get("at")
        lvl = _int(p.get("level"), 0, 100, w + " level")
        off = _int(p.get("offset", 0), -720, 720, w + " offset (minutes)")
        if at == "sunset":
            out.append((_SUNSET, off, lvl))
        elif at == "sunrise":
            out.append((_SUNRISE, off, lvl))
        else:
            # minutes after the operating day's noon
            key = (_hhmm(at, w) + off - 720) % 1440
            if key < prev:
                raise _bad(5, w)
            prev = key
            out.append((_FIXED, key, lvl))
    return tuple(out)


def validate(cal):
    """Calendar map -> (id, programs, rules, default, presence); ValueError(reason)."""
    if not isinstance(cal, dict):
        raise _bad(6)
    cid = cal.get("id", "")
    if not isinstance(cid, str) or len(cid) > 32:
        raise _bad(7)
    progs = cal.get("programs")
    if not isinstance(progs, dict) or not progs or len(progs) > _MAX_PROGRAMS:
        raise _bad(8, _MAX_PROGRAMS)
    programs = {}
    for name, pts in progs.items():
        if not isinstance(name, str) or not name or len(name) > 16:
            raise _bad(9)
        programs[name] = _program(name, pts)
    default = cal.get("default")
    if default not in programs:
        raise _bad(10)
    rules = []
    rl = cal.get("rules", [])
    if not isinstance(rl, list) or len(rl) > _MAX_RULES:
        raise _bad(11, _MAX_RULES)
    for i, r in enumerate(rl):
        w = "rule %d" % (i + 1)
        if not isinstance(r, dict):
            raise _bad(4, w)
        if r.get("program") not in programs:
            raise _bad(12, w, r.get("program"))
        lo = _date(r["from"], w + " from") if "from" in r else None
        hi = _date(r["to"], w + " to") if "to" in r else None
        if lo and hi and lo[0] != hi[0]:
            raise _bad(13, w)
        days = r.get("days", [1, 2, 3, 4, 5, 6, 7])
        if not isinstance(days, list):
            raise _bad(14, w)
        mask = 0
        for d in days:
            mask |= 1 << _int(d, 1, 7, w + " weekday")
        rules.append((lo, hi, mask, r["program"]))
    pres = cal.get("presence")
    if pres is not None:
        if not isinstance(pres, dict):
            raise _bad(15)
        pres = (_int(pres.get("level"), 0, 100, "presence level"),
                _int(pres.get("hold_s", 60), 1, 86400, "presence hold_s"),
                _int(pres.get("gap_s", 0), 0, 86400, "presence gap_s"))
    return (cid, programs, tuple(rules), default, pres)


_CAL = const("data/calendar.cbor")  # as received: no re-encoding, one contiguous read
# The default calendar, {"id": "default", "default": "night", "programs": {"night":
# [{"at": "sunset", "level": 100}, {"at": "sunrise", "level": 0}]}}, as CBOR:
# 81 bytes instead of a dozen dicts, lists and strings on the heap.
_DEFAULT_CAL = const(b"\xa3hprograms\xa1enight\x82\xa2batfsunsetelevel\x18d\xa2batgsunriseelevel\x00"
                     b"bidgdefaultgdefaultenight")


def load(ctl):
    """The stored calendar, validated, at boot (lamp/setup.py): the last good
    copy if the file is torn, else the default."""
    from fmt import cbor
    for path in (_CAL, _CAL + ".bak"):
        data = store.read(path) if store.exists(path) else None
        if data is not None:
            try:
                return validate(cbor.loads(data))
            except ValueError as e:
                from dev import log
                log.error("stored calendar %s invalid: %s" % (path, e))
    return validate(cbor.loads(_DEFAULT_CAL))


def set_calendar(ctl, raw, data=None, quiet=False):
    """Validate and install; ValueError(reason) keeps the old one.
    data: the same calendar as CBOR bytes when the caller has them. quiet:
    the caller logs the installation (a calendar command: lamp/cmd.py, once
    the command is answered and its modules dropped; the night's peak)."""
    cal = validate(raw)
    if data is None:
        from fmt import cbor
        data = cbor.dumps(raw)
    store.write(_CAL, data)
    data = None
    ctl.cal = cal
    ctl.step(False)  # the level now, a due report at the next step
    if not quiet:
        # dev.log only now, after the validation's garbage
        from dev import log
        log.event("calendar %s installed" % cal[0])
    return cal[0]


def calendar_cbor(ctl):
    """The installed calendar as CBOR bytes (as received), or the default."""
    from fmt import cbor
    data = store.read(_CAL)
    if data is not None:
        try:
            if validate(cbor.loads(data))[0] == ctl.cal[0]:
                return data
        except ValueError:
            pass
    return _DEFAULT_CAL
