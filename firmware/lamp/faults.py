"""Lamp fault detection (TALQ / uCIFI event names), debounced.

check() is called about once a second with what the controller commands
(relay, level, duty) and what the meter measures (active power W, supply
voltage V or None, relay feedback or None). A condition must hold for
`debounce_s` to raise its event and be false for `debounce_s` to clear it;
each change calls on_event(name, active) once, so the role sends it at once.

Conditions (the meter sits after the relay, on the lamp branch):
  supplyLoss        no mains (voltage < 70 % of nominal, or the HAL says so);
                    while it lasts the power checks below are not evaluated
  lampFailure       relay closed, level > 0, warmed up, power < on_w
  lampPowerTooLow   warmed up, power < expected * (1 - tolerance) - 1 W
  lampPowerTooHigh  warmed up, power > expected * (1 + tolerance) + 1 W
  lampUnexpectedOn  relay open (lamp commanded off) and power > on_w: day burner
  relayFailure      relay feedback differs from the command; without a
                    feedback input: power flowing with the relay open (stuck)
  cyclingFailure    the lamp goes out and back on by itself (power crossing
                    on_w while commanded on) more than cycles_max times in
                    cycle_window_s (end-of-life HID lamps, loose contact)
  currentTooLow     warmed up, lit, current < current_min * duty (A; the
                    threshold is for full output, scaled like the power)
  currentTooHigh    warmed up, current > current_max (A, at any level)
                    (both only when the meter gives a current and the lamp
                    type sets the threshold)
  dimmingFailure    warmed up and lit at a level whose duty differs by >= 20
                    points from an earlier steady level (the one of the
                    previous levels farthest from this one), and the power
                    changed by less than half of what that step should give
                    (at the higher level's W per unit of duty): the driver
                    ignores the dimming input

"Warmed up": the relay has been closed for warmup_s (lamp type; HID lamps
need minutes, LED drivers seconds) and the fade has ended. expected =
wattage * duty (the dimming curve's output).

The parameters are read from the lamp's parameter dict at each check and the
state is in few attributes: each name is a qstr for good, each attribute a
slot of the instance's dict all night (docs/lamp.md).
"""
from micropython import const

_DSTEP = const(20)  # dimmingFailure: a duty step of at least 20 points


class Faults:
    def __init__(self, params, on_event):
        # the lamp's parameters (the controller's p: lamp type keys and
        # defaults), read at each check: a lamp type change applies at once,
        # and no attribute per parameter (each a dict slot all night)
        self.p = params
        self.on_event = on_event
        self.active = {}  # name -> when raised (the caller's monotonic seconds)
        self._since = {}  # name -> s since the condition differs from the state
        # [relay closed since (s) or None, lit at the last check, duty and power
        # at this level, at the previous level (None: no sample yet)]
        self.state = [None, False, None, None, None, None]
        self._flips = []  # instants of unexpected on/off crossings

    def on_w(self):
        # the power (W) above which the lamp is lit: on_w, else 5 % of the
        # wattage, at least 2 W
        p = self.p
        return p.get("on_w", max(2.0, 0.05 * p.get("wattage", 60)))

    def _set(self, name, active, now):
        if active == (name in self.active):
            self._since.pop(name, None)
            return
        t0 = self._since.get(name)
        if t0 is None:
            self._since[name] = now
        elif now - t0 >= self.p.get("debounce_s", 30):
            self._since.pop(name, None)
            if active:
                self.active[name] = now
            else:
                del self.active[name]
            self.on_event(name, active)

    def check(self, now, relay, level, fading, duty, power, voltage=None, supply=None, relay_fb=None,
              current=None):
        s = self.state
        if relay:
            if s[0] is None:
                s[0] = now
        else:
            s[0] = None
        p = self.p
        if supply is None:
            supply = voltage is None or voltage >= 0.7 * p.get("voltage", 230)  # nominal
        self._set("supplyLoss", not supply, now)
        if not supply or power is None:
            return
        on = power > self.on_w()
        warm = relay and not fading and level > 0 and now - s[0] >= p.get("warmup_s", 30)
        exp = p.get("wattage", 60) * duty
        fail = warm and not on
        self._set("lampFailure", fail, now)
        tol = p.get("tolerance", 0.2)
        self._set("lampPowerTooLow", warm and not fail and power < exp * (1 - tol) - 1, now)
        self._set("lampPowerTooHigh", warm and power > exp * (1 + tol) + 1, now)
        self._set("lampUnexpectedOn", not relay and on, now)
        if relay_fb is not None:
            self._set("relayFailure", relay_fb != relay, now)
        else:
            self._set("relayFailure", not relay and on, now)
        # cycling: lit state flipping by itself while commanded on and warm
        fl = self._flips
        cmax = p.get("cycles_max", 4)
        if warm and on != s[1]:
            fl.append(now)
            if len(fl) > cmax + 1:
                fl.pop(0)
        s[1] = on
        while fl and now - fl[0] > p.get("cycle_window_s", 600):
            fl.pop(0)
        self._set("cyclingFailure", len(fl) > cmax, now)
        i = current
        imin = p.get("current_min")  # A, None: no check
        imax = p.get("current_max")
        lit = warm and on
        self._set("currentTooLow", lit and i is not None and bool(imin) and i < imin * duty, now)
        self._set("currentTooHigh", warm and i is not None and bool(imax) and i > imax, now)
        # dimming: does the power follow a clear level step (vs an earlier steady sample)?
        dim = False
        if lit:
            d1 = s[2]  # keep as reference the previous sample farthest from this level
            if d1 is not None and (s[4] is None or abs(duty - s[4]) < abs(duty - d1)):
                s[4], s[5] = d1, s[3]
            s[2], s[3] = duty, power
            d0, p0 = s[4], s[5]
            if d0 is not None and abs(duty - d0) * 100 >= _DSTEP:
                k = p0 / d0 if d0 > duty else power / duty  # W per duty, higher level
                dim = abs(power - p0) * 2 < k * abs(duty - d0)
        self._set("dimmingFailure", dim, now)
