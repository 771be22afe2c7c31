# hal.esp32 cannot run on the host (no radio, no RTC). These tests import it
# over recording stand-ins for `machine` and `network` (put in sys.modules)
# to check what the wrappers do with the real MicroPython ESP32 APIs: epoch
# handling, RTC.datetime tuple order, saved BSSID / static IP on connect,
# radio off before deep sleep, reset-cause names -- and that it offers the
# same API as hal.sim.
import sys

calls = []


class WDT:
    def __init__(self, timeout):
        calls.append(("wdt", timeout))

    def feed(self):
        calls.append(("feed",))


class RTC:
    mem = b""

    def datetime(self, t=None):
        calls.append(("datetime", t))

    def memory(self, data=None):
        if data is None:
            return RTC.mem
        RTC.mem = bytes(data)


class WLAN:
    polls = 2
    fail = False

    def __init__(self, iface):
        self.on = False
        self.n = 0

    def active(self, on=None):
        if on is not None:
            self.on = on
            calls.append(("active", on))
        return self.on

    def ifconfig(self, cfg):
        calls.append(("ifconfig", cfg))

    def connect(self, ssid, psk, bssid=None):
        calls.append(("connect", ssid, psk, bssid))

    def isconnected(self):
        self.n += 1
        return self.on and not WLAN.fail and self.n > WLAN.polls

    def config(self, k):
        return 11

    def status(self, k):
        return -58

    def disconnect(self):
        calls.append(("disconnect",))


class Mod:
    pass


def _install():
    m = Mod()
    m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET = 1, 2, 3, 4, 5
    m.WDT, m.RTC = WDT, RTC
    m.cause = 4
    m.reset_cause = lambda: m.cause
    m.deepsleep = lambda ms: calls.append(("deepsleep", ms))
    m.reset = lambda: calls.append(("reset",))
    m.unique_id = lambda: b"\x24\x0a\xc4\x01\x02\x03"
    n = Mod()
    n.STA_IF = 0
    n.WLAN = WLAN
    sys.modules["machine"] = m
    sys.modules["network"] = n
    from hal import esp32
    return esp32, m


def test_same_api_as_sim():
    esp32, _ = _install()
    from hal import sim
    # const: micropython.const, a module global only when run from source
    sim_only = {"advance", "set_speed", "true_time", "set_true_time", "inputs", "set_inputs", "radio_on", "const"}
    pub = lambda m: set(k for k in dir(m) if not k.startswith("_") and callable(getattr(m, k)))
    missing = pub(sim) - pub(esp32) - sim_only
    assert not missing, missing


def test_time_reset_cause_wdt_rtc_memory():
    esp32, m = _install()
    import time
    assert abs(esp32.time() - time.time()) < 2  # unix port: 1970 epoch, no offset
    esp32.set_time(1790000000)  # 2026-09-21T14:13:20Z, a Monday
    assert calls[-1] == ("datetime", (2026, 9, 21, 0, 14, 13, 20, 0)), calls[-1]
    assert esp32.reset_cause() == "deepsleep"
    m.cause = 3
    assert esp32.reset_cause() == "wdt"
    m.cause = 99
    assert esp32.reset_cause() == "hard"
    esp32.wdt_enable(30000)
    esp32.wdt_feed()
    assert calls[-2:] == [("wdt", 30000), ("feed",)]
    esp32.rtc_memory(b"abc")
    assert esp32.rtc_memory() == b"abc"
    assert esp32.machine_id() == "240ac4010203"


def test_wifi_saved_bssid_static_ip_and_radio_off_before_deepsleep():
    esp32, _ = _install()
    del calls[:]
    ip = ("10.0.0.9", "255.255.255.0", "10.0.0.1", "10.0.0.1")
    saved = esp32.wifi_connect("ssid", "psk", {"channel": 11, "bssid": "aa:bb:cc:00:11:22"}, ip)
    assert saved == {"channel": 11, "bssid": "aa:bb:cc:00:11:22"}
    assert ("ifconfig", ip) in calls
    assert ("connect", "ssid", "psk", b"\xaa\xbb\xcc\x00\x11\x22") in calls
    assert esp32.rssi() == -58
    del calls[:]
    esp32.deepsleep(900000)
    assert calls.index(("active", False)) < calls.index(("deepsleep", 900000)), calls


def test_wifi_timeout_returns_none_and_switches_radio_off():
    esp32, _ = _install()
    WLAN.fail = True
    del calls[:]
    assert esp32.wifi_connect("ssid", "psk", timeout_ms=60) is None
    assert ("active", False) in calls
    WLAN.fail = False
