"""Astronomical clock: sunrise and sunset (NOAA / Meeus) in 32-bit floats.

The ESP32 port of MicroPython computes in single precision (24-bit mantissa,
about 7 digits). The textbook NOAA sheet starts from the Julian Day
(2.46e6): in float32 its last bit is a quarter of a day, so it cannot be
used as is. Here every angle is built from the number of days since J2000.0
(< 20,000 for this century), the mean longitude and anomaly are reduced
modulo 360 before any trigonometry, and the day number itself is an int, so
no intermediate is larger than a few thousand. A CPython test runs this very
file with every intermediate rounded to float32 and compares it with astral.

Sunrise and sunset are the instants when the centre of the sun is at
zenith 90.833 deg (0.833 deg = 34' standard refraction + 16' solar
semi-diameter), as in the NOAA sheet, Meeus and the USNO almanac.

Times are seconds from 00:00 UTC of the given day (may be < 0 or > 86400 far
from Greenwich), like the NOAA sheet. Polar day / polar night give None.
"""
from math import sin, cos, tan, asin, acos, radians, degrees
from micropython import const

# Day number (days since 1970-01-01) of 2000-01-01. J2000.0 is 12:00 that day.
_J2000_DAY = const(10957)
# cos(90.833 deg)
_COS_Z = const(-0.0145380805)


def _solar(d):
    """(declination rad, equation of time minutes) at d days since J2000.0."""
    t = d / 36525.0  # Julian centuries, |t| < 1 this century
    # Mean longitude and anomaly: daily rates (36000.76983 and 35999.05029
    # deg per century divided by 36525) keep the products small.
    l0 = (280.46646 + (0.98564736 * d) % 360.0) % 360.0
    m = (357.52911 + (0.98560028 * d) % 360.0) % 360.0
    mr = radians(m)
    e = 0.016708634 - 0.000042037 * t
    c = (sin(mr) * (1.914602 - 0.004817 * t) + sin(2.0 * mr) * (0.019993 - 0.000101 * t)
         + sin(3.0 * mr) * 0.000289)
    om = radians(125.04 - 1934.136 * t)
    lam = radians(l0 + c - 0.00569 - 0.00478 * sin(om))
    eps = radians(23.0 + (26.0 + (21.448 - t * 46.815) / 60.0) / 60.0 + 0.00256 * cos(om))
    dec = asin(sin(eps) * sin(lam))
    y = tan(eps / 2.0)
    y = y * y
    l0r = radians(l0)
    eqt = (y * sin(2.0 * l0r) - 2.0 * e * sin(mr) + 4.0 * e * y * sin(mr) * cos(2.0 * l0r)
           - 0.5 * y * y * sin(4.0 * l0r) - 1.25 * e * e * sin(2.0 * mr))
    return dec, degrees(eqt) * 4.0


def event(day, lat, lon, rising):
    """Seconds from 00:00 UTC of `day` (days since 1970-01-01, an int) to
    sunrise (rising=True) or sunset, at lat/lon in degrees (east positive).
    None when the sun does not cross the horizon that day (polar)."""
    if lat > 89.8:
        lat = 89.8
    elif lat < -89.8:
        lat = -89.8
    latr = radians(lat)
    d0 = (day - _J2000_DAY) - 0.5  # small int first, then the half day
    minutes = 0.0
    # Two passes: the second evaluates the sun at the instant of the event.
    for _ in range(2):
        dec, eqt = _solar(d0 + minutes / 1440.0)
        h = (_COS_Z - sin(latr) * sin(dec)) / (cos(latr) * cos(dec))
        if h > 1.0 or h < -1.0:
            return None
        ha = degrees(acos(h))
        if not rising:
            ha = -ha
        offset = 4.0 * (-lon - ha) - eqt
        if offset < -720.0:
            offset += 1440.0
        minutes = 720.0 + offset
    return int(minutes * 60.0 + 0.5) if minutes >= 0 else -int(-minutes * 60.0 + 0.5)


def polar_day(day, lat, lon):
    """True when the sun stays above the horizon all day (midnight sun)."""
    dec, _ = _solar((day - _J2000_DAY) - 0.5 + (720.0 - 4.0 * lon) / 1440.0)
    latr = radians(lat)
    return (_COS_Z - sin(latr) * sin(dec)) < -cos(latr) * cos(dec)


def sun_times(day, lat, lon):
    """(sunrise, sunset) seconds from 00:00 UTC of `day`; either may be None."""
    return event(day, lat, lon, True), event(day, lat, lon, False)


def sun_event(day, lat, lon, rising):
    """event(), or on a polar day/night True when the sun stays up, else False
    (what lamp/schedule.py memoizes: one call per operating day and event)."""
    t = event(day, lat, lon, rising)
    return polar_day(day, lat, lon) if t is None else t


def night(day, lat, lon):
    """The night of operating day `day`: (sun_event of its sunset, of day+1's
    sunrise), computed together (lamp/schedule.py memoizes both at once)."""
    return sun_event(day, lat, lon, False), sun_event(day + 1, lat, lon, True)
