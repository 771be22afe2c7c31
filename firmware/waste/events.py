"""Bin events and the FIWARE WasteContainer status.

Events are computed from this wake's measurement and the state persisted by
the previous wake (last known fill and temperature, latched events). Two
kinds:

* latched (full, fire, tipped, lowBattery): raised once (ev:NAME true) and
  cleared once (ev:NAME false) with hysteresis, so a level wobbling around
  the threshold does not send a message at every wake;
* pulses (emptied, moved): reported true for the wake where they happen.

Rules:
* emptied: the fill dropped by at least `emptied_drop_pct` points since the
  last known fill. It clears full.
* full: fill >= full_pct; cleared below full_pct - 5.
* fire: temperature >= fire_c, or a rise of more than fire_rise_c since the
  previous reading; cleared when neither holds and T < fire_c - 5.
* tipped: the tilt switch is active now (the bin lies on its side).
* moved: the bin woke on a tilt interrupt but is upright again and was not
  emptied: someone moved or shook it. (A collection tips the bin too, but then
  the drop in fill reports it as emptied.)
* lowBattery: battery < battery_low_v; cleared above battery_low_v + 0.1 V.

Status, by priority: burning > dropped > moved > unknown (fill unknown) > ok.
FIWARE's lidOpen and vandalized need a lid switch this hardware lacks.
"""
from micropython import const

FULL = const(1)
FIRE = const(2)
TIPPED = const(4)
LOWBAT = const(8)
_LATCHED = (("full", FULL), ("fire", FIRE), ("tipped", TIPPED), ("lowBattery", LOWBAT))
_HYST_PCT = const(5)


def evaluate(st, fill, temp, tilted, tilt_wake, batt, s):
    """Update st (persisted dict: "fill", "temp", "ev") from a measurement.

    fill/temp/batt may be None (unknown). s = bin settings. Returns
    (changes, status): changes is a list of (event name, bool) to report.
    """
    ev = st.get("ev", 0)
    prev_fill = st.get("fill")
    prev_temp = st.get("temp")
    now = ev
    out = []
    emptied = False
    if fill is not None:
        if prev_fill is not None and prev_fill - fill >= s["emptied_drop_pct"]:
            emptied = True
            out.append(("emptied", True))
            now &= ~FULL
        if fill >= s["full_pct"]:
            now |= FULL
        elif fill < s["full_pct"] - _HYST_PCT:
            now &= ~FULL
        st["fill"] = fill
    if temp is not None:
        hot = temp >= s["fire_c"]
        rise = prev_temp is not None and temp - prev_temp > s["fire_rise_c"]
        if hot or rise:
            now |= FIRE
        elif temp < s["fire_c"] - 5:
            now &= ~FIRE
        st["temp"] = temp
    if tilted:
        now |= TIPPED
    else:
        now &= ~TIPPED
    moved = tilt_wake and not tilted and not emptied
    if moved:
        out.append(("moved", True))
    if batt is not None:
        if batt < s["battery_low_v"]:
            now |= LOWBAT
        elif batt > s["battery_low_v"] + 0.1:
            now &= ~LOWBAT
    for name, bit in _LATCHED:
        if (now ^ ev) & bit:
            out.append((name, bool(now & bit)))
    st["ev"] = now
    if now & FIRE:
        status = "burning"
    elif now & TIPPED:
        status = "dropped"
    elif moved:
        status = "moved"
    elif fill is None:
        status = "unknown"
    else:
        status = "ok"
    return out, status
