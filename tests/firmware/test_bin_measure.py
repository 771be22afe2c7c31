# Bin measurement and events, inside unix MicroPython: the ranger really
# pings the simulated JSN-SR04T (echo times from the true temperature),
# with noise, false echoes, timeouts and blind-zone echoes.
from waste import ranger, events, conf
from hal.bin_sim import BinSim


class Clock:
    # a bare simulated clock for unit tests of the measurement alone
    def __init__(self):
        self.t = 0

    def sleep_ms(self, ms):
        self.t += ms

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b


def _measure(script, temp=None, **over):
    s = conf.defaults()
    s.update(over)
    clk = Clock()
    hw = BinSim(script, clk)
    r = ranger.Ranger(hw, clk.sleep_ms)
    t = script.get("temp", 15.0) if temp is None else temp
    return r.measure(s, t), clk.t


def test_speed_of_sound():
    assert abs(ranger.sound_speed(0) - 331.3) < 1e-6
    assert abs(ranger.sound_speed(20) - 343.2) < 0.1
    assert abs(ranger.sound_speed(-10) - 325.2) < 0.1


def test_clean_echo_gives_distance_and_fill():
    (d, fill, n, why), ms = _measure({"dist": 0.8, "temp": 20.0})
    assert why == ranger.OK and n == 5
    assert abs(d - 0.8) <= 0.002, d
    assert fill == 50, fill
    # 5 pings, one per 60 ms period (the last one only its ~5 ms flight):
    # physical time is counted on the simulated clock
    assert 4 * 60 <= ms <= 4 * 60 + 12, ms


def test_temperature_correction_matters():
    # true -10 degC air; using -10 gives the right answer, assuming +30 is 3.5 cm off
    (d, fill, n, why), _ = _measure({"dist": 1.0, "temp": -10.0})
    assert abs(d - 1.0) <= 0.002, d
    (d2, _, _, _), _ = _measure({"dist": 1.0, "temp": -10.0}, temp=30.0)
    assert d2 - 1.0 > 0.03, d2


def test_outliers_and_noise_rejected_by_median():
    # two false short echoes and one timeout among 7 pings
    (d, fill, n, why), _ = _measure({"pings": [0.6, 0.12, 0.61, -1, 0.59, 0.3, 0.6], "temp": 15.0})
    assert why == ranger.OK, why
    assert abs(d - 0.6) < 0.011 and fill == 70, (d, fill)
    for seed in range(1, 30):
        (d, fill, n, why), _ = _measure({"dist": 0.9, "noise_m": 0.01, "false_p": 0.15, "timeout_p": 0.1,
                                         "temp": 15.0, "seed": seed})
        # never a made-up number: either a good level or unknown
        assert fill is None or abs(fill - 40) <= 2, (seed, d, fill, why)
        assert why in (ranger.OK, ranger.FEW, ranger.SPREAD)


def test_too_few_echoes_is_unknown():
    (d, fill, n, why), ms = _measure({"pings": [-1, -1, 0.7, -1, 0.7, -1, -1], "temp": 15.0})
    assert (d, fill, n, why) == (None, None, 2, ranger.FEW)
    # 5 pings were not conclusive: 2 more; every ping costs its 60 ms period
    assert 7 * 60 - 60 <= ms <= 7 * 60 + 5, ms


def test_disagreeing_echoes_are_unknown():
    (d, fill, n, why), _ = _measure({"pings": [0.5, 0.9, 0.5, 0.9, 1.2, 0.7, 0.3], "temp": 15.0})
    assert fill is None and why == ranger.SPREAD


def test_beyond_bottom_and_max_range_invalid():
    (d, fill, n, why), _ = _measure({"dist": 2.5, "temp": 15.0})
    assert fill is None and why == ranger.FEW
    # a deep container still limited by the ranger's range
    (d, fill, n, why), _ = _measure({"dist": 3.0, "temp": 15.0}, depth_m=3.0, max_range_m=2.5)
    assert fill is None and why == ranger.FEW


def test_blind_zone():
    # blind zone above the rim (offset 0.30 >= blind 0.25): waste overflows -> 100 %
    (d, fill, n, why), _ = _measure({"dist": 0.1, "temp": 15.0})
    assert (d, fill, why) == (None, 100, ranger.BLIND)
    # blind zone reaching into the container: level unmeasurable -> unknown
    (d, fill, n, why), _ = _measure({"dist": 0.1, "temp": 15.0}, offset_m=0.1)
    assert (d, fill, why) == (None, None, ranger.BLIND)


def test_fill_clamped():
    assert ranger.fill_pct(1.5, 1.0, 0.3) == 0
    assert ranger.fill_pct(0.26, 1.0, 0.3) == 100
    assert ranger.fill_pct(0.55, 1.0, 0.3) == 75


def _ev(st, fill=50, temp=15.0, tilted=False, tilt_wake=False, batt=3.9, **over):
    s = conf.defaults()
    s.update(over)
    return events.evaluate(st, fill, temp, tilted, tilt_wake, batt, s)


