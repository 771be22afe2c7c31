# hal.sim: simulated clock and RTC, deep sleep / reboot as process exits with
# the state carried to the next "boot", inputs from a file, Wi-Fi timings.
import sys
import json
import os


def _fresh_sim():
    # a new process in miniature: forget the module so it re-reads the saved state
    for m in ("hal", "hal.sim"):
        if m in sys.modules:
            del sys.modules[m]
    import hal
    from hal import sim
    return hal, sim


def test_power_on_rtc_is_unknown_until_set():
    import hal
    from dev import clock
    assert hal.reset_cause() == "power_on"
    assert hal.time() < 1704067200 and not clock.time_known() and clock.now() is None
    hal.set_time(1790000000.5)
    assert clock.time_known() and abs(clock.now() - 1790000000.5) < 0.01


def test_clock_moves_only_by_advance_and_physical_delays():
    import hal
    from hal import sim
    t0, r0 = hal.ticks_ms(), hal.time()
    for _ in range(1000):
        pass
    assert hal.ticks_ms() == t0
    sim.advance(1500)
    hal.sleep_ms(500)
    assert hal.ticks_diff(hal.ticks_ms(), t0) == 2000
    assert abs(hal.time() - r0 - 2.0) < 1e-6


def test_speed_follows_real_time_scaled():
    import time
    import hal
    from hal import sim
    sim.set_speed(100)
    t0 = hal.ticks_ms()
    time.sleep_ms(50)
    d = hal.ticks_diff(hal.ticks_ms(), t0)
    sim.set_speed(0)
    assert 4000 <= d <= 60000, d


def test_deepsleep_exits_3_and_next_boot_continues_time_and_rtc_memory():
    import hal
    from hal import sim
    hal.set_time(1790000000)
    sim.set_true_time(1790000100)
    hal.rtc_memory(b"\x01\x02state")
    try:
        hal.deepsleep(600000)
        assert False, "deepsleep returned"
    except SystemExit as e:
        assert e.args[0] == sim.EXIT_DEEPSLEEP == 3
    assert not sim.radio_on()
    hal, sim = _fresh_sim()
    assert hal.reset_cause() == "deepsleep"
    assert abs(hal.time() - 1790000600) < 0.01
    assert abs(sim.true_time() - 1790000700) < 0.01
    assert hal.rtc_memory() == b"\x01\x02state"
    # the state is consumed: a crash now and a restart is a power-on
    hal, sim = _fresh_sim()
    assert hal.reset_cause() == "power_on" and hal.rtc_memory() == b""


def test_reboot_exits_4_keeps_rtc():
    import hal
    from hal import sim
    hal.set_time(1790000000)
    try:
        hal.reboot()
    except SystemExit as e:
        assert e.args[0] == sim.EXIT_REBOOT == 4
    hal, sim = _fresh_sim()
    assert hal.reset_cause() == "soft" and abs(hal.time() - 1790000000) < 0.01


def test_watchdog_not_fed_in_time_resets():
    import time
    import hal
    from hal import sim
    hal.wdt_enable(30)
    hal.wdt_feed()
    time.sleep_ms(60)
    try:
        hal.wdt_feed()
        assert False, "watchdog did not fire"
    except SystemExit as e:
        assert e.args[0] == 4
    hal, sim = _fresh_sim()
    assert hal.reset_cause() == "wdt"


def test_rtc_memory_bound():
    import hal
    try:
        hal.rtc_memory(bytes(2049))
        assert False
    except ValueError as e:
        assert "2048" in str(e)


def test_inputs_file_reloaded_on_change():
    import time
    with open("inputs.json", "w") as f:
        json.dump({"distance": 1.25}, f)
    os.putenv("ECLOR_SIM_FILE", "inputs.json")
    hal, sim = _fresh_sim()
    assert sim.inputs()["distance"] == 1.25
    sim.set_inputs(tilt=True)
    time.sleep_ms(1100)  # mtime has a 1 s resolution on some filesystems
    with open("inputs.json", "w") as f:
        json.dump({"distance": 0.5, "battery": 3.7}, f)
    time.sleep_ms(120)
    i = sim.inputs()
    assert i["distance"] == 0.5 and i["battery"] == 3.7 and i["tilt"] is True
    with open("inputs.json", "w") as f:
        f.write('{"distance": ')  # half-written by the board: keep the last values
    time.sleep_ms(1100)
    assert sim.inputs()["distance"] == 0.5
    os.unsetenv("ECLOR_SIM_FILE")


def test_wifi_costs_documented_time_and_ntp_sets_rtc():
    import hal
    from hal import sim
    from dev import clock
    t0 = hal.ticks_ms()
    saved = hal.wifi_connect("ssid", "psk")
    assert saved and hal.ticks_diff(hal.ticks_ms(), t0) == sim.WIFI_SAVED_MS + sim.WIFI_SCAN_MS + sim.WIFI_DHCP_MS
    assert hal.rssi() == -67 and sim.radio_on()
    t1 = hal.ticks_ms()
    assert hal.wifi_connect("ssid", "psk", saved, ("10.0.0.9", "255.255.255.0", "10.0.0.1", "10.0.0.1"))
    assert hal.ticks_diff(hal.ticks_ms(), t1) == sim.WIFI_SAVED_MS
    sim.set_true_time(1790000000)
    assert hal.ntp_sync() and clock.time_known() and abs(hal.time() - sim.true_time()) < 0.01
    hal.wifi_off()
    assert hal.rssi() is None and not hal.ntp_sync()
    sim.set_inputs(wifi=False)
    assert hal.wifi_connect("ssid", "psk", saved) is None and not sim.radio_on()


def test_machine_id_and_heap():
    import hal
    assert isinstance(hal.machine_id(), str) and hal.machine_id()
    assert 10000 < hal.free_heap() < 110 * 1024
