# Injected lamp faults (simulated HAL) raise and clear the right events,
# debounced, sent at once as SenML "ev:NAME" packs in the outbox; plus the
# dimmer, the energy write policy and calendar rejection, in unix MicroPython.
# Run from the .mpy files that ship, on the ESP32-sized heap. From source the
# compiler's own peak (lazy modules compiled mid-run) does not fit in 100 KB
# on the 64-bit host; test_lamp_src.py runs the source with a larger heap.
MODES = ("mpy",)
import hal
from lamp import tz
from lamp.control import Controller
from lamp.dimmer import Dimmer
from lamp.energy import Energy
from _lampsim import controller, run as _run, events as _events

DEB = 10
CFG = {"ep": "lamp-f", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": 5683},
       "lat": 49.47, "lon": 5.93, "report_s": 86400,
       "lamp": {"wattage": 60, "warmup_s": 20, "debounce_s": DEB, "ramp_ms": 1000, "min_level": 10,
                "cycles_max": 3, "cycle_window_s": 300}}
DAY = tz.days_from_civil(2026, 12, 21)
NIGHT = DAY * 86400 + 20 * 3600  # 21:00 CET: the default calendar is at 100 %
NOON = DAY * 86400 + 11 * 3600


def _ctl(t):
    return controller(CFG, t)


def test_healthy_lamp_raises_nothing():
    c = _ctl(NIGHT)
    _run(c, 300)
    assert c.dim.level == 100 and c.hw.relay
    assert 59 < c.power < 61
    assert c.faults.active == {} and _events(c) == []


def test_lamp_failure_raised_after_debounce_and_cleared():
    c = _ctl(NIGHT)
    _run(c, 60)
    hal.set_inputs(lamp="broken")
    _run(c, DEB - 2)
    assert "lampFailure" not in c.faults.active  # debounced
    _run(c, 5)
    assert "lampFailure" in c.faults.active
    assert _events(c) == [("lampFailure", True)]
    assert "lampFailure" in c.status()["faults"]
    hal.set_inputs(lamp="ok")
    _run(c, DEB + 3)
    assert c.faults.active == {}
    assert _events(c) == [("lampFailure", True), ("lampFailure", False)]


def test_warmup_masks_checks_after_switch_on():
    c = _ctl(NIGHT)
    hal.set_inputs(lamp="broken")
    _run(c, 20 + DEB - 3)  # warm-up 20 s: nothing yet
    assert c.faults.active == {}
    _run(c, 6)
    assert list(c.faults.active) == ["lampFailure"]


def test_power_too_low_and_too_high():
    c = _ctl(NIGHT)
    _run(c, 40)
    hal.set_inputs(lamp="low")
    _run(c, DEB + 2)
    assert list(c.faults.active) == ["lampPowerTooLow"]
    hal.set_inputs(lamp="high")
    _run(c, DEB + 2)
    assert list(c.faults.active) == ["lampPowerTooHigh"]
    assert _events(c) == [("lampPowerTooLow", True), ("lampPowerTooLow", False), ("lampPowerTooHigh", True)]


def test_power_check_follows_dimmed_level():
    c = _ctl(NIGHT)
    c.set_override(40)
    _run(c, 60)
    assert c.dim.level == 40 and 23 < c.power < 25  # 60 W x 0.4
    assert c.faults.active == {}
    hal.set_inputs(power=60.0)  # full power at 40 %: the driver ignores dimming
    _run(c, DEB + 2)
    assert list(c.faults.active) == ["lampPowerTooHigh"]


def test_day_burner_and_stuck_relay():
    c = _ctl(NOON)
    _run(c, 30)
    assert not c.hw.relay and c.power == 0.0
    hal.set_inputs(lamp="stuck")
    _run(c, DEB + 2)
    assert sorted(c.faults.active) == ["lampUnexpectedOn", "relayFailure"]
    hal.set_inputs(lamp="ok")
    _run(c, DEB + 2)
    assert c.faults.active == {}


def test_cycling_lamp():
    c = _ctl(NIGHT)
    _run(c, 30)
    hal.set_inputs(lamp="cycling", cycle_s=7)  # out and on every 7 s
    _run(c, 60)
    assert "cyclingFailure" in c.faults.active
    hal.set_inputs(lamp="ok")
    _run(c, 300 + DEB + 2)
    assert "cyclingFailure" not in c.faults.active
    ev = _events(c)
    assert ("cyclingFailure", True) in ev and ("cyclingFailure", False) in ev


