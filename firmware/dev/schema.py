"""Config schema and its checker, loaded only while a config is validated.

dev.config imports this module for one call (load at boot, validate, apply
for a config command or a shell change) and forgets it right after
(dev.forget): the rules, the defaults and the code are one-shot work, kept
off the heap the rest of the time (~4 KB on the 64-bit host). See dev/config.py for the rule
syntax; role sections come from dev.config.SCHEMA (kept resident there,
since the roles register them once).
"""
import json
from dev import store


def _ip(v):
    # static IP for hal.wifi_connect: [ip, netmask, gateway, dns]
    if not isinstance(v, list) or len(v) != 4:
        raise ValueError("ip: must be [ip, netmask, gateway, dns]")
    for a in v:
        if not isinstance(a, str) or not 7 <= len(a) <= 15 or a.count(".") != 3:
            raise ValueError("ip: %r is not an IPv4 address" % (a,))


BASE = {
    "ep": (str, 1, 63),
    "role": ["lamp", "bin"],
    "gateway": {"host": (str, 1, 253), "port": (int, 1, 65535)},
    "zone": (str, 0, 63),
    "commune": (str, 0, 63),
    "lat": (float, -90, 90),
    "lon": (float, -180, 180),
    "report_s": (int, 10, 86400),
    "lt": (int, 60, 604800),
    "ntp": (str, 0, 253),
    "wdt_ms": (int, 0, 120000),
    "ip": _ip,
    "board": (str, 0, 63),
    "lamp": (dict,),
    "bin": (dict,),
}
REQUIRED = ("ep", "role", "gateway")
DEFAULTS = {"report_s": 900, "lt": 3600, "ntp": "pool.ntp.org", "wdt_ms": 60000}


def _check(rule, v, key):
    if isinstance(rule, dict):
        if not isinstance(v, dict):
            raise ValueError("%s: must be a map" % key)
        validate(v, rule, key + ".")
        return
    if isinstance(rule, list):
        if type(v) is not type(rule[0]) or v not in rule:
            raise ValueError("%s: must be one of %s" % (key, ", ".join([str(x) for x in rule])))
        return
    if not isinstance(rule, tuple):  # a callable rule
        rule(v)
        return
    t = rule[0]
    if t is bool:
        if v is not True and v is not False:
            raise ValueError("%s: must be true or false" % key)
        return
    if t is float:
        ok = isinstance(v, (int, float)) and v is not True and v is not False
    elif t is int:
        ok = isinstance(v, int) and v is not True and v is not False
    else:
        ok = isinstance(v, t)
    if not ok:
        raise ValueError("%s: must be %s" % (key, "an integer" if t is int else "a number" if t is float else
                                             "text" if t is str else "a map" if t is dict else
                                             "a list" if t is list else "valid"))
    if len(rule) == 3:
        x = len(v) if t is str else v
        if not (rule[1] <= x <= rule[2]):
            raise ValueError("%s: %s out of range %s..%s" % (key, "length" if t is str else "value",
                                                            rule[1], rule[2]))


def validate(cfg, schema=None, prefix="", roles=None):
    """ValueError("key: reason") unless cfg fits schema (None: the whole
    config, i.e. BASE with the rules in roles over it, REQUIRED keys present)."""
    if not isinstance(cfg, dict):
        raise ValueError("config must be a map")
    for k in cfg:
        if schema is not None:
            rule = schema.get(k)
        else:
            rule = roles.get(k)
            if rule is None:
                rule = BASE.get(k)
        if rule is None:
            raise ValueError("%s%s: unknown key" % (prefix, k))
        _check(rule, cfg[k], prefix + str(k))
    if schema is None:
        for k in REQUIRED:
            if k not in cfg:
                raise ValueError("%s: missing" % k)


def merge(cur, changes):
    """A new dict: cur with changes applied (nested dicts merged, None deletes)."""
    out = dict(cur)
    for k in changes:
        v = changes[k]
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load(path, roles):
    """dev.config.load()"""
    last = "no config file"
    for p in (path, path + ".bak"):
        cfg = store.load_json(p) if store.exists(p) else None
        if cfg is None:
            continue
        try:
            cfg = merge(DEFAULTS, cfg)
            validate(cfg, None, "", roles)
            return cfg
        except ValueError as e:
            last = "%s: %s" % (p, e)
    raise ValueError(last)


def apply(cur, changes, path, roles):
    """dev.config.apply()"""
    if not isinstance(changes, dict):
        raise ValueError("config changes must be a map")
    new = merge(DEFAULTS, merge(cur, changes))  # a deleted key falls back to its default
    validate(new, None, "", roles)
    text = json.dumps(new)
    try:
        same = json.loads(text) == new
    except ValueError:
        same = False
    if not same:  # bytes, non-text keys, NaN in a role section: would not load back as written
        raise ValueError("config: values must be JSON (text, numbers, true/false, lists, maps with text keys)")
    store.write(path, text)
    return new
