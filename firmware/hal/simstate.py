"""The end of a simulated boot (hal.sim): deep sleep, reboot, watchdog reset.

hal.sim calls end() from deepsleep(), reboot() and wdt_feed(). It saves the
board's state for the next process in the file ECLOR_SIM_RTC_FILE (the true
time and the RTC moved on by the sleep, RTC memory, the reset cause; hal.sim
reads it back at import and removes it), then calls the host's hook
hal.sim.on_deepsleep(ms) / on_reboot(cause) if one is set (it must not
return) or exits the process with EXIT_DEEPSLEEP (3) / EXIT_REBOOT (4).

A module of its own, loaded only at that moment: its code and json/binascii
are not on the heap of a running board (hal.sim is resident there, and the
benches measure the firmware with it).
"""
import sys
import binascii
import json
from micropython import const

# hal.sim's indexes into its state list _s, and its exit statuses
_UTC0 = const(3)
_RTC0 = const(4)
_MEM = const(5)
_STATE = const(13)
_EXIT_DEEPSLEEP = const(3)
_EXIT_REBOOT = const(4)


def end(g, cause, ms):
    """g: hal.sim's globals (its state and the hooks a host set there)."""
    s = g["_s"]
    t = g["ticks_ms"]() + ms
    st = {"utc": s[_UTC0] + t / 1000, "rtc": s[_RTC0] + t / 1000, "mem": binascii.hexlify(s[_MEM]).decode(),
          "cause": cause}
    with open(s[_STATE], "wb") as f:  # "wb" as dev.store: one name less than "w"
        json.dump(st, f)
    # the host's hook on_deepsleep / on_reboot, if it set one: looked up by a
    # built string, so that their names are not interned by a run without one
    sleep = cause == "deepsleep"
    f = g.get("on_" + ("deepsleep" if sleep else "reboot"))
    if f:
        f(ms if sleep else cause)
    sys.exit(_EXIT_DEEPSLEEP if sleep else _EXIT_REBOOT)
