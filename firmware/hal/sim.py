"""Simulated common HAL for unix MicroPython: tests and virtual boards.

Clock. A simulated monotonic clock `ticks_ms()` moves only by `advance(ms)`
and by what takes physical time on a board (`sleep_ms`, Wi-Fi association,
see the *_MS constants) -- unless env ECLOR_SIM_SPEED=x (x > 0) makes it
also follow real time scaled by x (a virtual board at 60 runs an hour a
minute). `set_speed()` changes it at run time.

The "true" UTC is ECLOR_SIM_TIME (UTC seconds; default the host clock) plus
the ticks. The device's RTC is separate, like a real board's: after power-on
it reads 2000-01-01 (so "time known" is false) until `set_time()` (NTP or the
gateway's /time); `ntp_sync()` copies the true time when the simulated
network allows it (input "ntp", default true; "wifi", default true).

Deep sleep and reboot end the process: `deepsleep(ms)` exits with status
EXIT_DEEPSLEEP (3), `reboot()` and a watchdog reset with EXIT_REBOOT (4).
Before exiting they save the RTC, the true time (plus the sleep) and RTC
memory to the file ECLOR_SIM_RTC_FILE (default ".sim_rtc.json" in the cwd,
i.e. the board's flash dir); the next process reads it back, removes it, and
reports reset_cause() "deepsleep", "soft" or "wdt". No file: "power_on" with
the RTC lost. So a test or virtual board runs each wake as a fresh process.

Inputs. `inputs()` is a dict of simulated sensor values the roles read
(lamp: power, presence, light; bin: distance, temperature, tilt, battery;
common: wifi, ntp, rssi). Tests set them with `set_inputs(k=v)`; a virtual
board writes them to the JSON file named by ECLOR_SIM_FILE, re-read when its
mtime changes (checked at most every 100 ms of real time).

The watchdog is checked against real time in wdt_feed() (it guards against
a stuck CPU, which simulated time cannot show).

Several boards in one process (tools/fleet/binhost.py). All the state above
is module globals, read at import: one board per process. A host running
many bins' wakes one after the other in one process gives each wake a fresh
board the way a new process gets one: with the cwd in the bin's flash dir
and ECLOR_SIM_* set for it (os.putenv), it drops hal and hal.sim (and the
firmware modules) from sys.modules and imports them again -- the module init
above is the reset. It then sets the hooks `on_deepsleep = f(ms)` and
`on_reboot = f(cause)`: deepsleep(), reboot() ("soft") and a watchdog reset
("wdt") save the state file as usual, then call the hook instead of exiting
the process. The hook must not return: it raises an exception derived from
BaseException (app.main() catches Exception) that the host catches; if it
returns, the process exits as without a hook. Default None: unchanged.
(Nothing more here: the bin's transmitting wake has no heap to spare, and
every byte of this module's code is on it.)

Memory: this module is resident on both roles' heaps (tests and benches
measure the firmware with it), so its state is one list indexed by const()
names instead of a dozen globals (each global is a dict slot plus an
interned name), its constants are private const(), and what runs once per
process is not resident: the state file is read at import by a function
deleted after its one call (its code freed with the module's top-level
code), and written at the end (deep sleep, reboot, watchdog) by
hal/simstate.py, loaded for that moment -- json and binascii only there.
What only tests and hosts use -- set_speed, true_time, set_true_time,
set_inputs, radio_on, the public constants EXIT_DEEPSLEEP, EXIT_REBOOT,
RTC_EPOCH_2000, WIFI_*_MS -- is in hal/simctl.py, reached by the same names through this
module's __getattr__ (loaded on first use: never on a device run). The
hooks on_deepsleep / on_reboot are not defined here either: a host sets
them, hal/simstate.py looks them up in this module's dict by a built string
(their names are not interned by a run that sets none).
"""
import os
import time as _t
from micropython import const

# public values in hal/simctl.py (RTC_EPOCH_2000... same numbers); the exit
# statuses are hal/simstate.py's
_RTC_EPOCH_2000 = const(946684800)
_RTC_MEMORY_MAX = const(2048)
# documented physical durations (ms) spent on the simulated clock
_WIFI_SAVED_MS = const(200)  # association with saved channel/BSSID and static IP
_WIFI_SCAN_MS = const(1000)  # extra: channel scan when no channel/BSSID is saved
_WIFI_DHCP_MS = const(1700)  # extra: DHCP when no static IP is given
_WIFI_FAIL_MS = const(5000)  # giving up on an absent access point

# the board's state, _s[index] (hal/simctl.py uses the same indexes)
_MS = const(0)  # simulated ms at the real-time anchor
_REAL0 = const(1)  # real ticks_ms() at that anchor
_SPEED = const(2)  # simulated ms per real ms (0: the clock moves only by advance)
_UTC0 = const(3)  # true UTC at simulated ticks 0
_RTC0 = const(4)  # RTC reading at simulated ticks 0
_MEM = const(5)  # RTC memory
_CAUSE = const(6)  # reset cause of this boot
_WDT_MS = const(7)  # watchdog timeout (0: off)
_WDT_LAST = const(8)  # real ticks_ms() of the last feed
_RADIO = const(9)
_IN_FILE = const(10)  # ECLOR_SIM_FILE
_IN_MTIME = const(11)
_IN_CHECKED = const(12)  # real ticks_ms() of the last mtime check
_STATE = const(13)  # ECLOR_SIM_RTC_FILE
_INPUTS = const(14)  # the dict inputs() returns
_s = [0, _t.ticks_ms(), float(os.getenv("ECLOR_SIM_SPEED") or 0), float(os.getenv("ECLOR_SIM_TIME") or _t.time()),
      _RTC_EPOCH_2000, b"", "power_on", 0, 0, False, os.getenv("ECLOR_SIM_FILE"), None, None,
      os.getenv("ECLOR_SIM_RTC_FILE") or ".sim_rtc.json", {}]
