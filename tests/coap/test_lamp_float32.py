"""Long-running lamp counters in float32 (the ESP32's floats), on CPython with
the same shim as test_lamp_astro.py: every float intermediate rounded to
float32. A float32 energy counter stops counting once its ulp passes the
per-second increment (1 MWh: ulp 0.06 Wh; a 100 W lamp adds 0.028 Wh/s), and a
float32 seconds counter stalls after 2**24 s (194 days); energy.py keeps ints.
"""
from pathlib import Path

from test_lamp_astro import F32, load_f32

ENERGY = Path(__file__).resolve().parents[2] / "firmware" / "lamp" / "energy.py"


class FakeStore:
    def __init__(self, data):
        self.data = data
        self.saved = []

    def load_json(self, path, default=None):
        return self.data

    def save_json(self, path, obj):
        self.saved.append(obj)


def _energy(src, data):
    ns = load_f32(src, {"store": FakeStore(data)})
    return ns["Energy"]()


def test_counters_keep_counting_after_years_in_float32():
    # 4 years of a 100 W lamp: ~1.4 MWh and ~5.8e7 s already counted
    e = _energy(ENERGY.read_text(), {"mwh": 1_400_000_000, "on_s": 58_000_000, "n": 1460})
    for i in range(3600):
        e.tick(i, 1000, F32(100.0), True)  # the meter gives a float32 too
    assert abs((e.mwh - 1_400_000_000) - 100_000) <= 1, e.mwh  # exactly 100 Wh more
    assert e.on_s == 58_000_000 + 3600
    assert abs(e.wh - 1_400_100) < 0.2


def test_a_float_counter_would_stall():
    # the same hour with the naive float counters: the test above can fail
    naive = '''
class Energy:
    def __init__(self):
        d = store.load_json("x")
        self.wh = float(d["wh"])
        self.on_s = float(d["on_s"])

    def tick(self, now, dt_ms, power, relay):
        self.wh += power * dt_ms / 3600000.0
        self.on_s += dt_ms / 1000.0
'''
    e = _energy(naive, {"wh": 1_400_000.0, "on_s": 58_000_000.0})
    for i in range(3600):
        e.tick(i, 1000, F32(100.0), True)  # the meter gives a float32 too
    assert abs((e.wh - 1_400_000) - 100) > 20, e.wh
    assert e.on_s - 58_000_000 != 3600
