"""Operator actions on the lamp controller (commands, resources, shell):
override, calendar, lamp type, config, self-test. Imported on first use so
that their code is not on the heap of a lamp that nobody talks to.
"""
import hal
from dev import store, log, clock, config
from fmt import cbor
from lamp import schedule
from lamp.dimmer import curve_ok
from lamp.control import CAL, OVR, DEFAULT_CAL

# lamp type parameters (action lamp_type, resource lamp/type)
TYPE_KEYS = ("control", "wattage", "tolerance", "warmup_s", "min_level", "curve", "ramp_ms", "on_w",
             "debounce_s", "cycles_max", "cycle_window_s", "voltage", "default_level", "current_min",
             "current_max")
SCHEMA = {"control": ["PWM", "1-10V", "DALI", "switch"], "current_min": (float, 0, 100),
          "current_max": (float, 0, 100), "wattage": (float, 1, 2000),
          "tolerance": (float, 0.01, 1), "warmup_s": (int, 0, 1800), "min_level": (int, 0, 100),
          "curve": curve_ok, "ramp_ms": (int, 0, 60000), "on_w": (float, 0, 500),
          "debounce_s": (int, 0, 3600), "cycles_max": (int, 1, 100), "cycle_window_s": (int, 10, 86400),
          "voltage": (float, 90, 400), "default_level": (int, 1, 100), "lux_on": (float, 0, 100000),
          "lux_off": (float, 0, 100000), "tz_std": (int, -43200, 50400), "dst": (bool,),
          "save_s": (int, 60, 86400), "outbox": (int, 4, 512), "tick_ms": (int, 1, 10000),
          "pins": (dict,), "meter": (dict,), "port": (int, 0, 65535), "coap": (dict,),
          "link_s": (int, 1, 3600)}
config.SCHEMA["lamp"] = SCHEMA


def set_override(ctl, level, duration=0):
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
        raise ValueError("level must be an integer 0..100")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
        raise ValueError("duration must be seconds >= 0")
    t = int(hal.time())
    ctl.overrides = [[level, t, t + duration if duration else 0]]
    store.save_json(OVR, ctl.overrides)
    log.event("override %d%% %s" % (level, "for %ds" % duration if duration else "until resume"))
    ctl.step()


def resume(ctl):
    ctl.overrides = []
    store.save_json(OVR, ctl.overrides)
    ctl.step()


def set_calendar(ctl, raw, data=None):
    """Validate and install; ValueError(reason) keeps the old one.
    data: the same calendar as CBOR bytes when the caller has them."""
    cal = schedule.validate(raw)
    store.write(CAL, data if data is not None else cbor.dumps(raw))
    ctl.cal = cal
    log.event("calendar %s installed" % cal[0])
    ctl.step()
    return cal[0]


def calendar_cbor(ctl):
    """The installed calendar as CBOR bytes (as received), or the default."""
    data = store.read(CAL)
    if data is not None:
        try:
            if schedule.validate(cbor.loads(data))[0] == ctl.cal[0]:
                return data
        except ValueError:
            pass
    return cbor.dumps(DEFAULT_CAL)


def set_type(ctl, p):
    if not isinstance(p, dict):
        raise ValueError("lamp type must be a map")
    for k in p:
        if k not in TYPE_KEYS:
            raise ValueError("lamp type: unknown key %s" % k)
    return ctl.set_config({"lamp": p})


def set_config(ctl, changes):
    ctl.cfg = config.apply(ctl.cfg, changes)
    try:
        import app
        app.cfg = ctl.cfg
    except ImportError:
        pass
    p = ctl.p
    p.update(ctl.cfg.get("lamp") or {})
    d = ctl.dim
    d.ramp_ms, d.curve = p["ramp_ms"], p["curve"]
    d.min_level = 100 if p.get("control") == "switch" else p["min_level"]
    ctl.faults.set_params(p)
    return None


def lamp_type(ctl):
    p = ctl.p
    return {k: p[k] for k in TYPE_KEYS if k in p}


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