def test_fill_curve_with_noise_gives_levels_and_events_once():
    # a week of a bin filling 0 -> 95 %, emptied, refilling; 4 measurements an hour
    st = {}
    seen = []
    levels_ok = 0
    truth_fill = 0.0
    for k in range(7 * 96):
        truth_fill = truth_fill + 0.4
        if k == 300:
            truth_fill = 3.0      # the truck passes
        if truth_fill > 95:
            truth_fill = 95
        dist = 0.3 + 1.0 - truth_fill / 100.0
        (d, fill, n, why), _ = _measure({"dist": dist, "noise_m": 0.008, "false_p": 0.1, "timeout_p": 0.05,
                                         "temp": 12.0, "seed": k + 1})
        if fill is not None:
            assert abs(fill - truth_fill) <= 2, (k, fill, truth_fill)
            levels_ok += 1
        changes, status = _ev(st, fill=fill, temp=12.0)
        assert status in ("ok", "unknown")
        for c in changes:
            seen.append((k, c))
    assert levels_ok > 0.9 * 7 * 96, levels_ok
    names = [c for k, c in seen]
    # full raised on the way up, cleared by the emptying, raised again
    assert names == [("full", True), ("emptied", True), ("full", False), ("full", True)], seen
    assert 190 <= seen[0][0] <= 205 and seen[1][0] == 300


def test_fire_by_threshold_and_by_rise():
    st = {}
    assert _ev(st, temp=20.0) == ([], "ok")
    assert _ev(st, temp=26.0) == ([("fire", True)], "burning")     # +6 degC between readings
    assert _ev(st, temp=27.0) == ([("fire", False)], "ok")
    assert _ev(st, temp=61.0) == ([("fire", True)], "burning")     # above fire_c, no sudden rise needed
    assert _ev(st, temp=58.0) == ([], "burning")                   # hysteresis
    assert _ev(st, temp=40.0) == ([("fire", False)], "ok")
    assert _ev(st, temp=None) == ([], "ok")                        # sensor missing: no made-up fire


def test_tilt_moved_and_battery():
    st = {}
    assert _ev(st, tilted=True, tilt_wake=True) == ([("tipped", True)], "dropped")
    assert _ev(st, tilted=False) == ([("tipped", False)], "ok")
    assert _ev(st, tilt_wake=True) == ([("moved", True)], "moved")
    # a collection tips the bin too: then it is "emptied", not "moved"
    _ev(st, fill=90)
    ch, status = _ev(st, fill=5, tilt_wake=True)
    assert ("emptied", True) in ch and ("moved", True) not in ch and status == "ok", ch
    assert _ev(st, batt=3.3) == ([("lowBattery", True)], "ok")
    assert _ev(st, batt=3.45) == ([], "ok")                        # hysteresis
    assert _ev(st, batt=3.6) == ([("lowBattery", False)], "ok")
    assert _ev(st, fill=None) == ([], "unknown")


def test_settings_validation():
    s = conf.defaults()
    assert conf.check(s) is None
    for bad, why in (({"depth_m": 0}, "depth_m"), ({"full_pct": "x"}, "number"), ({"pings": 2.5}, "integer"),
                     ({"nope": 1}, "unknown key"), ({"measure_s": 30}, "measure_s"),
                     ({"min_valid": 8, "pings": 7}, "min_valid")):
        try:
            conf.merged(s, bad)
        except ValueError as e:
            assert why in str(e), (bad, e)
        else:
            raise AssertionError("accepted %r" % bad)
    assert s == conf.defaults()            # old settings untouched
    assert conf.merged(s, {"depth_m": 1.2})["depth_m"] == 1.2


def test_lean_settings_of_the_radio_phase_check_like_whole_ones():
    # a transmitting wake holds only the settings it reads and those the
    # config sets (waste/radio.py lean()); a command's change is checked
    # against the defaults of the others, exactly as with the whole dict
    from waste.radio import lean
    cfg = {"bin": {"depth_m": 2.0, "ack_timeout_ms": 200}}
    whole = conf.from_config(cfg)[0]
    s = lean(whole, cfg)
    assert len(s) < len(whole) and s["depth_m"] == 2.0 and s["ack_timeout_ms"] == 200
    for k in ("max_retransmit", "heartbeat_s", "outbox", "measure_s", "backoff_s", "backoff_max_s"):
        assert s[k] == whole[k], k
    assert all(whole[k] == v for k, v in s.items())
    assert all(conf.defaults()[k] == v for k, v in whole.items() if k not in s)
    for change in ({"min_valid": 8}, {"offset_m": 2.0}, {"measure_s": 86400}, {"backoff_s": 86400},
                   {"step_pct": 15}, {"max_range_m": 3.0}, {"depth_m": 0}):
        try:
            want = conf.merged(whole, change)
        except ValueError as e:
            want = str(e)
        try:
            got = conf.merged(s, change)
        except ValueError as e:
            got = str(e)
        if isinstance(want, dict):
            assert got == lean(want, {"bin": dict(cfg["bin"], **change)}), (change, got)
        else:
            assert got == want, (change, got, want)
    # a bin section that is not valid: the defaults, and lean ones of them
    assert lean(conf.defaults(), {"bin": {"depth_m": 0}}) == {
        k: conf.defaults()[k] for k in ("depth_m", "ack_timeout_ms", "max_retransmit", "heartbeat_s", "outbox",
                                        "measure_s", "backoff_s", "backoff_max_s")}