def test_supply_loss_is_not_a_lamp_failure():
    c = _ctl(NIGHT)
    _run(c, 40)
    saves = c.energy.writes
    hal.set_inputs(supply=False)
    _run(c, DEB + 5)
    assert list(c.faults.active) == ["supplyLoss"]
    assert c.energy.writes > saves  # last-gasp save of the counters
    hal.set_inputs(supply=True)
    _run(c, DEB + 2)
    assert c.faults.active == {}
    assert _events(c) == [("supplyLoss", True), ("supplyLoss", False)]


class Out:
    def __init__(self):
        self.duty = 0
        self.relay = False
        self.log = []

    def set_duty(self, d):
        self.duty = d

    def set_relay(self, on):
        self.relay = on
        self.log.append(on)


def test_dimmer_fade_min_level_curve_and_relay():
    o = Out()
    d = Dimmer(o, ramp_ms=1000, min_level=10, curve="square")
    d.set(50)
    assert o.relay  # relay closes before the fade up
    d.step(250)
    assert d.level == 25 and o.duty == int(0.0625 * 65535 + 0.5)
    d.step(1000)
    assert d.level == 50
    d.set(5)  # below the minimum: raised to it
    assert d.target == 10
    d.set(0)
    d.step(200)
    assert o.relay and 0 < d.level < 50  # still fading down: relay stays closed
    d.step(1000)
    assert d.level == 0 and not o.relay and o.duty == 0
    assert o.log == [False, True, False]
    d2 = Dimmer(Out(), curve=[0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 100])
    assert abs(d2.frac(15) - 0.075) < 1e-6 and d2.frac(100) == 1.0
    try:
        d.set(101)
        assert False
    except ValueError:
        pass


def test_energy_write_policy_bounded():
    e = Energy(save_s=900)
    t = 0
    for _ in range(24 * 3600 // 10):  # a day lit at 60 W, a tick every 10 s
        t += 10
        e.tick(t, 10000, 60.0, True)
    assert 1439 < e.wh < 1441
    assert 90 <= e.writes <= 97, e.writes  # one write per 15 min, not per tick
    e2 = Energy()
    assert e2.wh >= e.wh - 15 and e2.wh <= e.wh
    assert e2.on_s >= e.on_s - 900


def test_invalid_calendar_rejected_old_kept():
    c = _ctl(NIGHT)
    good = {"id": "good", "default": "p", "programs": {"p": [{"at": "sunset", "level": 70}, {"at": "sunrise", "level": 0}]}}
    c.set_calendar(good)
    c.step()
    assert c.dim.target == 70
    for bad, why in [({"id": "bad", "default": "p", "programs": {"p": [{"at": "sunset", "level": 170}]}}, "level"),
                     ("not a map", "map"),
                     ({"id": "bad", "default": "zz", "programs": {"p": [{"at": "sunset", "level": 1}]}}, "default")]:
        try:
            c.set_calendar(bad)
            assert False, "accepted"
        except ValueError as e:
            assert why in str(e), str(e)
        c.step()
        assert c.cal[0] == "good" and c.dim.target == 70
    # and after a reboot the stored calendar is still the good one
    c2 = Controller(CFG)
    assert c2.cal[0] == "good"
    # a corrupt file on flash falls back to the last good copy (.bak)
    c.set_calendar(good)  # installed twice: the .bak holds it too
    with open("data/calendar.cbor", "w") as f:
        f.write("{garbage")
    c3 = Controller(CFG)
    assert c3.cal[0] == "good"  # from calendar.cbor.bak (the previous install)


def test_time_set_mid_debounce_does_not_raise_early():
    # fail-safe (time unknown), lamp on; the time arrives (RTC jumps 26 years)
    # while a fault is being debounced: debouncing runs on monotonic time
    hal.set_time(hal.RTC_EPOCH_2000)
    c = Controller(CFG)
    _run(c, 30)
    assert c.src == "failsafe" and c.hw.relay
    hal.set_inputs(lamp="broken")
    _run(c, 4)
    hal.set_time(NIGHT)  # NTP: now 21:00 CET, the schedule also says 100 %
    _run(c, 1)
    assert c.src == "schedule" and c.faults.active == {}
    _run(c, DEB)
    assert list(c.faults.active) == ["lampFailure"]
