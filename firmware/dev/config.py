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
The base keys (ep, role, gateway...), the defaults and the required keys are
in dev/schema.py.

Memory: the base schema (dev/schema.py) and the checker (dev/check.py) are loaded
only while validating -- load(), apply() for a change -- and forgotten
right after. The boot (dev/boot.py) loads dev.schema itself, without this
module: its names are not interned at every boot. Roles add
their section here: `config.SCHEMA["lamp"] = {...}` (or "bin"), a rule that
takes the place of the base schema's "any dict" for that key.

apply(cur, changes) merges the changes (nested dicts merged key by key),
validates the result (the changed role sections only when only role
sections change: dev/check.py) and only then writes it (dev.store: atomic, the
old file kept as .bak). On error it raises ValueError("key: reason") and
neither `cur` nor the file changes.
"""
from dev import store

from micropython import const

_PATH = const("config.json")  # a const() string: no module global, no name
SCHEMA = {}  # role sections and extra keys: key -> rule, over dev/schema.py's base


def _use(name, *args):
    # dev.schema (and dev.check, which it imports) loaded for one call and
    # forgotten after it
    from dev import schema
    try:
        return getattr(schema, name)(*args)
    finally:
        from dev import forget
        forget("dev.schema")
        forget("dev.check")


def validate(cfg, schema=None, key=""):
    """Raise ValueError("key: reason") unless cfg fits schema (default: the
    whole config, base schema plus SCHEMA); key: the keys above cfg in the
    messages ("gateway.")."""
    if schema is None:
        _use("validate", cfg, SCHEMA)
        return
    from dev import check
    try:
        check.validate(cfg, schema, key)
    finally:
        from dev import forget
        forget("dev.check")


def load(path=_PATH):
    """The validated config with defaults; ValueError if neither config.json
    nor its .bak is valid (the caller then has nothing to run)."""
    return _use("load", path, SCHEMA)


def secrets(path="secrets.json"):
    return store.load_json(path, {})


def apply(cur, changes, path=_PATH):
    """Validate cur+changes, persist it, return it. ValueError: nothing changed."""
    # Changes of role sections only (a lamp's lamp_type or config command, the
    # bin's config): only dev.check is loaded and only those sections are
    # checked -- the rest of cur was validated at boot or by the last change.
    # A base key, a deletion, no key: the whole config through dev.schema.
    roles = isinstance(changes, dict) and len(changes) > 0
    if roles:
        for k in changes:
            if k not in SCHEMA or changes[k] is None:
                roles = False
                break
    if not roles:
        return _use("apply", cur, changes, path, SCHEMA)
    from dev import check
    try:
        return check.apply_roles(cur, changes, SCHEMA, path)
    finally:
        from dev import forget
        forget("dev.check")
