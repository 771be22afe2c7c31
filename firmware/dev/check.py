"""The config checker (dev/config.py's rule syntax) and the change of role
sections, loaded only while a config is validated or changed.

Split from dev/schema.py (the base rules, the defaults, the boot load) so
that a change of role sections only -- the lamp_type and config commands of
a lamp, the bin's config -- loads this module alone: the base keys were
validated at boot and do not change, only the changed sections are checked
(whole, with their role's rule). That command sets the lamp's smallest heap
(docs/lamp.md "Footprint"): dev.schema and this module were 4.6 KB of heap
at it, this module alone is less (docs/firmware.md "Memory").
Messages are strings longer than 10 characters (not interned).
"""
from dev import store


def _check(rule, v, key):
    # one value against its rule; a function of its own rather than inlined in
    # validate(): a smaller code block to allocate (contiguous) when this module
    # loads at a lamp_type command, on a fragmented heap
    if isinstance(rule, dict):  # a nested map
        if not isinstance(v, dict):
            raise ValueError("%s: must be a map" % key)
        validate(v, rule, key + ".")
        return
    if isinstance(rule, list):  # one of these values
        if type(v) is not type(rule[0]) or v not in rule:
            raise ValueError("%s: must be one of %s" % (key, ", ".join([str(x) for x in rule])))
        return
    if not isinstance(rule, tuple):  # a callable rule
        rule(v)
        return
    t = rule[0]
    b = v is True or v is False
    if t is bool:
        if not b:
            raise ValueError("%s: must be true or false" % key)
        return
    if t is float:
        if b or not isinstance(v, (int, float)):
            raise ValueError("%s: must be a number" % key)
    elif t is int:
        if b or not isinstance(v, int):
            raise ValueError("%s: must be an integer" % key)
    elif not isinstance(v, t):
        raise ValueError(("%s: must be text" if t is str else "%s: must be a map" if t is dict else
                          "%s: must be a list" if t is list else "%s: must be valid") % key)
    if len(rule) == 3:
        x = len(v) if t is str else v
        if not (rule[1] <= x <= rule[2]):
            raise ValueError("%s: %s out of range %s..%s" % (key, "length" if t is str else "value",
                                                            rule[1], rule[2]))


def row(table, key):
    """The rule of key in a rules string "|key t lo hi|...|" (t: s text of
    length lo..hi, i integer, f number; b true/false, d map: no bounds),
    None when the key has no row. Rules as one string rather than a dict of
    tuples: a tuple is made only for the key being checked (dev.schema's base
    rules, lamp/settings.py's lamp section)."""
    if not isinstance(key, str) or not key or " " in key or "|" in key:
        return None
    # the row "|key ", found without building a search string (a
    # one-character index gives an interned name)
    n = len(key)
    i = table.find(key)
    while i > 0 and (table[i - 1] != "|" or table[i + n] != " "):
        i = table.find(key, i + 1)
    if i <= 0:
        return None
    i += n + 1  # the type letter
    t = table[i]
    if t == "d":
        return (dict,)
    if t == "b":
        return (bool,)
    j = table.find(" ", i + 2)  # lo from i + 2 to j, hi from j + 1 to the next "|"
    lo = table[i + 2:j]
    hi = table[j + 1:table.find("|", j)]
    return (str if t == "s" else int if t == "i" else float,
            (float if "." in lo else int)(lo), (float if "." in hi else int)(hi))


def validate(cfg, schema, prefix=""):
    """ValueError("key: reason") unless the map cfg fits schema (a dict key -> rule)."""
    if not isinstance(cfg, dict):
        raise ValueError("config must be a map")
    for k in cfg:
        rule = schema.get(k)
        if rule is None:
            raise ValueError("%s%s: unknown key" % (prefix, k))
        _check(rule, cfg[k], prefix + str(k))


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


def json_ok(v):
    """True if JSON writes v and reads it back equal: text-keyed maps, lists,
    text, numbers (finite, printed exactly), true/false/null."""
    if isinstance(v, dict):
        for k in v:
            if not isinstance(k, str) or not json_ok(v[k]):
                return False
        return True
    if isinstance(v, list):
        for x in v:
            if not json_ok(x):
                return False
        return True
    if isinstance(v, float):
        return v - v == 0 and float(repr(v)) == v  # not NaN or inf; repr is what json writes
    return v is None or v is True or v is False or isinstance(v, (str, int))


def write(new, path):
    # bytes, non-text keys, NaN in a role section would not load back as written
    if not json_ok(new):
        raise ValueError("config: values must be JSON (text, numbers, true/false, lists, maps with text keys)")
    store.write(path, new, True)  # streamed: the JSON text is never held whole
    return new


def apply_roles(cur, changes, roles, path="config.json"):
    """dev.config.apply() of changes to role sections only (every key in
    roles, none deleted): the merged sections checked with their rules, the
    rest of cur shared as it is (validated at boot or by the last change).
    A role may call it without dev.config (the lamp's lamp_type command)."""
    new = merge(cur, changes)  # the changed maps copied, the rest shared
    for k in changes:
        _check(roles[k], new[k], k)
    return write(new, path)
