"""Dimming output: soft fade to a target level, dimming curve, minimum level,
relay.

The level (0..100 %) moves toward the target at `ramp_ms` per 100 % so that
a schedule step is not a visible jump. The relay closes as soon as the
target is above 0 (the driver needs mains before the fade up can light) and
opens only when the fade down has reached 0, so the driver is never cut at
full load. Levels between 0 and `min_level` are raised to `min_level`
(drivers flicker or go dark below their minimum); 0 is always off.

The curve maps a level to the PWM duty (0..1): "linear", "square" (a
perceptual curve: half the light at 71 %), or a list of 11 duties in % for
0, 10, ..., 100 % (interpolated), from the lamp type (checked by
lamp/admin.py's curve_ok). step() writes the output only when the duty or
the relay changes.
"""
from micropython import const

_DUTY_MAX = const(65535)


class Dimmer:
    def __init__(self, hw, ramp_ms=2000, min_level=0, curve="linear"):
        self.hw = hw  # hal lamp peripherals: set_duty(0..65535), set_relay(bool)
        self.ramp_ms = ramp_ms
        self.min_level = min_level
        self.curve = curve
        self.target = 0
        self.level = 0.0
        self.relay = False
        self._duty = -1
        hw.set_relay(False)
        hw.set_duty(0)

    def set(self, target, now=False):
        """New target 0..100; now=True skips the fade (boot fail-safe)."""
        target = int(target)
        if target < 0 or target > 100:
            raise ValueError("level must be 0..100")
        if 0 < target < self.min_level:
            target = self.min_level
        self.target = target
        if now:
            self.level = float(target)
        self._write()  # closes the relay at once for a fade up

    def frac(self, level=None):
        """Duty 0..1 for a level (default the current one) through the curve."""
        lv = self.level if level is None else level
        if lv <= 0:
            return 0.0
        if lv < self.min_level:  # during a fade from/to 0 as well
            lv = self.min_level
        c = self.curve
        if c == "square":
            return (lv / 100.0) * (lv / 100.0)
        if isinstance(c, list):
            i = int(lv // 10)
            if i >= 10:
                return c[10] / 100.0
            return (c[i] + (c[i + 1] - c[i]) * (lv - i * 10) / 10.0) / 100.0
        return lv / 100.0

    def step(self, ms):
        """Advance the fade by ms; True when the output changed."""
        lv = self.level
        t = self.target
        if lv != t:
            d = 100.0 * ms / self.ramp_ms if self.ramp_ms > 0 else 100.0
            if lv < t:
                lv = min(t, lv + d)
            else:
                lv = max(t, lv - d)
            self.level = lv
        return self._write()

    def fading(self):
        return self.level != self.target

    def _write(self):
        changed = False
        want = self.target > 0 or self.level > 0
        if want != self.relay:
            self.relay = want
            self.hw.set_relay(want)
            changed = True
        duty = int(self.frac() * _DUTY_MAX + 0.5)
        if duty != self._duty:
            self._duty = duty
            self.hw.set_duty(duty)
            changed = True
        return changed
