"""Lamp type and config changes (action lamp_type / config, resources
lamp/type and dev/config): the lamp section's schema for dev.config and its
application to the running controller. Loaded for each call through
lamp.use() and dropped afterwards, with dev.config.
"""


def curve_ok(c):
    """ValueError unless c is a valid dimming curve (lamp/dimmer.py)."""
    if c in ("linear", "square"):
        return
    if not isinstance(c, list) or len(c) != 11:
        raise ValueError("curve must be linear, square or 11 duties (%) for 0,10..100 %")
    for v in c:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise ValueError("curve duties must be numbers 0..100")


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


def set_type(ctl, p):
    if not isinstance(p, dict):
        raise ValueError("lamp type must be a map")
    for k in p:
        if k not in TYPE_KEYS:
            raise ValueError("lamp type: unknown key %s" % k)
    return ctl.set_config({"lamp": p})


def set_config(ctl, changes):
    # the config schema (dev.config) loads for this call and goes with it,
    # as after the boot validation (app.py), unless it was already loaded
    import sys
    had = "dev.config" in sys.modules
    from dev import config
    config.SCHEMA["lamp"] = SCHEMA
    try:
        ctl.cfg = config.apply(ctl.cfg, changes)
    finally:
        if not had and config.__file__.endswith(".mpy"):
            sys.modules.pop("dev.config", None)
            sys.modules["dev"].__dict__.pop("config", None)
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
