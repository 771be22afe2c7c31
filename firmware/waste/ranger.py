"""Fill-level measurement for an ultrasonic ranger (JSN-SR04T class).

A bin is a bad place for ultrasound: condensation, a bag flap or a spider web
gives a short false echo, soft waste swallows the pulse (timeout), and inside
the ranger's blind zone the sensor reports garbage. So one measurement is a
burst of pings, spaced so that the previous echo has died out, and the
answer is the median of the valid echoes, accepted only when at least
`min_valid` of them agree with that median within `agree_m`. A burst is
`pings` (5) long and grows by 2 (to 7) only when it was not conclusive:
each ping costs 60 ms of CPU time on a battery. Anything less
trustworthy gives `fill = None` ("unknown") with the reason: a made-up number
would be worse than none, since it could send a truck or keep one away.

The echo time becomes a distance with the speed of sound corrected for the
air temperature, c = 331.3 * sqrt(1 + T/273.15) m/s (3.5 % between -10 and
+30 degC, i.e. 3.5 cm on a 1 m bin).

Geometry (config, metres): the sensor sits `offset_m` above the rim and the
container is `depth_m` deep, so fill % = (offset + depth - d) / depth, clamped
to 0..100. Echoes beyond the bottom (plus tolerance) or beyond the ranger's
maximum range are invalid. Echoes inside the blind zone mean something is
right in front of the sensor: when the blind zone lies above the rim
(offset >= blind) the waste is overflowing and the fill is 100 %; otherwise
the level is somewhere in an unmeasurable band and the answer is unknown.
"""
from micropython import const
import math

_PING_PERIOD_MS = const(60)  # JSN-SR04T measurement cycle: the last echo has died out
_TIMEOUT_US = const(60000)   # JSN-SR04T gives up after ~60 ms
_EXTRA = const(2)            # pings added when the first burst is not conclusive

# reasons
OK = "ok"
FEW = "few"          # fewer than min_valid echoes (timeouts, out of range)
SPREAD = "spread"    # enough echoes, but they do not agree
BLIND = "blind"      # most echoes inside the blind zone, level not measurable


def sound_speed(t_c):
    """Speed of sound in air (m/s) at t_c degrees Celsius."""
    return 331.3 * math.sqrt(1.0 + t_c / 273.15)


def _median(buf, n):
    # insertion sort of the first n items in place: n <= 9, no allocation
    for i in range(1, n):
        x = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > x:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = x
    if n & 1:
        return buf[n // 2]
    return (buf[n // 2 - 1] + buf[n // 2]) / 2


def fill_pct(d, depth, offset):
    """Fill percentage for a measured distance d, clamped to 0..100."""
    pct = (offset + depth - d) * 100.0 / depth
    if pct < 0:
        return 0
    if pct > 100:
        return 100
    return int(pct + 0.5)


class Ranger:
    """One measurement = a burst of pings through the bin HAL.

    `hw` is the bin HAL (hal.bin_sim or hal.bin_esp32): hw.ping_us() returns
    the echo round trip in microseconds or -1 on timeout; `sleep_ms` is the
    common HAL's sleep (simulated time on the host).
    """

    def __init__(self, hw, sleep_ms):
        self.hw = hw
        self.sleep_ms = sleep_ms
        self._buf = [0.0] * 9   # pre-allocated: at most 9 pings per burst
        self._us = [0] * 9
        self._n = 0
        self._wait = 0
        self.last = None        # (distance_m, fill, valid, why) of the last burst

    def pings(self, cfg, extra=0):
        """Fire a burst; echo times (us, -1 = none) go to a pre-allocated buffer.

        One ping per _PING_PERIOD_MS: after an early echo the rest of the
        period is waited out, after a timeout (60 ms) nothing. With extra > 0
        the burst is extended (appended to the last one), see measure().
        Split from evaluate() so the DS18B20 conversion runs while the pings
        fly: the temperature is only needed to turn times into metres.
        """
        start = self._n if extra else 0
        n = start + (extra or cfg["pings"])
        if n > 9:
            n = 9
        us = self._us
        for i in range(start, n):
            if i:
                self.sleep_ms(self._wait)
            t = self.hw.ping_us()
            us[i] = t
            self._wait = _PING_PERIOD_MS - (t // 1000 if t > 0 else _PING_PERIOD_MS)
        self._n = n

    def more(self, cfg, res):
        """True when an inconclusive burst is worth _EXTRA more pings (5 -> 7)."""
        return res[3] in (FEW, SPREAD) and self._n < cfg["pings"] + _EXTRA and self._n < 9

    def measure(self, cfg, t_c):
        """pings() then evaluate(), extended once if inconclusive:
        (distance_m or None, fill or None, echoes, reason)."""
        self.pings(cfg)
        res = self.evaluate(cfg, t_c)
        if self.more(cfg, res):
            self.pings(cfg, _EXTRA)
            res = self.evaluate(cfg, t_c)
        return res

    def evaluate(self, cfg, t_c):
        """Distance and fill from the last burst at air temperature t_c."""
        depth = cfg["depth_m"]
        offset = cfg["offset_m"]
        blind = cfg["blind_m"]
        far = offset + depth + cfg["agree_m"]
        if far > cfg["max_range_m"]:
            far = cfg["max_range_m"]
        half_c = sound_speed(t_c) / 2e6      # metres per microsecond, one way
        buf = self._buf
        valid = 0
        nblind = 0
        for i in range(self._n):
            us = self._us[i]
            if us < 0 or us > _TIMEOUT_US:
                continue
            d = us * half_c
            if d < blind:
                nblind += 1
            elif d <= far:
                buf[valid] = d
                valid += 1
        need = cfg["min_valid"]
        if nblind >= need and nblind > valid:
            if offset >= blind:
                res = (None, 100, nblind, BLIND)
            else:
                res = (None, None, nblind, BLIND)
        elif valid < need:
            res = (None, None, valid, FEW)
        else:
            med = _median(buf, valid)
            # keep the echoes that agree with the median (sorted, so they
            # stay sorted when compacted) and take their median: a near
            # false echo then moves the answer less
            agree = 0
            tol = cfg["agree_m"]
            for i in range(valid):
                if abs(buf[i] - med) <= tol:
                    buf[agree] = buf[i]
                    agree += 1
            if agree >= need:
                med = _median(buf, agree)
            if agree < need:
                res = (None, None, agree, SPREAD)
            else:
                d = int(med * 1000 + 0.5) / 1000   # mm: the sensor's resolution
                res = (d, fill_pct(d, depth, offset), agree, OK)
        self.last = res
        return res
