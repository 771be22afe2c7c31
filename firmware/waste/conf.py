"""Bin role settings: defaults, validation, and the bin command actions.

The settings live under the "bin" key of config.json. A change (from
config.json or a command) is validated as a whole before it replaces the old
settings, so a bad value is refused with the reason and the previous
settings stay in force: a bin must never end up measuring with a depth of
zero or sleeping for a negative time because of one typo at the gateway.
"""

# key: (default, low, high); a key whose default is an int takes ints only.
# One table rather than a defaults dict and a ranges dict: on a board every
# dict and key loaded from .mpy lives in the RAM the radio phase needs.
TABLE = {
    # geometry (metres)
    "depth_m": (1.0, 0.1, 5.0), "offset_m": (0.30, 0.0, 2.0), "blind_m": (0.25, 0.0, 1.0),
    "max_range_m": (4.5, 0.5, 8.0),
    # measurement: pings per burst, echoes that must agree, within agree_m
    "pings": (7, 3, 9), "min_valid": (3, 1, 9), "agree_m": (0.05, 0.005, 0.5),
    # thresholds
    "full_pct": (80, 10, 100), "fire_c": (60.0, 30.0, 120.0), "fire_rise_c": (5.0, 1.0, 50.0),
    "battery_low_v": (3.4, 2.5, 4.5), "emptied_drop_pct": (30, 5, 100),
    # duty cycle (seconds, %)
    "measure_s": (900, 60, 86400), "heartbeat_s": (21600, 300, 604800), "step_pct": (10, 1, 100),
    # radio: CoAP parameters of the wake window; back-off while the gateway
    # is away (first wait, cap)
    "ack_timeout_ms": (2000, 100, 10000), "max_retransmit": (2, 0, 4),
    "backoff_s": (900, 60, 86400), "backoff_max_s": (14400, 60, 604800),
    # outbox bound: reports kept while the gateway is away
    "outbox": (256, 8, 4096),
}
DEFAULTS = {}
for _k in TABLE:
    DEFAULTS[_k] = TABLE[_k][0]

# command action -> keys it may change (docs/architecture.md "Commands")
ACTIONS = {
    "geometry": ("depth_m", "offset_m", "blind_m", "max_range_m"),
    "thresholds": ("full_pct", "fire_c", "fire_rise_c", "battery_low_v", "emptied_drop_pct"),
    "intervals": ("measure_s", "heartbeat_s", "step_pct"),
}


def check(new):
    """Reason (str) why the settings `new` are invalid, or None."""
    for k, v in new.items():
        r = TABLE.get(k)
        if r is None:
            return "unknown key " + k
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return k + " must be a number"
        if isinstance(r[0], int) and not isinstance(v, int):
            return k + " must be an integer"
        if v < r[1] or v > r[2]:
            return "%s=%s out of range %s..%s" % (k, v, r[1], r[2])
    if new["min_valid"] > new["pings"]:
        return "min_valid > pings"
    if new["offset_m"] + new["depth_m"] > new["max_range_m"]:
        return "offset_m + depth_m beyond max_range_m"
    if new["heartbeat_s"] < new["measure_s"]:
        return "heartbeat_s < measure_s"
    if new["backoff_max_s"] < new["backoff_s"]:
        return "backoff_max_s < backoff_s"
    return None


def merged(cur, changes):
    """cur updated with changes, or raise ValueError(reason); cur untouched."""
    if not isinstance(changes, dict):
        raise ValueError("params must be a map")
    new = dict(cur)
    for k in changes:
        if k not in DEFAULTS:
            raise ValueError("unknown key " + str(k))
        new[k] = changes[k]
    why = check(new)
    if why:
        raise ValueError(why)
    return new


def from_config(cfg):
    """Bin settings from a config dict: defaults + cfg["bin"]; bad -> (DEFAULTS, reason)."""
    sub = cfg.get("bin") if isinstance(cfg, dict) else None
    try:
        return merged(DEFAULTS, sub or {}), None
    except ValueError as e:
        return dict(DEFAULTS), str(e)


def schema_rule(v):
    """dev.config schema rule for the "bin" section: ValueError(reason) if bad."""
    merged(DEFAULTS, v)
