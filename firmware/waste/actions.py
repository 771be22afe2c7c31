"""Bin command actions (docs/architecture.md "Commands"), applied through
dev.commands (idempotent by id, expiry, reasons). Loaded by waste/cycle.py
only when an answer carries commands (with dev.commands and waste.conf),
between two CoAP sessions of the wake window, and dropped again before the
next: most wakes get none, and the radio phase is the wake's heap peak.

geometry / thresholds / intervals take only their own keys; the new settings
are validated as a whole (waste/conf.py) and written to config.json
(atomic, old file kept); `config` goes through dev.config
(waste/setconf.py); a refusal raises ValueError(reason) and leaves both
the running settings and config.json untouched.
"""
from dev.commands import Commands
from waste import conf

# action -> the settings it may change (docs/architecture.md "Commands")
KEYS = {
    "geometry": ("depth_m", "offset_m", "blind_m", "max_range_m"),
    "thresholds": ("full_pct", "fire_c", "fire_rise_c", "battery_low_v", "emptied_drop_pct"),
    "intervals": ("measure_s", "heartbeat_s", "step_pct"),
}


# the cycle the commands apply to (set by run(); the module is dropped
# after it): plain functions as handlers rather than the bound methods of
# an object, which cost a class, an instance and one object per handler
# while the command phase (a co-peak of the wake's heap) runs
_c = None


def _settings(action, p):
    keys = KEYS[action]
    if not p:
        raise ValueError(action + ": no parameters")
    for k in p:
        if k not in keys:
            raise ValueError("%s: unknown parameter %s" % (action, k))
    c = _c
    # c.s holds the lean settings of the radio phase (waste/radio.py
    # lean()): merged() checks them with the defaults of the keys they
    # lack, and the new ones are lean too (every key p sets goes into the
    # config's bin section below)
    new = conf.merged(c.s, p)     # ValueError(reason): nothing changed
    # only the bin section changes and it was just validated whole, so
    # write config.json directly (atomic, dev.store) without loading
    # dev.config into the radio phase's heap
    from dev import store
    cfg = dict(c.cfg)
    b = dict(cfg.get("bin") or {})
    b.update(p)
    cfg["bin"] = b
    store.save_json("config.json", cfg)
    c.cfg = cfg
    c.s = new
    return p


def geometry(p):
    return _settings("geometry", p)


def thresholds(p):
    return _settings("thresholds", p)


def intervals(p):
    return _settings("intervals", p)


def config(p):
    from waste.setconf import set_config
    set_config(_c, p)


def report(p):
    _c.st["force"] = 1
    return "queued"


def reboot(p):
    _c.reboot = True
    return "rebooting"


def run(c, answers):
    """Parse the commands of the answers [(payload, content-format)] and
    apply them for cycle c; the results as the CBOR payload for /cr, or
    None when there was no command."""
    global _c
    from dev.commands import parse
    cmds = []
    for payload, ct in answers:
        try:
            cmds += parse(payload, ct)
        except ValueError as e:
            cmds.append(str(e))   # answered "failed: bad command" without an id
    if not cmds:
        return None
    _c = c
    h = Commands({"geometry": geometry, "thresholds": thresholds, "intervals": intervals,
                  "config": config, "report": report, "reboot": reboot})
    from fmt import cbor
    return cbor.dumps([h.apply(x) for x in cmds])
