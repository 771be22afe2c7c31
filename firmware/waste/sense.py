"""What a wake measures and whether it is worth the radio.

measure(c): the ranger burst while the DS18B20 converts (the temperature
is only needed to turn echo times into metres), tilt, battery, then the
events (waste/events.py). decide(c, now): queue this wake's pack when there
is an event, a fill change >= step_pct since the last queued level, a status
change, a due heartbeat or a `report` request, and say whether to transmit.

A module of its own so the wake can drop it (with ranger and events) before
the radio phase loads the CoAP stack: RAM is the scarce resource there.
"""


def measure(c):
    """One measurement with events; returns the reading dict."""
    hw, s, st = c.hw, c.s, c.st
    from waste import events
    rg = c.get_ranger()
    hw.temp_start()
    rg.pings(s)
    temp = hw.temp_read()
    t_c = temp if temp is not None else st.get("temp", 15.0)
    res = rg.evaluate(s, t_c)
    if rg.more(s, res):
        rg.pings(s, 2)
        res = rg.evaluate(s, t_c)
    dist, fill, n, why = res
    tilted = hw.tilted()
    batt = hw.battery_v()
    changes, status = events.evaluate(st, fill, temp, tilted, hw.tilt_wake(), batt, s)
    c.changes = changes
    c.reading = r = {"fill": fill, "distance": dist, "temp": temp, "battery": batt,
                      "status": status, "echoes": n, "why": why, "tilted": tilted}
    return r


def decide(c, now):
    """Queue this wake's pack if worth sending; True when a transmission is due."""
    s, st, r = c.s, c.st, c.reading
    # due within half a period: waiting for the next wake would stretch
    # the heartbeat by a whole measurement interval
    hb = now - st.get("hb", 0) >= s["heartbeat_s"] - s["measure_s"] // 2
    why = None
    if c.changes:
        why = "event"
    elif r["fill"] is not None and (st.get("sent_fill") is None
                                     or abs(r["fill"] - st["sent_fill"]) >= s["step_pct"]):
        why = "change"
    elif r["status"] != st.get("sent_status", "ok") and r["status"] != "unknown":
        why = "status"
    elif hb:
        why = "heartbeat"
    elif st.get("force"):
        why = "report"
    if why:
        if now < 1704067200:
            # RTC unknown (power-on): the pack waits for the clock that
            # the wake window sets (NTP or GET /time), see queue()
            c.deferred = hb
            c.why = why
            return True
        c.queue(now, hb)
    c.why = why
    if not len(c.outbox()):
        return False
    # a fresh event goes out now even during back-off; a routine reading waits
    return why == "event" or now >= st.get("next_try", 0)
