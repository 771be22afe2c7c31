"""Civil calendar and Europe/Paris local time, from UTC seconds.

The device keeps UTC (seconds since 1970-01-01); schedules are written in
local time. The EU rule (summer time from the last Sunday of March 01:00 UTC
to the last Sunday of October 01:00 UTC) is the same for every EU zone, so
the zone is just its standard offset: 3600 for Europe/Paris (CET/CEST),
Luxembourg, Brussels, Berlin; 0 for Lisbon; 7200 for Helsinki. No tz
database is needed on the device.

Dates use Howard Hinnant's days_from_civil algorithm (integer only), so
they are exact with 31-bit small ints.
"""
from micropython import const

_PARIS = const(3600)  # Europe/Paris (CET)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(y, m, d) of the day number z (days since 1970-01-01)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d


def weekday(z):
    """ISO weekday of day number z: Monday 1 .. Sunday 7 (1970-01-01 was a Thursday)."""
    return (z + 3) % 7 + 1


def _last_sunday(y, m):
    # day number of the last Sunday of month m (March or October: 31 days)
    z = days_from_civil(y, m, 31)
    return z - (weekday(z) % 7)


def offset(utc, std=_PARIS, dst=True):
    """Seconds to add to UTC for local time at instant `utc`."""
    if not dst:
        return std
    y = civil_from_days(utc // 86400)[0]
    start = _last_sunday(y, 3) * 86400 + 3600
    end = _last_sunday(y, 10) * 86400 + 3600
    return std + 3600 if start <= utc < end else std


def to_utc(local, std=_PARIS, dst=True):
    """UTC instant of a local wall-clock time (seconds since 1970 in local time).

    A time skipped in spring (02:00-03:00) is taken with the winter offset
    (an 02:30 switch point happens at 03:30 CEST), a time repeated in autumn
    maps to its first occurrence: the same as Python's zoneinfo with fold=0.
    """
    u = local - std - (3600 if dst else 0)  # try summer time first
    if offset(u, std, dst) == std + 3600 if dst else True:
        return u
    return local - std
