"""Lamp type and config changes (action lamp_type / config, resources
lamp/type and dev/config): the lamp section's schema for dev.config and its
application to the running controller. Loaded for each call through
lamp.use() and dropped afterwards, with dev.config.
"""
from micropython import const


def curve_ok(c):
    """ValueError unless c is a valid dimming curve (lamp/dimmer.py)."""
    if c in ("linear", "square"):
        return
    if not isinstance(c, list) or len(c) != 11:
        raise ValueError("curve must be linear, square or 11 duties (%) for 0,10..100 %")
    for v in c:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise ValueError("curve duties must be numbers 0..100")


# The lamp section's rules (dev/config.py's syntax) as one string,
# "|key type lo hi": f float, i int, b bool, d map. A dict of 27 tuples was
# 2.4 KB of this module's heap on the 64-bit port, at the lamp_type command,
# the one that needs the most heap; the string is 0.5 KB. control and curve
# below. The lamp type's keys (action lamp_type, resource lamp/type) are
# control, curve and the keys before "|#": no tuple of their names (0.3 KB).
_RULES = const("|wattage f 1 2000|tolerance f 0.01 1|warmup_s i 0 1800|min_level i 0 100|ramp_ms i 0 60000"
               "|on_w f 0 500|debounce_s i 0 3600|cycles_max i 1 100|cycle_window_s i 10 86400|voltage f 90 400"
               "|default_level i 1 100|current_min f 0 100|current_max f 0 100|#|lux_on f 0 100000"
               "|lux_off f 0 100000|tz_std i -43200 50400|save_s i 60 86400|outbox i 4 512|tick_ms i 1 10000"
               "|port i 0 65535|link_s i 1 3600|dst b|pins d|meter d|coap d|")


def _is_type(k):
    # a lamp type key: control, curve or a key of _RULES before "|#"
    if k == "control" or k == "curve":
        return True
    if not isinstance(k, str) or " " in k or "|" in k:
        return False
    return 0 <= _RULES.find("|" + k + " ") < _RULES.find("|#")


def _rule(k, check):
    """The dev.config rule of lamp key k, None when unknown."""
    if k == "control":
        return ["PWM", "1-10V", "DALI", "switch"]
    if k == "curve":
        return curve_ok
    return check.row(_RULES, k)


def lamp_rule(v):
    """dev.config's rule for the "lamp" section: each key by its rule."""
    from dev import check  # loaded by dev.config for this validation
    if not isinstance(v, dict):
        raise ValueError("lamp: must be a map")
    for k in v:
        r = _rule(k, check)
        check.validate({k: v[k]}, {k: r} if r is not None else {}, "lamp.")


def set_type(ctl, p):
    if not isinstance(p, dict):
        raise ValueError("lamp type must be a map")
    for k in p:
        if not _is_type(k):
            raise ValueError("lamp type: unknown key %s" % k)
    # the lamp section alone changes: dev.check checks and writes it without
    # dev.config (1 KB less at this command, the one that sets the lamp's
    # smallest heap); loaded for this call, as dev.config in set_config
    import sys
    had = "dev.check" in sys.modules
    from dev import check
    try:
        ctl.cfg = check.apply_roles(ctl.cfg, {"lamp": p}, {"lamp": lamp_rule})
    finally:
        if not had and check.__file__.endswith(".mpy"):
            from dev import forget
            forget("dev.check")
    return _applied(ctl)


def set_config(ctl, changes):
    # the config schema (dev.config) loads for this call and goes with it,
    # as after the boot validation (app.py), unless it was already loaded
    import sys
    had = "dev.config" in sys.modules
    from dev import config
    before = config.SCHEMA.get("lamp")
    config.SCHEMA["lamp"] = lamp_rule
    try:
        ctl.cfg = config.apply(ctl.cfg, changes)
    finally:
        if not had and config.__file__.endswith(".mpy"):
            from dev import forget
            forget("dev.config")
        elif before is None:
            # dev.config stays: its SCHEMA must not keep lamp_rule, i.e. this
            # module (dropped by lamp.use()) alive through its globals
            config.SCHEMA.pop("lamp", None)
        else:
            config.SCHEMA["lamp"] = before
    return _applied(ctl)


def _applied(ctl):
    # the new config to the running lamp
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
    # lamp/faults.py reads p at each check
    return None


def lamp_type(ctl):
    p = ctl.p
    r = {}
    for k in p:  # a loop: a comprehension is one more function in RAM
        if _is_type(k):
            r[k] = p[k]
    return r
