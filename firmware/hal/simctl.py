"""Test and host controls of the simulated HAL (hal.sim), kept out of it.

Device code never needs these: a test, a virtual board or a bench drives the
simulated world with them. They live in this module so that their names and
code are not on the heap of a simulated lamp or bin (hal.sim is resident
there, and a name once interned stays for good). Old spellings keep working:
`hal.sim.set_speed(...)`, `hal.set_inputs(...)`, `sim.EXIT_DEEPSLEEP` reach
this module through hal.sim's module __getattr__, which imports it on first
use. The state is hal.sim's list `_s` (looked up on each call, so a host that
re-imports hal.sim for a fresh board drives the new one).
"""
import sys
from micropython import const

# exit statuses of deepsleep() and reboot() / a watchdog reset (hal.simstate's _EXIT_*)
EXIT_DEEPSLEEP = 3
EXIT_REBOOT = 4
RTC_EPOCH_2000 = 946684800  # what the RTC reads after power-on (hal.sim's _RTC_EPOCH_2000)
# documented physical durations (ms) spent on the simulated clock (hal.sim's _WIFI_*)
WIFI_SAVED_MS = 200  # association with saved channel/BSSID and static IP
WIFI_SCAN_MS = 1000  # extra: channel scan when no channel/BSSID is saved
WIFI_DHCP_MS = 1700  # extra: DHCP when no static IP is given

# indexes into hal.sim's _s (the same const() values as there)
_MS = const(0)
_REAL0 = const(1)
_SPEED = const(2)
_UTC0 = const(3)
_RADIO = const(9)
_INPUTS = const(14)


def _sim():
    return sys.modules["hal.sim"]


def set_speed(x):
    """0: the clock moves only by advance(); x > 0: also real time times x."""
    import time
    m = _sim()
    s = m._s
    s[_MS] = m.ticks_ms()
    s[_REAL0] = time.ticks_ms()
    s[_SPEED] = float(x)


def true_time():
    """What a perfect clock reads now (the simulated world's UTC)."""
    m = _sim()
    return m._s[_UTC0] + m.ticks_ms() / 1000


def set_true_time(t):
    m = _sim()
    m._s[_UTC0] = t - m.ticks_ms() / 1000


def set_inputs(**kw):
    _sim()._s[_INPUTS].update(kw)


def radio_on():
    return _sim()._s[_RADIO]
