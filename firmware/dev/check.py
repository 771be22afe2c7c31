"""The config checker (dev/config.py's rule syntax) and the change of role
sections, loaded only while a config is validated or changed.

Split from dev/schema.py (the base rules, the defaults, the boot load) so
that a change of role sections only -- the lamp_type and config commands of
a lamp, the bin's config -- loads this module alone: the base keys were
validated at boot and do not change, only the changed sections are checked
(whole, with their role's rule). That command sets the lamp's smallest heap
(docs/lamp.md "Footprint"): dev.schema and this module were 4.6 KB of heap
at it, this module alone is less (docs/firmware.md "Memory").
Messages are strings longer than 10 characters (not interned). Names:
each function and argument name here is interned for good when the module
loads (at every boot), so they are names the firmware interns anyway or
static ones: check (a bin's waste.conf.check), merged (waste.conf.merged),
ok, and as arguments r (a rule), text, key, schema, path.
"""
from dev import store


def check(r, v, key):
    """The value v of key against its rule r (dev/config.py's syntax)."""
    # a function of its own rather than inlined in validate(): a smaller code
    # block to allocate (contiguous) when this module loads at a lamp_type
    # command, on a fragmented heap
    if isinstance(r, dict):  # a nested map
        if not isinstance(v, dict):
            raise ValueError("%s: must be a map" % key)
        validate(v, r, key + ".")
        return
    if isinstance(r, list):  # one of these values
        if type(v) is not type(r[0]) or v not in r:
            raise ValueError("%s: must be one of %s" % (key, ", ".join([str(x) for x in r])))
        return
    if not isinstance(r, tuple):  # a callable rule
        r(v)
        return
    t = r[0]
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
    if len(r) == 3:
        x = len(v) if t is str else v
        if not (r[1] <= x <= r[2]):
            raise ValueError("%s: %s out of range %s..%s" % (key, "length" if t is str else "value",
                                                            r[1], r[2]))


def row(text, key):
    """The rule of key in a rules text "|key t lo hi|...|" (t: s text of
    length lo..hi, i integer, f number; b true/false, d map: no bounds),
    None when the key has no row. Rules as one string rather than a dict of
    tuples: a tuple is made only for the key being checked (dev.schema's base
    rules, lamp/settings.py's lamp section)."""
    if not isinstance(key, str) or not key or " " in key or "|" in key:
        return None
    # the row "|key ", found without building a search string (a
    # one-character index gives an interned name)
    n = len(key)
    i = text.find(key)
    while i > 0 and (text[i - 1] != "|" or text[i + n] != " "):
        i = text.find(key, i + 1)
    if i <= 0:
        return None
    i += n + 1  # the type letter, tested with startswith: text[i] would
    # make a one-letter string, interned for good ("i" a name of its own)
    if text.startswith("d", i):
        return (dict,)
    if text.startswith("b", i):
        return (bool,)
    j = text.find(" ", i + 2)  # lo from i + 2 to j, hi from j + 1 to the next "|"
    lo = text[i + 2:j]
    hi = text[j + 1:text.find("|", j)]
    return (str if text.startswith("s", i) else float if text.startswith("f", i) else int,
            (float if "." in lo else int)(lo), (float if "." in hi else int)(hi))


def validate(cfg, schema, key=""):
    """ValueError("key: reason") unless the map cfg fits schema (a dict key ->
    rule); key: the keys above it in the messages ("gateway.")."""
    if not isinstance(cfg, dict):
        raise ValueError("config must be a map")
    for k in cfg:
        rule = schema.get(k)
        if rule is None:
            raise ValueError("%s%s: unknown key" % (key, k))
        check(rule, cfg[k], key + str(k))


def merged(cur, changes):
    """A new dict: cur with changes applied (nested dicts merged, None deletes)."""
    out = dict(cur)
    for k in changes:
        v = changes[k]
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def ok(v):
    """True if JSON writes v and reads it back equal: text-keyed maps, lists,
    text, numbers (finite, printed exactly), true/false/null."""
    if isinstance(v, dict):
        for k in v:
            if not isinstance(k, str) or not ok(v[k]):
                return False
        return True
    if isinstance(v, list):
        for x in v:
            if not ok(x):
                return False
        return True
    if isinstance(v, float):
        return v - v == 0 and float(repr(v)) == v  # not NaN or inf; repr is what json writes
    return v is None or v is True or v is False or isinstance(v, (str, int))


def write(new, path):
    # bytes, non-text keys, NaN in a role section would not load back as written
    if not ok(new):
        raise ValueError("config: values must be JSON (text, numbers, true/false, lists, maps with text keys)")
    store.write(path, new, True)  # streamed: the JSON text is never held whole
    return new


def apply_roles(cur, changes, schema, path="config.json"):
    """dev.config.apply() of changes to role sections only (every key in
    schema, the roles' rules, none deleted): the merged sections checked with their rules, the
    rest of cur shared as it is (validated at boot or by the last change).
    A role may call it without dev.config (the lamp's lamp_type command)."""
    new = merged(cur, changes)  # the changed maps copied, the rest shared
    for k in changes:
        check(schema[k], new[k], k)
    return write(new, path)
