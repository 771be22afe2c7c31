"""Device configuration: load, validate against a schema, apply changes.

config.json is written by `eclor provision` (docs/architecture.md); secrets
(Wi-Fi ssid/psk) are in secrets.json, kept apart so that `eclor.config()`
and reports never show them.

Schema: a dict key -> rule, where a rule is
  (int, lo, hi)      integer in [lo, hi]
  (float, lo, hi)    number (int accepted) in [lo, hi]
  (str, lo, hi)      text of length lo..hi
  (bool,)            true/false
  ["a", "b"]         one of these values
  {...}              a nested dict checked with that schema
  (dict,)            any dict (a role section before the role extends it)
  callable           f(value) raising ValueError(reason)
Unknown keys are refused (a typo in a command must not be silently ignored).
Keys listed in REQUIRED must be present after defaults are merged.

Roles add their section: `config.SCHEMA["lamp"] = {...}` (or "bin") before
calling apply(); the base schema accepts any dict there until they do.

apply(cur, changes) merges the changes (nested dicts merged key by key),
validates the whole result and only then writes it (dev.store: atomic, the
old file kept as .bak). On error it raises ValueError("key: reason") and
neither `cur` nor the file changes.
"""
import json
from dev import store

PATH = "config.json"
SECRETS = "secrets.json"

def _ip(v):
    # static IP for hal.wifi_connect: [ip, netmask, gateway, dns]
    if not isinstance(v, list) or len(v) != 4:
        raise ValueError("ip: must be [ip, netmask, gateway, dns]")
    for a in v:
        if not isinstance(a, str) or not 7 <= len(a) <= 15 or a.count(".") != 3:
            raise ValueError("ip: %r is not an IPv4 address" % (a,))


SCHEMA = {
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
    if callable(rule) and not isinstance(rule, (tuple, list, dict)):
        rule(v)
        return
    if isinstance(rule, dict):
        if not isinstance(v, dict):
            raise ValueError("%s: must be a map" % key)
        validate(v, rule, key + ".")
        return
    if isinstance(rule, list):
        if type(v) is not type(rule[0]) or v not in rule:
            raise ValueError("%s: must be one of %s" % (key, ", ".join([str(x) for x in rule])))
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
        raise ValueError("%s: must be %s" % (key, {int: "an integer", float: "a number", str: "text",
                                                   dict: "a map", list: "a list"}.get(t, "valid")))
    if len(rule) == 3:
        x = len(v) if t is str else v
        if not (rule[1] <= x <= rule[2]):
            raise ValueError("%s: %s out of range %s..%s" % (key, "length" if t is str else "value",
                                                            rule[1], rule[2]))


def validate(cfg, schema=None, prefix=""):
    """Raise ValueError("key: reason") unless cfg fits schema (default SCHEMA)."""
    if schema is None:
        schema = SCHEMA
    if not isinstance(cfg, dict):
        raise ValueError("config must be a map")
    for k in cfg:
        rule = schema.get(k)
        if rule is None:
            raise ValueError("%s%s: unknown key" % (prefix, k))
        _check(rule, cfg[k], prefix + str(k))
    if schema is SCHEMA:
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


def load(path=PATH):
    """The validated config with defaults; ValueError if neither config.json
    nor its .bak is valid (the caller then has nothing to run)."""
    last = "no config file"
    for p in (path, path + ".bak"):
        cfg = store.load_json(p) if store.exists(p) else None
        if cfg is None:
            continue
        try:
            cfg = merge(DEFAULTS, cfg)
            validate(cfg)
            return cfg
        except ValueError as e:
            last = "%s: %s" % (p, e)
    raise ValueError(last)


def secrets(path=SECRETS):
    return store.load_json(path, {})


def apply(cur, changes, path=PATH):
    """Validate cur+changes, persist it, return it. ValueError: nothing changed."""
    if not isinstance(changes, dict):
        raise ValueError("config changes must be a map")
    new = merge(DEFAULTS, merge(cur, changes))  # a deleted key falls back to its default
    validate(new)
    text = json.dumps(new)
    try:
        same = json.loads(text) == new
    except ValueError:
        same = False
    if not same:  # bytes, non-text keys, NaN in a role section: would not load back as written
        raise ValueError("config: values must be JSON (text, numbers, true/false, lists, maps with text keys)")
    store.write(path, text)
    return new
