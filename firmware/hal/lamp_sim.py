"""Simulated lamp peripherals: a lamp, its driver and relay, a power meter,
a PIR and a light sensor, driven by tests and virtual boards.

Inputs come from the common sim HAL (`hal.set_inputs(...)` in a test, or the
ECLOR_SIM_FILE JSON of a virtual board), all optional:

    watts     real lamp power at full output (W), default 60
    lamp      "ok" | "broken" (no light, no power) | "low" (half the power)
              | "high" (1.6 x) | "stuck" (relay welded closed)
              | "cycling" (goes out and on by itself every cycle_s s)
    cycle_s   period of "cycling", default 20
    power     measured power forced to this value (W), null = the model
    supply    mains present, default true; voltage: default 230
    current   measured current forced to this value (A); absent = the
              meter has no current channel, unless imeter is true: then
              current = power / voltage
    presence  PIR output (true while it sees motion)
    light     ambient light in lux; absent = the board has no light sensor

The model: with mains and the relay closed (or stuck) the lamp draws
watts x duty (x the fault factor); a stuck relay feeds the driver while the
controller commands 0, and a driver at 0 dims to its 10 % floor, so a
stuck relay is a day burner. The meter reads what the lamp draws.

This module runs in the measured process of the benches: its names are
interned like the firmware's (docs/lamp.md "Qstrs"), so it has few of its own.
"""
import hal


class Lamp:
    """Lamp(pins, meter) like hal/lamp_esp32.py's; the simulation needs neither."""

    def __init__(self, pins=None, meter=None):
        self.duty = 0  # what the controller drives (tests read them)
        self.relay = False

    def get(self, k, d=None):
        # input k of the simulated board, d when absent or null
        v = hal.inputs().get(k, d)
        return d if v is None else v

    def set_duty(self, duty):
        self.duty = duty  # 0..65535

    def set_relay(self, on):
        self.relay = bool(on)

    def supply(self):
        return bool(self.get("supply", True))

    def voltage(self):
        return float(self.get("voltage", 230)) if self.supply() else 0.0

    def power(self):
        forced = self.get("power")
        if forced is not None:
            return float(forced)
        if not self.supply():
            return 0.0
        mode = self.get("lamp", "ok")
        closed = self.relay or mode == "stuck"
        if not closed or mode == "broken":
            return 0.0
        if mode == "cycling":
            per = int(self.get("cycle_s", 20)) * 1000
            if (hal.ticks_ms() // per) % 2:
                return 0.0
        frac = self.duty / 65535
        if mode == "stuck" and frac < 0.1:
            frac = 0.1
        return float(self.get("watts", 60)) * frac * (0.5 if mode == "low" else 1.6 if mode == "high" else 1.0)

    def presence(self):
        return bool(self.get("presence", False))

    def light(self):
        v = self.get("light")
        return None if v is None else float(v)

    def relay_fb(self):
        return None  # the simulated board has no relay feedback input

    def current(self):
        i = self.get("current")
        if i is not None:
            return float(i)
        if not self.get("imeter", False):
            return None
        u = self.voltage()
        return self.power() / u if u else 0.0
