"""Bin role settings: defaults, validation, and the bin command actions.

The settings live under the "bin" key of config.json. A change (from
config.json or a command) is validated as a whole before it replaces the old
settings, so a bad value is refused with the reason and the previous
settings stay in force: a bin must never end up measuring with a depth of
zero or sleeping for a negative time because of one typo at the gateway.
"""

# One row per setting: "key default low high", rows separated by "|"; a
# default written without a decimal point means the key takes integers only.
# A string rather than a dict of tuples: loaded from .mpy it costs ~0.7 KB of
# heap instead of ~3 KB, and the radio phase of a wake needs that RAM.
#   geometry (metres); measurement: pings per burst, echoes that must agree
#   within agree_m; thresholds; duty cycle (s, %); radio: CoAP parameters of
#   the wake window, back-off while the gateway is away (first wait, cap);
#   outbox bound (reports kept while the gateway is away).
TABLE = ("depth_m 1.0 0.1 5.0|offset_m 0.30 0.0 2.0|blind_m 0.25 0.0 1.0|max_range_m 4.5 0.5 8.0|"
         "pings 5 3 7|min_valid 3 1 9|agree_m 0.05 0.005 0.5|"
         "full_pct 80 10 100|fire_c 60.0 30.0 120.0|fire_rise_c 5.0 1.0 50.0|battery_low_v 3.4 2.5 4.5|"
         "emptied_drop_pct 30 5 100|"
         "measure_s 900 60 86400|heartbeat_s 21600 300 604800|step_pct 10 1 100|"
         "ack_timeout_ms 2000 100 10000|max_retransmit 2 0 4|backoff_s 900 60 86400|"
         "backoff_max_s 14400 60 604800|outbox 256 8 4096")


def _num(x):
    return float(x) if "." in x else int(x)


def row(key):
    """(default, low, high) of a setting, or None if there is no such key."""
    i = TABLE.find(key + " ")
    while i > 0 and TABLE[i - 1] != "|":
        i = TABLE.find(key + " ", i + 1)
    if i < 0:
        return None
    j = TABLE.find("|", i)
    f = TABLE[i:j if j > 0 else len(TABLE)].split()
    return _num(f[1]), _num(f[2]), _num(f[3])


def defaults():
    """A fresh dict of the default settings."""
    d = {}
    for r in TABLE.split("|"):
        f = r.split()
        d[f[0]] = _num(f[1])
    return d


def check(new):
    """Reason (str) why the settings `new` (whole, or lean: the keys it
    lacks hold their defaults) are invalid, or None."""
    for k, v in new.items():
        r = row(k) if isinstance(k, str) else None
        if r is None:
            return "unknown key " + k
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return k + " must be a number"
        if isinstance(r[0], int) and not isinstance(v, int):
            return k + " must be an integer"
        if v < r[1] or v > r[2]:
            return "%s=%s out of range %s..%s" % (k, v, r[1], r[2])
    if _v(new, "min_valid") > _v(new, "pings"):
        return "min_valid > pings"
    if _v(new, "offset_m") + _v(new, "depth_m") > _v(new, "max_range_m"):
        return "offset_m + depth_m beyond max_range_m"
    if _v(new, "heartbeat_s") < _v(new, "measure_s"):
        return "heartbeat_s < measure_s"
    if _v(new, "backoff_max_s") < _v(new, "backoff_s"):
        return "backoff_max_s < backoff_s"
    return None


def _v(s, key):
    """Setting key of s, whole or lean (its default when s lacks it)."""
    return s[key] if key in s else row(key)[0]


def merged(cur, changes):
    """cur updated with changes, or raise ValueError(reason); cur untouched.
    cur may be lean (waste/radio.py lean()): so is the result."""
    if not isinstance(changes, dict):
        raise ValueError("params must be a map")
    new = dict(cur)
    for k in changes:
        if not isinstance(k, str) or row(k) is None:
            raise ValueError("unknown key " + str(k))
        new[k] = changes[k]
    why = check(new)
    if why:
        raise ValueError(why)
    return new


def from_config(cfg):
    """Bin settings from a config dict: defaults + cfg["bin"]; bad -> (defaults, reason)."""
    sub = cfg.get("bin") if isinstance(cfg, dict) else None
    try:
        return merged(defaults(), sub or {}), None
    except ValueError as e:
        return defaults(), str(e)


def schema_rule(v):
    """dev.config schema rule for the "bin" section: ValueError(reason) if bad."""
    merged(defaults(), v)
