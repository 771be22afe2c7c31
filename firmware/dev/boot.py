"""The boot steps of app.main(), loaded once at boot and forgotten before
the role runs: their code (~1.1 KB on the 64-bit host) is not on the heap
of a running lamp or a bin's wake. See app.py for the sequence and the
state it sets (app.cfg, app.safe, app.boots).
"""
import gc
import hal
import app
from micropython import const
from dev import store, forget

_SAFE_AFTER = const(3)  # unhealthy boots in a row before safe mode
# the role's module by config "role" (here, not in the resident app: only the
# boot and the shell's role() look it up; tests point a role at a stand-in)
ROLES = {"lamp": "lamp.app", "bin": "waste.app"}


def role(name):
    """The role's module (run, make), imported: eclor's bare REPL."""
    m = ROLES.get(name)
    if m is None:
        raise ValueError("unknown role %r" % name)
    return __import__(m, None, None, ("make",))


def _copy(o):
    # the config again, made after the collect: its dicts and lists land low
    # in the heap, in the space the schema's code took, instead of staying
    # islands above it for the whole run (the strings are shared)
    if isinstance(o, dict):
        return {k: _copy(o[k]) for k in o}
    if isinstance(o, list):
        return [_copy(x) for x in o]
    return o


def start():
    """Config, boot counter, log line, watchdog; the role's module name
    ("lamp.app", "waste.app"), or None without a valid config (logged: the
    board stays at the REPL). app.main() imports the role once this module
    is dropped."""
    # dev.schema loads the config without dev.config (dev.config.load() is
    # this call): dev.config's names are not interned at every boot, and its
    # code not loaded. No role has registered its section yet (config.SCHEMA
    # is empty at boot): role sections are checked as maps here, with their
    # rules when a role changes them. One-shot work: dev.schema and dev.check
    # forgotten after the call; a role or the shell imports dev.config when
    # it validates a change
    from dev import schema
    try:
        c = schema.load("config.json", {})
    except ValueError as e:
        app._log("E", "no valid config, staying at the REPL: %s" % e)
        return None
    finally:
        schema = None
        forget("dev.schema")
        forget("dev.check")
    # collected now, so that what outlives the boot (the log line's names,
    # the role's modules) fills the space the schema's code took, low in the
    # heap, rather than landing above it with a hole left below (fragmentation)
    gc.collect()
    c = _copy(c)
    # boot counter: consecutive boots without a healthy minute, this one
    # included; a deep-sleep wake is no new boot (no flash write). A flash
    # that cannot be written must not keep the lamp dark: logged, and the
    # role still runs (normal mode)
    cause = hal.reset_cause()
    try:
        n = int(store.read("data/boots") or 0)
    except ValueError:
        n = 0
    if cause != "deepsleep":
        n += 1
        try:
            store.write("data/boots", str(n))
        except OSError as e:
            app._log("E", "boot counter not saved: %r" % e)
    app.boots = n
    app.safe = safe = n > _SAFE_AFTER
    app.cfg = c
    # two whole formats: " SAFE MODE" alone (10 characters) would be interned for good
    app._log("I", ("boot role=%s cause=%s boots=%d SAFE MODE" if safe else "boot role=%s cause=%s boots=%d")
             % (c["role"], cause, n))
    if c.get("wdt_ms"):
        hal.wdt_enable(c["wdt_ms"])
    # the schema allows only the roles of ROLES: an unknown one is a KeyError,
    # a crash of the boot as before (logged, reboot)
    return ROLES[c["role"]]