# no on_deepsleep / on_reboot globals: host hooks, see above and hal/simstate.py


def __getattr__(name):
    # test and host controls (set_speed, set_inputs, EXIT_DEEPSLEEP...): hal/simctl.py
    from hal import simctl
    return getattr(simctl, name)


# --- clock -----------------------------------------------------------------

def ticks_ms():
    s = _s
    if s[_SPEED]:
        now = _t.ticks_ms()
        d = _t.ticks_diff(now, s[_REAL0])
        if d > 3600000:  # re-anchor hourly: real ticks wrap (ticks_diff is exact below 2**29 ms)
            s[_MS] += int(d * s[_SPEED])
            s[_REAL0] = now
            d = 0
        return s[_MS] + int(d * s[_SPEED])
    return s[_MS]


# the simulated ticks never wrap: time.ticks_diff is their exact difference
# (below 2**61 ms on a 64-bit host), as hal.esp32's; no function of our own
ticks_diff = _t.ticks_diff


def advance(ms):
    """Move the simulated clock forward (tests, documented physical delays)."""
    _s[_MS] += int(ms)


def time():
    """The device's RTC, UTC seconds (2000-01-01 + uptime until set)."""
    return _s[_RTC0] + ticks_ms() / 1000


def set_time(t):
    _s[_RTC0] = t - ticks_ms() / 1000


def sleep_ms(ms):
    """Blocking wait: spends simulated time (really sleeps when following real time)."""
    if _s[_SPEED]:
        _t.sleep_ms(int(ms / _s[_SPEED]))
    else:
        advance(ms)


# --- inputs ----------------------------------------------------------------

def inputs():
    s = _s
    if s[_IN_FILE]:
        now = _t.ticks_ms()
        if s[_IN_CHECKED] is None or _t.ticks_diff(now, s[_IN_CHECKED]) >= 100:
            s[_IN_CHECKED] = now
            try:
                m = os.stat(s[_IN_FILE])[8]
                if m != s[_IN_MTIME]:
                    import json
                    with open(s[_IN_FILE]) as f:
                        d = json.load(f)
                    if isinstance(d, dict):
                        s[_INPUTS].update(d)
                    s[_IN_MTIME] = m
            except (OSError, ValueError):
                pass  # absent or half-written: keep the last values
    return s[_INPUTS]


# --- watchdog, reset ---------------------------------------------------------

def wdt_enable(ms):  # (timeout_ms in hal.esp32; the callers pass it by position)
    _s[_WDT_MS] = ms
    _s[_WDT_LAST] = _t.ticks_ms()


def wdt_feed():
    now = _t.ticks_ms()
    if _s[_WDT_MS] and _t.ticks_diff(now, _s[_WDT_LAST]) > _s[_WDT_MS]:
        reboot("wdt")
    _s[_WDT_LAST] = now


def reset_cause():
    return _s[_CAUSE]


def reboot(cause="soft", ms=0):
    # the end of every simulated boot -- reboot() itself, deepsleep(ms) and a
    # watchdog reset call it with their cause (one function, not one each):
    # hal/simstate.py writes the state file and ends the process (or calls
    # the host's hook). Its code (json, binascii) is loaded only at that
    # moment, never resident on a running board
    from hal import simstate
    simstate.end(globals(), cause, ms)


def deepsleep(ms):
    wifi_off()
    reboot("deepsleep", ms)


def rtc_memory(data=None):
    if data is None:
        return _s[_MEM]
    if len(data) > _RTC_MEMORY_MAX:
        raise ValueError("rtc memory: at most %d bytes" % _RTC_MEMORY_MAX)
    _s[_MEM] = bytes(data)


# --- network -----------------------------------------------------------------

def wifi_connect(ssid, psk, saved=None, ip=None):
    """Simulated association; spends the documented time. Returns the saved
    parameters to pass next time, or None when the AP is absent (input wifi=False)."""
    _s[_RADIO] = True
    if not inputs().get("wifi", True):
        sleep_ms(_WIFI_FAIL_MS)
        wifi_off()
        return None
    ms = _WIFI_SAVED_MS
    if not saved:
        ms += _WIFI_SCAN_MS
    if not ip:
        ms += _WIFI_DHCP_MS
    sleep_ms(ms)
    return {"channel": 6, "bssid": "5e:00:00:00:00:01"}


def wifi_off():
    _s[_RADIO] = False


def rssi():
    return inputs().get("rssi", -67) if _s[_RADIO] else None


def ntp_sync(host="pool.ntp.org"):
    if not (_s[_RADIO] and inputs().get("ntp", True)):
        return False
    sleep_ms(40)
    set_time(_s[_UTC0] + ticks_ms() / 1000)  # the true time (simctl.true_time())
    return True


# --- misc ----------------------------------------------------------------------

# free_heap() is gc.mem_free itself: no function of its own on the heap
from gc import mem_free as free_heap


def machine_id():
    return os.getenv("ECLOR_SIM_ID") or "5e0000000001"


def _load():
    # the state a deep sleep / reboot saved (hal/simstate.py), read and
    # removed (a crash later is a power-on). Called once below and deleted:
    # its code is freed with the module's top-level code after the import
    import json
    import binascii
    s = _s
    try:
        with open(s[_STATE]) as f:
            st = json.load(f)
        os.remove(s[_STATE])
    except (OSError, ValueError):
        return
    s[_UTC0] = st["utc"]
    s[_RTC0] = st["rtc"]
    s[_MEM] = binascii.unhexlify(st["mem"]) if st.get("mem") else b""
    s[_CAUSE] = st["cause"]


_load()
del _load
