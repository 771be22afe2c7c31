# Lamp current and dimming faults (TALQ currentTooLow / currentTooHigh,
# dimmingFailure) with the simulated HAL: raised after the debounce, cleared
# when the input is back to normal, sent as SenML "ev:NAME" packs, listed in
# the state; no false alarm during the warm-up, the fade or while off. Run
# from the .mpy files that ship, on the ESP32-sized heap (as test_lamp_faults).
MODES = ("mpy",)
import hal
from lamp import tz
from _lampsim import controller, run as _run, events as _events

DEB = 10
WARM = 20
LAMP = {"wattage": 60, "warmup_s": WARM, "debounce_s": DEB, "ramp_ms": 1000, "min_level": 10,
        "current_min": 0.2, "current_max": 0.4}  # 60 W at 230 V: 0.26 A at full output
CFG = {"ep": "lamp-c", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": 5683},
       "lat": 49.47, "lon": 5.93, "report_s": 86400, "lamp": LAMP}
DAY = tz.days_from_civil(2026, 12, 21)
NIGHT = DAY * 86400 + 20 * 3600  # 21:00 CET: the default calendar is at 100 %
NOON = DAY * 86400 + 11 * 3600


def _ctl(t, lamp=None):
    cfg = dict(CFG)
    if lamp:
        cfg["lamp"] = dict(LAMP, **lamp)
    return controller(cfg, t)


def test_sim_current_channel():
    c = _ctl(NIGHT)
    assert c.hw.current() is None  # by default the simulated meter has no current channel
    hal.set_inputs(current=0.3)
    assert c.hw.current() == 0.3
    hal.set_inputs(current=None, imeter=True)
    _run(c, 5)
    assert abs(c.hw.current() - 60 / 230) < 1e-3  # modelled: power / voltage
    hal.set_inputs(supply=False)
    assert c.hw.current() == 0.0


def test_current_too_low_raised_and_cleared():
    c = _ctl(NIGHT)
    hal.set_inputs(imeter=True)
    _run(c, 40)
    assert c.faults.active == {}
    hal.set_inputs(current=0.1)  # a string of LEDs open: less current, same power reading
    _run(c, DEB - 2)
    assert c.faults.active == {}  # debounced
    _run(c, 4)
    assert list(c.faults.active) == ["currentTooLow"]
    assert "currentTooLow" in c.status()["faults"]
    hal.set_inputs(current=None)  # back to the model, 0.26 A
    _run(c, DEB + 2)
    assert c.faults.active == {}
    assert _events(c) == [("currentTooLow", True), ("currentTooLow", False)]


def test_current_too_high_raised_and_cleared():
    c = _ctl(NIGHT)
    hal.set_inputs(current=0.26)
    _run(c, 40)
    hal.set_inputs(current=0.6)
    _run(c, DEB + 2)
    assert list(c.faults.active) == ["currentTooHigh"]
    hal.set_inputs(current=0.26)
    _run(c, DEB + 2)
    assert c.faults.active == {}
    assert _events(c) == [("currentTooHigh", True), ("currentTooHigh", False)]


def test_current_min_scales_with_the_dimmed_level():
    c = _ctl(NIGHT)
    hal.set_inputs(imeter=True)
    c.set_override(40)
    _run(c, 60)
    assert c.dim.level == 40 and 0.1 < c.hw.current() < 0.11  # below current_min, fine at 40 %
    assert c.faults.active == {}
    hal.set_inputs(current=0.05)  # < 0.2 A x 0.4
    _run(c, DEB + 2)
    assert list(c.faults.active) == ["currentTooLow"]


def test_current_checks_masked_during_warmup_and_while_off():
    # HID run-up: a high current for the warm-up time is normal
    c = _ctl(NIGHT)
    hal.set_inputs(current=0.6)
    _run(c, WARM + DEB - 3)
    assert c.faults.active == {}
    _run(c, 6)
    assert list(c.faults.active) == ["currentTooHigh"]
    # lamp off at noon: no current is not "too low", and none is checked
    c = _ctl(NOON)
    for i in (0.0, 0.6):
        hal.set_inputs(current=i)
        _run(c, WARM + DEB + 5)
        assert not c.hw.relay and c.faults.active == {}
    # without a current channel or thresholds, nothing is checked
    c = _ctl(NIGHT, {"current_min": None, "current_max": None})
    hal.set_inputs(current=5.0)
    _run(c, WARM + DEB + 5)
    assert c.faults.active == {}
    hal.set_inputs(current=None)
    c = _ctl(NIGHT)
    _run(c, WARM + DEB + 5)
    assert c.hw.current() is None and c.faults.active == {}


