"""Simulated bin peripherals, driven by tests and virtual boards.

The script is the "bin" map of the simulation inputs (ECLOR_SIM_FILE, read
through the common sim HAL) or a dict given directly:

    {"dist": 0.8,          # true distance sensor -> waste surface (m)
     "pings": [0.8, -1],   # optional: exact per-ping distances, -1 = timeout
     "noise_m": 0.01,      # +- uniform noise on each echo
     "false_p": 0.1,       # probability of a false short echo (bag flap, web)
     "timeout_p": 0.05,    # probability of no echo (soft waste)
     "temp": 15.0,         # air temperature (degC); null = sensor missing
     "tilt": 0,            # tilt switch active now
     "tilt_wake": 0,       # this wake was caused by the tilt interrupt
     "batt": 3.9,          # battery voltage
     "seed": 1}

Echo times are computed with the true temperature, so the firmware's speed
of sound correction is really exercised. Physical time goes to the common
HAL's simulated clock: an echo costs its flight time (60 ms on timeout), a
DS18B20 conversion 188 ms (10-bit) counted from temp_start().
"""
import random
from micropython import const

_ECHO_TIMEOUT_MS = const(60)
_TEMP_CONV_MS = const(188)   # DS18B20 at 10-bit resolution


def _c(t):
    import math
    return 331.3 * math.sqrt(1.0 + t / 273.15)


class BinSim:
    def __init__(self, script=None, clock=None):
        if script is None:
            script = _inputs().get("bin", {})
        self.s = script
        if clock is None:
            import hal as clock
        self.clock = clock
        random.seed(script.get("seed", 1))
        self._i = 0
        self._t0 = None
        self.tilt_armed = None   # what the last sleep() armed (tests look)

    def _elapse(self, ms):
        self.clock.sleep_ms(ms)

    def ping_us(self):
        s = self.s
        seq = s.get("pings")
        t = s.get("temp")
        c = _c(15.0 if t is None else t)
        if seq:
            d = seq[self._i % len(seq)]
        else:
            r = random.random()
            d = s.get("dist", 1.0)
            if r < s.get("timeout_p", 0.0):
                d = -1
            elif r < s.get("timeout_p", 0.0) + s.get("false_p", 0.0):
                d = 0.05 + random.random() * max(0.0, d - 0.05)
            else:
                n = s.get("noise_m", 0.0)
                d += (random.random() * 2 - 1) * n
        self._i += 1
        if d < 0:
            self._elapse(_ECHO_TIMEOUT_MS)
            return -1
        us = int(2 * d / c * 1e6)
        self._elapse(us // 1000 + 1)
        return us

    def temp_start(self):
        self._t0 = self.clock.ticks_ms()

    def temp_read(self):
        if self._t0 is None:
            self.temp_start()
        left = _TEMP_CONV_MS - self.clock.ticks_diff(self.clock.ticks_ms(), self._t0)
        if left > 0:
            self._elapse(left)
        self._t0 = None
        t = self.s.get("temp", 15.0)
        return None if t is None else float(t)

    def tilted(self):
        return bool(self.s.get("tilt", 0))

    def tilt_wake(self):
        return bool(self.s.get("tilt_wake", 0))

    def battery_v(self):
        b = self.s.get("batt", 3.9)
        return None if b is None else float(b)

    def arm_tilt_wake(self, on):
        # ext0 wake on the tilt pin, set before deep sleep
        self.tilt_armed = on


def _inputs():
    try:
        import hal.sim as sim
        f = getattr(sim, "inputs", None)
        if f:
            return f()
    except ImportError:
        pass
    import os
    import json
    p = os.getenv("ECLOR_SIM_FILE")
    if not p:
        return {}
    try:
        with open(p) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def open(pins=None):
    return BinSim()
