"""UTC time for the device: NTP when online, else the gateway's GET /time,
else the RTC.

The RTC (hal.time()) is the only clock the roles read; sync() sets it.
"Time known" is decided from the RTC itself: after a power cut an ESP32 RTC
restarts at 2000-01-01, so any reading before MIN_VALID (2024-01-01) means
unknown, while a wake from deep sleep or a soft reset keeps a valid RTC and
needs no network. Roles must have a fail-safe while time_known() is false
(the lamp: on at its default level).

sync() never raises and never blocks the loop for long: NTP is a single
hal call (a few tens of ms on a LAN), the gateway request goes through the
CoAP endpoint (`await ep.request(GET, gw, "time")`, bounded by its
retransmission parameters) and the answer is corrected by half the round trip.

/time payload accepted: a CBOR number (ct 60) or map {"t": n}, text digits
(ct 0, what the gateway sends by default), JSON number or {"t": n} (ct 50)
-- UTC seconds. Kept to whole seconds (about 1 s accuracy): on the ESP32 a
float cannot carry 1.8e9 s to better than ~2 minutes.
"""
import hal
from dev import now  # clock.now(): UTC seconds, or None while unknown (kept in dev)

from micropython import const

_MIN_VALID = const(1704067200)  # 2024-01-01T00:00:00Z (private const(): no name, no dict slot)
source = None  # "ntp" | "gateway" | "rtc" | None: where the time last came from


def time_known():
    return hal.time() >= _MIN_VALID


def parse_time(payload, ct=None):
    """UTC seconds from a /time answer; ValueError if none is there."""
    import json  # loaded on use: most wakes never parse a /time answer
    from fmt import cbor
    v = None
    if ct == 60 or ct is None:
        try:
            v = cbor.loads(payload)
        except ValueError:
            if ct == 60:
                raise
    if v is None and ct in (0, 50, None):
        try:
            v = json.loads(bytes(payload).decode())
        except Exception:
            raise ValueError("time: unreadable payload")
    if isinstance(v, dict):
        v = v.get("t")
    if v is True or v is False or not isinstance(v, (int, float)) or v < _MIN_VALID:
        raise ValueError("time: no valid UTC seconds")
    return v


async def sync(ep=None, gw=None, ntp_host="pool.ntp.org", online=True):
    """Try NTP, then the gateway; returns the source used or None. Never raises."""
    global source
    if online and ntp_host:
        try:
            if hal.ntp_sync(ntp_host):
                source = "ntp"
                return source
        except Exception:
            pass
    if ep is not None and gw is not None:
        try:
            t0 = hal.ticks_ms()
            r = await ep.request(1, gw, "time")  # GET
            rtt = hal.ticks_diff(hal.ticks_ms(), t0)
            if r.code == 69:  # 2.05 Content
                # integer arithmetic: a 32-bit float cannot hold 1.8e9 s to the second
                hal.set_time(int(parse_time(r.payload, r.ct)) + (rtt + 1000) // 2000)
                source = "gateway"
                return source
        except Exception:
            pass
    if time_known():
        source = "rtc"
        return source
    return None


def iso(t):
    """UTC seconds -> "YYYY-MM-DDTHH:MM:SSZ" (independent of the port's epoch)."""
    t = int(t)
    d, s = divmod(t, 86400)
    # civil_from_days (H. Hinnant), exact integer arithmetic
    z = d + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, day, s // 3600, s // 60 % 60, s % 60)
