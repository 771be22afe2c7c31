"""Hardware abstraction, common part: picks hal.esp32 on the board and
hal.sim elsewhere (unix MicroPython on the host), and re-exports one API:

  ticks_ms(), ticks_diff(a, b)       monotonic milliseconds
  time() / set_time(t)               UTC seconds (float ok) from the RTC; set_time from NTP or /time
  wdt_enable(timeout_ms), wdt_feed() hardware watchdog
  reset_cause()                      "power_on" | "hard" | "wdt" | "deepsleep" | "soft"
  wifi_connect(ssid, psk, saved=None, ip=None) -> saved dict {"channel","bssid"} or None
  wifi_off(), rssi()                 radio off (before deep sleep!), signal dBm or None
  ntp_sync(host="pool.ntp.org")      True when the RTC was set from NTP
  sleep_ms(ms)                       blocking wait (simulated: advances the sim clock)
  deepsleep(ms), reboot()            never return
  rtc_memory(data=None)              bytes kept across deep sleep (<= 2 KB), read or write
  free_heap(), machine_id()          bytes of free GC heap, hex id of the chip

Role peripherals live in hal/lamp_*.py and hal/bin_*.py (their engineers).

The names are looked up in the chosen module by a module __getattr__
rather than copied here with `import *`: a copy is a second dict of ~40
entries on every device's heap (~0.7 KB on the 64-bit host), the lookup
costs one small call and no allocation. A name assigned on hal (a test's
stand-in) takes precedence, as with the copy. hal.sim's test controls
(set_inputs, set_speed... in hal/simctl.py) are reached last, after the
submodule look-up. Submodules (`from hal import
bin_sim`) are imported through it too, since a module __getattr__ is asked
before the import system looks for a submodule.
"""
import sys

if sys.platform == "esp32":
    from hal import esp32 as _m
else:
    from hal import sim as _m


def __getattr__(name):
    # the chosen module's own names: a look-up in its dict, so that hal.sim's
    # __getattr__ (its test controls, hal/simctl.py) is not asked for a submodule
    d = _m.__dict__
    if name in d:
        return d[name]
    # a submodule (`from hal import bin_sim` asks here first)
    try:
        __import__("hal." + name)
    except ImportError as e:
        if name not in str(e):
            raise  # the submodule exists but one of its imports failed
        # hal.sim's test controls (hal.set_inputs...) or AttributeError
        return getattr(_m, name)
    return sys.modules["hal." + name]
