"""Common HAL on the ESP32: thin wrappers over machine, network and ntptime.

Same API as hal.sim (see hal/__init__.py). Cannot run on the host; it must
compile with mpy-cross -march=xtensawin (checked by the tests).

Notes on the choices:
- time() is UTC seconds since 1970 whatever the port's epoch (older ESP32
  builds count from 2000): the offset is computed once from gmtime(0).
- wifi_connect() reuses a saved channel/BSSID (skips the scan, ~0.2 s instead
  of ~2 s) and an optional static IP (skips DHCP, ~1.7 s); the returned dict is
  what the caller keeps (RTC memory or flash) for the next wake.
- deepsleep() switches the radio off first: Wi-Fi left on draws mA, not uA.
"""
import time as _t

import machine
import network

_EPOCH = 946684800 if _t.gmtime(0)[0] == 2000 else 0
_wdt = None
_wlan = None
_rtc = machine.RTC()

_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "wdt",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}

ticks_ms = _t.ticks_ms
ticks_diff = _t.ticks_diff
sleep_ms = _t.sleep_ms


def time():
    return _t.time() + _EPOCH


def set_time(t):
    tm = _t.gmtime(int(t) - _EPOCH)
    # RTC.datetime: (year, month, day, weekday, hours, minutes, seconds, subseconds)
    _rtc.datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))


def wdt_enable(timeout_ms):
    global _wdt
    _wdt = machine.WDT(timeout=timeout_ms)


def wdt_feed():
    if _wdt is not None:
        _wdt.feed()


def reset_cause():
    return _CAUSES.get(machine.reset_cause(), "hard")


def reboot():
    machine.reset()


def deepsleep(ms):
    wifi_off()
    machine.deepsleep(ms)


def rtc_memory(data=None):
    if data is None:
        return _rtc.memory()
    _rtc.memory(data)


def wifi_connect(ssid, psk, saved=None, ip=None, timeout_ms=10000):
    """Associate; returns {"channel", "bssid"} to save, or None on failure."""
    global _wlan
    _wlan = network.WLAN(network.STA_IF)
    _wlan.active(True)
    if ip:  # (ip, mask, gateway, dns)
        _wlan.ifconfig(tuple(ip))
    bssid = None
    if saved and saved.get("bssid"):
        bssid = bytes(int(x, 16) for x in saved["bssid"].split(":"))
    try:
        if bssid:
            _wlan.connect(ssid, psk, bssid=bssid)
        else:
            _wlan.connect(ssid, psk)
    except OSError:
        wifi_off()
        return None
    t0 = _t.ticks_ms()
    while not _wlan.isconnected():
        if _t.ticks_diff(_t.ticks_ms(), t0) > timeout_ms:
            wifi_off()
            return None
        _t.sleep_ms(20)
    try:
        ch = _wlan.config("channel")
    except (OSError, ValueError):
        ch = None
    # the connected BSSID is not exposed by every build: keep the saved one
    return {"channel": ch, "bssid": saved.get("bssid") if saved else None}


def wifi_off():
    if _wlan is not None:
        try:
            _wlan.disconnect()
        except OSError:
            pass
        _wlan.active(False)


def rssi():
    if _wlan is None or not _wlan.isconnected():
        return None
    try:
        return _wlan.status("rssi")
    except (OSError, ValueError):
        return None


def ntp_sync(host="pool.ntp.org"):
    try:
        import ntptime
        ntptime.host = host
        ntptime.settime()
        return True
    except Exception:
        return False


# free_heap() is gc.mem_free itself: no function of its own on the heap
from gc import mem_free as free_heap


def machine_id():
    import binascii
    return binascii.hexlify(machine.unique_id()).decode()
