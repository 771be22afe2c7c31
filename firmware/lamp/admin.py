"""Operator actions on the lamp controller (commands, resources, shell): the
override and resume, self-test, status, level, the log. Loaded for each call
through lamp.use() and dropped afterwards, so that this code is not on the
heap of a lamp that nobody talks to. Lamp type and config changes are in
lamp/settings.py, the calendar's validation and storage in
lamp/calcheck.py (the same way).
"""
import hal
from micropython import const
from dev import store

_OVR = const("data/override.json")  # read at boot by lamp/setup.py


def set_override(ctl, level, duration=0):
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
        raise ValueError("level must be an integer 0..100")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
        raise ValueError("duration must be seconds >= 0")
    t = int(hal.time())
    ctl.overrides = [[level, t, t + duration if duration else 0]]
    store.save_json(_OVR, ctl.overrides)
    from dev import log
    log.event("override %d%% for %d s" % (level, duration) if duration else "override %d%% until resume" % level)
    ctl.step(False)  # the level now, a due report at the next step


def resume(ctl):
    ctl.overrides = []
    store.save_json(_OVR, ctl.overrides)
    ctl.step(False)  # the level now, a due report at the next step


def log(ctl, n=20):
    # the module dev.log by another name here: this function is admin's log
    from dev import log as m
    return m.recent(n)


def status(ctl):
    d = ctl.dim
    e = ctl.energy
    return {"level": int(d.level + 0.5), "target": d.target, "relay": d.relay,
            "source": ctl.src, "power": ctl.power, "energy_wh": round(e.wh, 2),
            "hours": round(e.on_s / 3600, 2), "switch_on": e.switch_on,
            "faults": sorted(ctl.faults.active), "calendar": ctl.cal[0],
            "queued": len(ctl.outbox), "dropped": ctl.outbox.dropped,
            "mode": "safe" if ctl.safe else "normal"}


def _source(clock):
    # where the time came from: dev.clock's own record, else the lamp's
    # (lamp/app.py keeps what sync() answered: dev.clock is loaded on use)
    if clock.source:
        return clock.source
    import sys
    a = sys.modules.get("lamp.app")
    return a and a.source


def net_ok(ctl):
    reg = getattr(ctl, "reg", None)
    return bool(reg and reg.registered)


def level(ctl, x=None, duration=0):
    """eclor.level(50) overrides; eclor.level(None) resumes the schedule."""
    if x is None:
        resume(ctl)
    else:
        set_override(ctl, x, duration)
    return status(ctl)


def reboot(ctl):
    """dev/reboot and the reboot command: answered first, the reboot half a
    second later (its task keeps this module alive until then)."""
    import asyncio

    async def later():
        await asyncio.sleep_ms(500)
        ctl.energy.save(ctl.mono[0])
        hal.reboot()
    asyncio.create_task(later())


def selftest(ctl, wait_ms=1500):
    """Relay click and power check (blocks ~2 s), clock, gateway."""
    from dev import clock  # here only: an override or resume does not load it
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
    on_w = ctl.faults.on_w()
    exp = p["wattage"]
    r = {"relay": "ok" if off <= on_w < on else "FAIL (off %.1f W, on %.1f W)" % (off, on),
         "power": "ok %.1f W" % on if abs(on - exp) <= exp * p["tolerance"] + 1
         else "FAIL %.1f W, expected %s W" % (on, exp),
         "clock": (_source(clock) or "rtc") if clock.time_known() else "FAIL time unknown",
         "gateway": "registered" if net_ok(ctl) else "FAIL not registered"}
    from dev import log as m
    m.event("selftest %s" % r)
    return r
