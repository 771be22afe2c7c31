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

# the civil-date arithmetic lives with the clock (dev.clock), shared by both roles
from dev.clock import days_from_civil, civil_from_days  # noqa: F401 (re-exported)

PARIS = 3600


def weekday(z):
    """ISO weekday of day number z: Monday 1 .. Sunday 7 (1970-01-01 was a Thursday)."""
    return (z + 3) % 7 + 1


def _last_sunday(y, m):
    # day number of the last Sunday of month m (March or October: 31 days)
    z = days_from_civil(y, m, 31)
    return z - (weekday(z) % 7)


def offset(utc, std=PARIS, dst=True):
    """Seconds to add to UTC for local time at instant `utc`."""
    if not dst:
        return std
    y = civil_from_days(utc // 86400)[0]
    start = _last_sunday(y, 3) * 86400 + 3600
    end = _last_sunday(y, 10) * 86400 + 3600
    return std + 3600 if start <= utc < end else std


def to_utc(local, std=PARIS, dst=True):
    """UTC instant of a local wall-clock time (seconds since 1970 in local time).

    A time skipped in spring (02:00-03:00) is taken with the winter offset
    (an 02:30 switch point happens at 03:30 CEST), a time repeated in autumn
    maps to its first occurrence: the same as Python's zoneinfo with fold=0.
    """
    u = local - std - (3600 if dst else 0)  # try summer time first
    if offset(u, std, dst) == std + 3600 if dst else True:
        return u
    return local - std
