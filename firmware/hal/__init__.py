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
"""
import sys

if sys.platform == "esp32":
    from hal.esp32 import *  # noqa: F401,F403
else:
    from hal.sim import *  # noqa: F401,F403
