"""The first CoAP session's own steps around its registration (waste/link.py
window()): before the endpoint is made, Wi-Fi on and the settings made
lean (connect()); after the registration, on a wake after a power-on, the
clock set and the pack that waited for it queued (timed()).

A module of its own, loaded for each and dropped right after: neither the
registration nor the /dp POSTs that come next (the peaks of a wake's heap)
hold its code (docs/bin.md "Memory").
"""
import hal
from dev import now   # UTC seconds, None while the RTC is not set
from waste.cycle import unload


def connect(c):
    """Wi-Fi on for cycle c's first session (saved channel/BSSID); False
    when it failed (c.error = "wifi")."""
    st = c.st
    sec = c.secrets
    saved = hal.wifi_connect(sec.get("ssid", ""), sec.get("psk", ""), saved=st.get("wifi"),
                             ip=c.cfg.get("ip"))
    if not saved:
        c.error = "wifi"
        st.pop("wifi", None)   # stale channel/BSSID: scan next time
        return False
    st["wifi"] = saved
    c.secrets = None   # not needed again in this wake: its dict goes
    c.s = lean(c.s, c.cfg)
    return True


def lean(s, cfg):
    """The settings s as the rest of a transmitting wake holds them: the
    keys it reads (waste/link.py, reg.py, the outbox's bound,
    waste/sense.py backoff() and finish()) and those cfg's "bin" section
    sets; every other key holds its default (waste/conf.py check() reads
    it from there for a command's change; a `config` command makes them
    whole again, waste/setconf.py). 7 entries or so instead of 20 with
    their floats: ~0.9 KB less held through the CoAP sessions, the peak of
    the wake's heap. Made here, after the measurement code was dropped:
    no frame of the wake keeps the whole dict alive (the GC scans a
    coroutine's dead slots too)."""
    b = cfg.get("bin")
    n = {}
    for k, v in s.items():
        if k in ("ack_timeout_ms", "max_retransmit", "heartbeat_s", "outbox", "measure_s", "backoff_s",
                 "backoff_max_s") or isinstance(b, dict) and k in b:
            n[k] = v
    return n


async def timed(c):
    """After the registration of cycle c's first session: the clock set if
    unknown (NTP, else GET /time, dev.clock), then this wake's pack queued
    if it waited for it."""
    if now() is None:
        from dev import clock
        from waste.link import _spend
        await clock.sync(c.ep, c.gw, c.cfg.get("ntp", "pool.ntp.org"))
        _spend(c, 1, 0)
        clock = None
        unload("dev.clock")
    t = now()
    if c.packed is not None and t is not None:
        from waste.queue import queue
        queue(c, int(t), c.packed[2])
        queue = None
        unload("waste.queue")
