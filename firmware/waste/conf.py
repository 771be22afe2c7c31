"""Bin role settings: defaults, validation, and the bin command actions.

The settings live under the "bin" key of config.json. A change (from
config.json or a command) is validated as a whole before it replaces the old
settings, so a bad value is refused with the reason and the previous
settings stay in force: a bin must never end up measuring with a depth of
zero or sleeping for a negative time because of one typo at the gateway.
"""

DEFAULTS = {
    # geometry (metres)
    "depth_m": 1.0, "offset_m": 0.30, "blind_m": 0.25, "max_range_m": 4.5,
    # measurement
    "pings": 7, "min_valid": 3, "agree_m": 0.05,
    # thresholds
    "full_pct": 80, "fire_c": 60.0, "fire_rise_c": 5.0, "battery_low_v": 3.4,
    "emptied_drop_pct": 30,
    # duty cycle (seconds, %)
    "measure_s": 900, "heartbeat_s": 21600, "step_pct": 10,
    # radio: CoAP parameters for the wake window, and back-off when the
    # gateway is away (first retry, cap)
    "ack_timeout_ms": 2000, "max_retransmit": 2, "backoff_s": 900, "backoff_max_s": 14400,
    # outbox bound (reports kept while the gateway is away)
    "outbox": 256,
}

# key -> (low, high); ints where the default is an int
_RANGES = {
    "depth_m": (0.1, 5.0), "offset_m": (0.0, 2.0), "blind_m": (0.0, 1.0), "max_range_m": (0.5, 8.0),
    "pings": (3, 9), "min_valid": (1, 9), "agree_m": (0.005, 0.5),
    "full_pct": (10, 100), "fire_c": (30.0, 120.0), "fire_rise_c": (1.0, 50.0), "battery_low_v": (2.5, 4.5),
    "emptied_drop_pct": (5, 100),
    "measure_s": (60, 86400), "heartbeat_s": (300, 7 * 86400), "step_pct": (1, 100),
    "ack_timeout_ms": (100, 10000), "max_retransmit": (0, 4), "backoff_s": (60, 86400),
    "backoff_max_s": (60, 7 * 86400), "outbox": (8, 4096),
}

# command action -> keys it may change (docs/architecture.md "Commands")
ACTIONS = {
    "geometry": ("depth_m", "offset_m", "blind_m", "max_range_m"),
    "thresholds": ("full_pct", "fire_c", "fire_rise_c", "battery_low_v", "emptied_drop_pct"),
    "intervals": ("measure_s", "heartbeat_s", "step_pct"),
}


def check(new):
    """Reason (str) why the settings `new` are invalid, or None."""
    for k, v in new.items():
        r = _RANGES.get(k)
        if r is None:
            return "unknown key " + k
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return k + " must be a number"
        if isinstance(DEFAULTS[k], int) and not isinstance(v, int):
            return k + " must be an integer"
        if v < r[0] or v > r[1]:
            return "%s=%s out of range %s..%s" % (k, v, r[0], r[1])
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
