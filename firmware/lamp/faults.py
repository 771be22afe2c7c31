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

"Warmed up": the relay has been closed for warmup_s (lamp type; HID lamps
need minutes, LED drivers seconds) and the fade has ended. expected =
wattage * duty (the dimming curve's output).
"""

NAMES = ("supplyLoss", "lampFailure", "lampPowerTooLow", "lampPowerTooHigh",
         "lampUnexpectedOn", "relayFailure", "cyclingFailure")


class Faults:
    def __init__(self, params, on_event):
        self.on_event = on_event
        self.active = {}  # name -> when raised (the caller's monotonic seconds)
        self._since = {}  # name -> s since the condition differs from the state
        self._relay_at = None
        self._lit = False
        self._flips = []  # instants of unexpected on/off crossings
        self.set_params(params)

    def set_params(self, p):
        self.wattage = p.get("wattage", 60)
        self.tol = p.get("tolerance", 0.2)
        self.warmup = p.get("warmup_s", 30)
        self.debounce = p.get("debounce_s", 30)
        self.on_w = p.get("on_w", max(2.0, 0.05 * self.wattage))
        self.v_nom = p.get("voltage", 230)
        self.cycles_max = p.get("cycles_max", 4)
        self.window = p.get("cycle_window_s", 600)

    def _set(self, name, cond, now):
        if cond == (name in self.active):
            self._since.pop(name, None)
            return
        t0 = self._since.get(name)
        if t0 is None:
            self._since[name] = now
        elif now - t0 >= self.debounce:
            self._since.pop(name, None)
            if cond:
                self.active[name] = now
            else:
                del self.active[name]
            self.on_event(name, cond)

    def check(self, now, relay, level, fading, duty, power, voltage=None, supply=None, relay_fb=None):
        if relay:
            if self._relay_at is None:
                self._relay_at = now
        else:
            self._relay_at = None
        if supply is None:
            supply = voltage is None or voltage >= 0.7 * self.v_nom
        self._set("supplyLoss", not supply, now)
        if not supply or power is None:
            return
        on = power > self.on_w
        warm = relay and not fading and level > 0 and now - self._relay_at >= self.warmup
        exp = self.wattage * duty
        fail = warm and not on
        self._set("lampFailure", fail, now)
        self._set("lampPowerTooLow", warm and not fail and power < exp * (1 - self.tol) - 1, now)
        self._set("lampPowerTooHigh", warm and power > exp * (1 + self.tol) + 1, now)
        self._set("lampUnexpectedOn", not relay and on, now)
        if relay_fb is not None:
            self._set("relayFailure", relay_fb != relay, now)
        else:
            self._set("relayFailure", not relay and on, now)
        # cycling: lit state flipping by itself while commanded on and warm
        fl = self._flips
        if warm and on != self._lit:
            fl.append(now)
            if len(fl) > self.cycles_max + 1:
                fl.pop(0)
        self._lit = on
        while fl and now - fl[0] > self.window:
            fl.pop(0)
        self._set("cyclingFailure", len(fl) > self.cycles_max, now)
