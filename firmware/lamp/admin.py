"""Operator actions on the lamp controller (commands, resources, shell):
calendar and self-test. Loaded for each call through lamp.use() and dropped
afterwards, so that this code is not on the heap of a lamp that nobody
talks to. Lamp type and config changes are in lamp/settings.py (the same
way); the override, the most common action and the shell's, stays in
lamp/control.py.
"""
import hal
from micropython import const
from dev import store, log, clock
from fmt import cbor
from lamp import schedule

_CAL = const("data/calendar.cbor")  # as received: no re-encoding, one contiguous read
# The default calendar, {"id": "default", "default": "night", "programs": {"night":
# [{"at": "sunset", "level": 100}, {"at": "sunrise", "level": 0}]}}, as CBOR:
# 81 bytes instead of a dozen dicts, lists and strings on the heap.
_DEFAULT_CAL = const(b"\xa3hprograms\xa1enight\x82\xa2batfsunsetelevel\x18d\xa2batgsunriseelevel\x00"
                     b"bidgdefaultgdefaultenight")


def load(ctl):
    """The stored calendar, validated, at boot (lamp/setup.py): the last good
    copy if the file is torn, else the default."""
    for path in (_CAL, _CAL + ".bak"):
        data = store.read(path) if store.exists(path) else None
        if data is not None:
            try:
                return schedule.validate(cbor.loads(data))
            except ValueError as e:
                log.error("stored calendar %s invalid: %s" % (path, e))
    return schedule.validate(cbor.loads(_DEFAULT_CAL))


def set_calendar(ctl, raw, data=None):
    """Validate and install; ValueError(reason) keeps the old one.
    data: the same calendar as CBOR bytes when the caller has them."""
    cal = schedule.validate(raw)
    store.write(_CAL, data if data is not None else cbor.dumps(raw))
    ctl.cal = cal
    log.event("calendar %s installed" % cal[0])
    ctl.step()
    return cal[0]


def calendar_cbor(ctl):
    """The installed calendar as CBOR bytes (as received), or the default."""
    data = store.read(_CAL)
    if data is not None:
        try:
            if schedule.validate(cbor.loads(data))[0] == ctl.cal[0]:
                return data
        except ValueError:
            pass
    return _DEFAULT_CAL


def selftest(ctl, wait_ms=1500):
    """Relay click and power check (blocks ~2 s), clock, gateway."""
    hw, d, p = ctl.hw, ctl.dim, ctl.p
    hw.set_relay(False)
    hal.sleep_ms(wait_ms // 3)
    hw.power()  # restart the meter's averaging window
    hal.sleep_ms(wait_ms // 3)
    off = hw.power() or 0.0
    hw.set_duty(65535)
    hw.set_relay(True)
    hal.sleep_ms(wait_ms // 3)
    hw.power()
    hal.sleep_ms(wait_ms)
    on = hw.power() or 0.0
    hw.set_relay(d.relay)  # back to what the dimmer drives
    d._duty = -1
    d._write()
    on_w = ctl.faults.on_w
    exp = p["wattage"]
    r = {"relay": "ok" if off <= on_w < on else "FAIL (off %.1f W, on %.1f W)" % (off, on),
         "power": "ok %.1f W" % on if abs(on - exp) <= exp * p["tolerance"] + 1
         else "FAIL %.1f W, expected %s W" % (on, exp),
         "clock": (clock.source or "rtc") if clock.time_known() else "FAIL time unknown",
         "gateway": "registered" if ctl.net_ok() else "FAIL not registered"}
    log.event("selftest %s" % r)
    return r
