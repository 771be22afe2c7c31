"""Energy counters: active energy (Wh), operating time (s), switch-on count.

Monotonic across reboots and power cuts: the counters are loaded from
data/energy.json at boot and only ever grow from there.

Write policy (bounded flash wear): the file is rewritten (dev.store: tmp +
rename, a cut leaves the old or the new file) at most once per `save_s`
(default 900 s) while the counters move, plus when the lamp switches off
(once or twice a night), before a reboot and on supplyLoss (last gasp when
the board has hold-up). That is <= ~100 small writes a day (~36 k a year)
spread by LittleFS over the whole filesystem -- far below the 100 k erase
cycles of one block. A power cut loses at most the last `save_s` of counting
(<= 15 min of one lamp: ~15 Wh for 60 W): counters stay monotonic, at worst
slightly low.
"""
from micropython import const
from dev import store

_PATH = const("data/energy.json")


class Energy:
    """Counters kept as ints (mWh, s) plus a small float remainder: on the
    ESP32 a float32 counter stops counting once its ulp exceeds the
    increment (a 100 W lamp adds 0.03 Wh a second; at 1 MWh the ulp is
    0.06 Wh, and a seconds counter stalls after 194 days)."""

    def __init__(self, path=_PATH, save_s=900):
        self.path = path
        self.save_s = save_s
        d = store.load_json(path, None)
        if not isinstance(d, dict):
            d = {}
        self.mwh = int(d.get("mwh", float(d.get("wh", 0)) * 1000))
        self.on_s = int(d.get("on_s", 0))
        self.switch_on = int(d.get("n", 0))
        # [mWh not yet in mwh (< 1 + one step), ms not yet in on_s, when
        # last saved (None: not yet)]; one list: each attribute name is a
        # qstr for good (docs/lamp.md)
        self.state = [0.0, 0, None]
        self.writes = 0
        self._dirty = False

    @property
    def wh(self):
        return self.mwh / 1000

    def tick(self, now, ms, power, relay):
        """Integrate power (W) over ms; count time with the relay closed.
        now: monotonic seconds (write pacing)."""
        s = self.state
        if power and power > 0:
            a = s[0] + power * ms / 3600.0  # W x ms / 3600 = mWh
            n = int(a)
            self.mwh += n
            s[0] = a - n
            self._dirty = True
        if relay:
            ms += s[1]
            self.on_s += ms // 1000
            s[1] = ms % 1000
            self._dirty = True
        if s[2] is None:
            s[2] = now
        elif self._dirty and now - s[2] >= self.save_s:
            self.save(now)

    def switched(self, on, now):
        if on:
            self.switch_on += 1
            self._dirty = True
        elif self._dirty:
            self.save(now)

    def save(self, now=None):
        try:
            store.save_json(self.path, {"mwh": self.mwh, "on_s": self.on_s, "n": self.switch_on})
            self.writes += 1
            self._dirty = False
            self.state[2] = now
        except OSError:
            pass  # full or failing flash: keep counting in RAM, retry next time
