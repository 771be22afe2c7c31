"""Config schema: the base rules, the defaults, the boot load and a change of
base keys, loaded only while the whole config is validated (the checker
itself is dev/check.py, loaded alone for a change of role sections).

dev.boot (load at boot) and dev.config (validate, load, apply for a config
command or a shell change) import this module for one call and forget it right after
(dev.forget): the rules, the defaults and the code are one-shot work, kept
off the heap the rest of the time. See dev/config.py for the rule syntax;
role sections come from dev.config.SCHEMA (kept resident there, since the
roles register them once).

Memory: the validation of a lamp_type or config command sets the lamp's
smallest heap, so this module is small while loaded and builds little:
- the base rules are one string (_BASE below), a rule tuple made only for
  the key being checked: a dict of 15 rules was a dict and 15 tuples on the
  heap, and every key and message a name interned for good (a key no role
  reads, "commune", stayed in the qstr pool of every device);
- apply() makes one copy of the config (the changed maps copied, the rest
  shared), fills the defaults into it, checks that JSON keeps it, and
  streams it to the file (dev.store): no JSON text of the whole config and
  no second copy parsed back from it;
- messages are strings longer than 10 characters (not interned).
"""
from micropython import const
from dev import check, store  # check: dev.config forgets it with this module

# "|key type lo hi": s text of length lo..hi, i integer, f number (int
# accepted), d any dict (a role section before the role extends it:
# dev.config.SCHEMA). A const() string: no module global. role, gateway and
# ip are in validate() below.
_BASE = const("|ep s 1 63|zone s 0 63|commune s 0 63|lat f -90 90|lon f -180 180|report_s i 10 86400"
              "|lt i 60 604800|ntp s 0 253|wdt_ms i 0 120000|board s 0 63|lamp d|bin d|")
# defaults of absent keys: a const() tuple, in the module's constants (its
# keys are names the roles use anyway); nothing built per call
_DEFAULTS = const((("report_s", 900), ("lt", 3600), ("ntp", "pool.ntp.org"), ("wdt_ms", 60000)))


def validate(cfg, schema):
    """ValueError("key: reason") unless cfg fits the whole config's rules: the
    base rules with schema's (the role sections' rules, dev.config.SCHEMA)
    over them, the keys ep, role and gateway present."""
    # the base rules of role, gateway and ip inline, not helper functions:
    # every function name (and argument name) here is interned for good at
    # every boot (docs/firmware.md "Memory")
    if not isinstance(cfg, dict):
        raise ValueError("config must be a map")
    for k in cfg:
        v = cfg[k]
        r = schema.get(k)
        if r is None:
            if k == "role":
                r = ["lamp", "bin"]
            elif k == "gateway":
                r = {"host": (str, 1, 253), "port": (int, 1, 65535)}
            elif k == "ip":
                # static IP for hal.wifi_connect: [ip, netmask, gateway, dns]
                if not isinstance(v, list) or len(v) != 4:
                    raise ValueError("ip: must be [ip, netmask, gateway, dns]")
                for a in v:
                    if not isinstance(a, str) or not 7 <= len(a) <= 15 or a.count(".") != 3:
                        raise ValueError("ip: %r is not an IPv4 address" % (a,))
                continue
            else:
                r = check.row(_BASE, k)
        if r is None:
            raise ValueError("%s: unknown key" % k)
        check.check(r, v, str(k))
    for k in ("ep", "role", "gateway"):
        if k not in cfg:
            raise ValueError("%s: missing" % k)


def full(cfg, schema):
    """cfg (a fresh dict, changed in place) with the defaults of absent keys, validated."""
    for k, v in _DEFAULTS:
        if k not in cfg:
            cfg[k] = v
    validate(cfg, schema)
    return cfg


def load(path, schema):
    """dev.config.load(); dev.boot calls it directly (dev.config not loaded
    at boot). schema: the role sections' rules (dev.config.SCHEMA, {} at boot)."""
    last = "no config file"
    for p in (path, path + ".bak"):
        cfg = store.load_json(p) if store.exists(p) else None
        if cfg is None:
            continue
        try:
            if not isinstance(cfg, dict):
                raise ValueError("config must be a map")
            return full(check.merged({}, cfg), schema)  # merged: a null value is an absent key
        except ValueError as e:
            last = "%s is not valid: %s" % (p, e)
    raise ValueError(last)


def apply(cur, changes, path, schema):
    """dev.config.apply()"""
    if not isinstance(changes, dict):
        raise ValueError("config changes must be a map")
    # a deleted key falls back to its default; every key checked
    return check.write(full(check.merged(cur, changes), schema), path)