def test_current_max_set_live_by_lamp_type():
    c = _ctl(NIGHT, {"current_max": None})
    hal.set_inputs(current=0.6)
    _run(c, WARM + DEB + 5)
    assert c.faults.active == {}
    assert c.set_type({"current_max": 0.5}) is None
    _run(c, DEB + 2)
    assert list(c.faults.active) == ["currentTooHigh"]


def test_dimming_failure_dimmed_level_stays_at_full_power():
    c = _ctl(NIGHT)
    _run(c, 40)
    hal.set_inputs(power=60.0)  # the driver ignores its dimming input
    _run(c, 5)
    assert c.faults.active == {}  # at 100 % that is right
    c.set_override(40)
    _run(c, DEB - 2)
    assert "dimmingFailure" not in c.faults.active
    _run(c, 5)
    assert sorted(c.faults.active) == ["dimmingFailure", "lampPowerTooHigh"]
    assert "dimmingFailure" in c.status()["faults"]
    hal.set_inputs(power=None)  # driver repaired: 24 W at 40 %
    _run(c, DEB + 2)
    assert c.faults.active == {}
    assert [e for e in _events(c) if e[0] == "dimmingFailure"] == [("dimmingFailure", True),
                                                                  ("dimmingFailure", False)]


def test_dimming_failure_power_unchanged_between_two_levels():
    c = _ctl(NIGHT)
    c.set_override(40)
    _run(c, 40)
    assert 23 < c.power < 25 and c.faults.active == {}
    hal.set_inputs(power=24.0)  # driver stuck at its 40 % output
    c.set_override(100)
    _run(c, DEB + 3)
    assert sorted(c.faults.active) == ["dimmingFailure", "lampPowerTooLow"]
    hal.set_inputs(power=None)  # the driver follows again
    _run(c, DEB + 2)
    assert c.faults.active == {}
    # and down again: the power follows, nothing raised
    c.set_override(30)
    _run(c, 3 * DEB)
    assert c.faults.active == {}
    assert [e for e in _events(c) if e[0] == "dimmingFailure"] == [("dimmingFailure", True),
                                                                  ("dimmingFailure", False)]


def test_no_dimming_false_alarm_when_the_power_follows():
    # a healthy lamp through level changes, then a lamp at half power: its
    # power follows the level (lampPowerTooLow only)
    c = _ctl(NIGHT)
    for lv in (100, 30, 70, 10, 100, 50):
        c.set_override(lv)
        _run(c, DEB + 5)
    assert c.faults.active == {} and _events(c) == []
    hal.set_inputs(lamp="low")  # at 50 %, then through level changes
    _run(c, DEB + 5)
    for lv in (100, 40, 100):
        c.set_override(lv)
        _run(c, DEB + 5)
    assert list(c.faults.active) == ["lampPowerTooLow"]
    assert "dimmingFailure" not in [e[0] for e in _events(c)]


def test_no_dimming_alarm_during_a_slow_fade():
    c = _ctl(NIGHT, {"ramp_ms": 60000})  # 100 -> 40 % takes 36 s
    _run(c, 120)
    hal.set_inputs(power=60.0)  # stuck driver
    c.set_override(40)
    _run(c, 34)
    assert c.dim.fading() and c.faults.active == {}
    _run(c, 2 + DEB + 2)
    assert not c.dim.fading() and "dimmingFailure" in c.faults.active


def test_no_dimming_alarm_while_off_or_without_an_earlier_level():
    c = _ctl(NOON)
    hal.set_inputs(power=0.0)
    _run(c, 30)
    assert not c.hw.relay and c.faults.active == {}
    hal.set_inputs(power=60.0)  # switched on directly at 40 %, stuck driver
    c.set_override(40)
    _run(c, WARM + DEB + 5)
    assert list(c.faults.active) == ["lampPowerTooHigh"]  # nothing to compare with
