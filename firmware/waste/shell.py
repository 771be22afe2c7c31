"""Technician-shell object of the bin role (eclor.status() etc.).

Kept apart from waste/app.py so that a normal wake never loads it: on a
board every module loaded from .mpy costs heap the radio phase needs.

  status()    last reading, events, queue, back-off, energy of the last wake
  measure()   a fresh burst right now (nothing queued, no state changed)
  selftest()  ranger, temperature, tilt, battery, config: {check: (ok, detail)}
  config(changes=None)  the config, or apply changes (validated, old kept)
"""
from waste.cycle import Cycle
from waste.events import FULL, FIRE, TIPPED, LOWBAT

_BITS = (("full", FULL), ("fire", FIRE), ("tipped", TIPPED), ("lowBattery", LOWBAT))


class Bin:
    def __init__(self, cfg, secrets=None, safe=False, hw=None):
        self.cycle = Cycle(cfg, secrets, hw)
        self.cycle.safe = safe

    def status(self):
        c = self.cycle
        st = c.st
        return {"reading": c.reading, "events": [n for n, b in _BITS if st.get("ev", 0) & b],
                "fill": st.get("fill"), "temp": st.get("temp"), "queued": len(c.outbox()),
                "dropped": c.outbox().dropped, "fails": st.get("fails", 0), "next_try": st.get("next_try", 0),
                "registered": st.get("rd"), "awake_ms": st.get("last_awake"), "radio_ms": st.get("last_radio"),
                "wakes": st.get("tot_wakes", 0), "tx": st.get("tot_tx", 0), "config_error": c.cfg_error}

    def measure(self):
        """A fresh measurement; the persisted state is left as it was."""
        c = self.cycle
        saved = dict(c.st)
        try:
            from waste.sense import measure
            return measure(c)
        finally:
            c.st = saved

    def selftest(self):
        """{check: (ok, detail)} for ranger, temperature, tilt, battery, config."""
        c = self.cycle
        s = c.s
        out = {}
        from waste.sense import ranger
        d, fill, n, why = ranger(c).measure(s, 15.0)
        out["ranger"] = (why == "ok", "%d echoes, %s, d=%s" % (n, why, d))
        c.hw.temp_start()
        t = c.hw.temp_read()
        out["temperature"] = (t is not None and -40 <= t <= 85, "%s degC" % t)
        tl = c.hw.tilted()
        out["tilt"] = (not tl, "tilted" if tl else "upright")
        b = c.hw.battery_v()
        out["battery"] = (b is not None and b > s["battery_low_v"], "%s V" % b)
        out["config"] = (c.cfg_error is None, c.cfg_error or "ok")
        return out

    def config(self, changes=None):
        if changes:
            from waste.setconf import set_config
            set_config(self.cycle, changes)
        return self.cycle.cfg
