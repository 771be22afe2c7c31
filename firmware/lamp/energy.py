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
from dev import store

PATH = "data/energy.json"


class Energy:
    def __init__(self, path=PATH, save_s=900):
        self.path = path
        self.save_s = save_s
        d = store.load_json(path, None)
        if not isinstance(d, dict):
            d = {}
        self.wh = float(d.get("wh", 0))
        self.on_s = float(d.get("on_s", 0))
        self.switch_on = int(d.get("n", 0))
        self.writes = 0
        self._saved_at = None
        self._dirty = False

    def tick(self, now, dt_s, power, relay):
        """Integrate power (W) over dt_s seconds; count time with the relay closed."""
        if power and power > 0:
            self.wh += power * dt_s / 3600.0
            self._dirty = True
        if relay:
            self.on_s += dt_s
            self._dirty = True
        if self._saved_at is None:
            self._saved_at = now
        elif self._dirty and now - self._saved_at >= self.save_s:
            self.save(now)

    def switched(self, on, now):
        if on:
            self.switch_on += 1
            self._dirty = True
        elif self._dirty:
            self.save(now)

    def save(self, now=None):
        try:
            store.save_json(self.path, {"wh": self.wh, "on_s": int(self.on_s), "n": self.switch_on})
            self.writes += 1
            self._dirty = False
            self._saved_at = now
        except OSError:
            pass  # full or failing flash: keep counting in RAM, retry next time
