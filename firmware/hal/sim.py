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
"""
import binascii
import gc
import json
import os
import sys
import time as _t

EXIT_DEEPSLEEP = 3
EXIT_REBOOT = 4
RTC_EPOCH_2000 = 946684800
RTC_MEMORY_MAX = 2048
# documented physical durations (ms) spent on the simulated clock
WIFI_SAVED_MS = 200  # association with saved channel/BSSID and static IP
WIFI_SCAN_MS = 1000  # extra: channel scan when no channel/BSSID is saved
WIFI_DHCP_MS = 1700  # extra: DHCP when no static IP is given
WIFI_FAIL_MS = 5000  # giving up on an absent access point

_state_file = os.getenv("ECLOR_SIM_RTC_FILE") or ".sim_rtc.json"
_speed = float(os.getenv("ECLOR_SIM_SPEED") or 0)
_ms = 0  # simulated ms at the real-time anchor
_real0 = _t.ticks_ms()
_utc0 = float(os.getenv("ECLOR_SIM_TIME") or _t.time())
_rtc0 = RTC_EPOCH_2000  # RTC reading at ticks 0
_mem = b""
_cause = "power_on"
_inputs = {}
_in_file = os.getenv("ECLOR_SIM_FILE")
_in_mtime = None
_in_checked = None
_wdt_ms = 0
_wdt_last = 0
_radio = False
_rssi_saved = None
on_deepsleep = None  # host hooks, see above
on_reboot = None


def _load_state():
    global _utc0, _rtc0, _mem, _cause
    try:
        with open(_state_file) as f:
            st = json.load(f)
        os.remove(_state_file)
    except (OSError, ValueError):
        return
    _utc0 = st["utc"]
    _rtc0 = st["rtc"]
    _mem = binascii.unhexlify(st["mem"]) if st.get("mem") else b""
    _cause = st["cause"]


def _save_state(cause, after_ms):
    t = ticks_ms() + after_ms
    st = {"utc": _utc0 + t / 1000, "rtc": _rtc0 + t / 1000, "mem": binascii.hexlify(_mem).decode(), "cause": cause}
    with open(_state_file, "w") as f:
        json.dump(st, f)


_load_state()


# --- clock -----------------------------------------------------------------

def ticks_ms():
    global _ms, _real0
    if _speed:
        now = _t.ticks_ms()
        d = _t.ticks_diff(now, _real0)
        if d > 3600000:  # re-anchor hourly: real ticks wrap (ticks_diff is exact below 2**29 ms)
            _ms += int(d * _speed)
            _real0 = now
            d = 0
        return _ms + int(d * _speed)
    return _ms


def ticks_diff(a, b):
    return a - b


def advance(ms):
    """Move the simulated clock forward (tests, documented physical delays)."""
    global _ms
    _ms += int(ms)


def set_speed(x):
    """0: the clock moves only by advance(); x > 0: also real time times x."""
    global _ms, _real0, _speed
    _ms = ticks_ms()
    _real0 = _t.ticks_ms()
    _speed = float(x)


def true_time():
    """What a perfect clock reads now (the simulated world's UTC)."""
    return _utc0 + ticks_ms() / 1000


def set_true_time(t):
    global _utc0
    _utc0 = t - ticks_ms() / 1000


def time():
    """The device's RTC, UTC seconds (2000-01-01 + uptime until set)."""
    return _rtc0 + ticks_ms() / 1000


def set_time(t):
    global _rtc0
    _rtc0 = t - ticks_ms() / 1000


def sleep_ms(ms):
    """Blocking wait: spends simulated time (really sleeps when following real time)."""
    if _speed:
        _t.sleep_ms(int(ms / _speed))
    else:
        advance(ms)


# --- inputs ----------------------------------------------------------------

def inputs():
    global _in_mtime, _in_checked
    if _in_file:
        now = _t.ticks_ms()
        if _in_checked is None or _t.ticks_diff(now, _in_checked) >= 100:
            _in_checked = now
            try:
                m = os.stat(_in_file)[8]
                if m != _in_mtime:
                    with open(_in_file) as f:
                        d = json.load(f)
                    if isinstance(d, dict):
                        _inputs.update(d)
                    _in_mtime = m
            except (OSError, ValueError):
                pass  # absent or half-written: keep the last values
    return _inputs


def set_inputs(**kw):
    _inputs.update(kw)


# --- watchdog, reset ---------------------------------------------------------

def wdt_enable(timeout_ms):
    global _wdt_ms, _wdt_last
    _wdt_ms = timeout_ms
    _wdt_last = _t.ticks_ms()


def wdt_feed():
    global _wdt_last
    now = _t.ticks_ms()
    if _wdt_ms and _t.ticks_diff(now, _wdt_last) > _wdt_ms:
        _save_state("wdt", 0)
        if on_reboot:
            on_reboot("wdt")
        sys.exit(EXIT_REBOOT)
    _wdt_last = now


def reset_cause():
    return _cause


def reboot():
    _save_state("soft", 0)
    if on_reboot:
        on_reboot("soft")
    sys.exit(EXIT_REBOOT)


def deepsleep(ms):
    wifi_off()
    _save_state("deepsleep", ms)
    if on_deepsleep:
        on_deepsleep(ms)
    sys.exit(EXIT_DEEPSLEEP)


def rtc_memory(data=None):
    global _mem
    if data is None:
        return _mem
    if len(data) > RTC_MEMORY_MAX:
        raise ValueError("rtc memory: at most %d bytes" % RTC_MEMORY_MAX)
    _mem = bytes(data)


# --- network -----------------------------------------------------------------

def wifi_connect(ssid, psk, saved=None, ip=None):
    """Simulated association; spends the documented time. Returns the saved
    parameters to pass next time, or None when the AP is absent (input wifi=False)."""
    global _radio
    _radio = True
    if not inputs().get("wifi", True):
        sleep_ms(WIFI_FAIL_MS)
        wifi_off()
        return None
    ms = WIFI_SAVED_MS
    if not saved:
        ms += WIFI_SCAN_MS
    if not ip:
        ms += WIFI_DHCP_MS
    sleep_ms(ms)
    return {"channel": 6, "bssid": "5e:00:00:00:00:01"}


def wifi_off():
    global _radio
    _radio = False


def radio_on():
    return _radio


def rssi():
    return inputs().get("rssi", -67) if _radio else None


def ntp_sync(host="pool.ntp.org"):
    if not (_radio and inputs().get("ntp", True)):
        return False
    sleep_ms(40)
    set_time(true_time())
    return True


# --- misc ----------------------------------------------------------------------

def free_heap():
    return gc.mem_free()


def machine_id():
    return os.getenv("ECLOR_SIM_ID") or "5e0000000001"
