"""The bin role's entry point, called by firmware/app.py.

`run(cfg, safe)` is one wake: measure, transmit when worth it (waste/cycle.py),
then deep sleep -- always, whatever failed, since a bin that stays awake
empties its battery in days. In safe mode (firmware/app.py decided the
firmware keeps crashing) the wake still measures and reports, with a
`mode` = "safe" record so the gateway sees it.

`make(cfg, safe)` gives the technician shell its object (waste/shell.py).
The "bin" section of config.json is validated by waste/conf.py: the rule
is registered in dev.config here, so eclor.config("bin.depth_m", 1.2) and
the `config` command are checked like the rest.
"""
import asyncio
import sys

# dev.config (the schema) is not part of a wake: the rule is registered when
# it is loaded already (the shell), by make(), and by waste.setconf before
# it validates a change. waste.conf itself is loaded by the cycle, which
# drops it before the radio phase.
if "dev.config" in sys.modules:
    from waste import conf
    sys.modules["dev.config"].SCHEMA["bin"] = conf.schema_rule
    del conf


def make(cfg, safe=False):
    """The role object for the shell (no wake cycle run)."""
    from dev import config
    from waste import conf
    from waste.shell import Bin
    config.SCHEMA["bin"] = conf.schema_rule
    return Bin(cfg, config.secrets(), safe)


def run(cfg, safe=False):
    """One wake cycle, then deep sleep (never returns on a board)."""
    import app
    from dev import store
    from waste.cycle import Cycle
    # The wake's measuring code first, into the heap as the boot left it
    # (collected): the 301st name of a run allocates a 3.5 KB block (room
    # for the next 320 names, for good), and these modules' names bring it.
    # Later, among the wake's settings, state and HAL, that block found no
    # room at times (a wake failed at 60 KB loading waste.ranger); made now
    # it takes a clean place. Each wake loads these modules anyway; the
    # cycle drops them before the radio, and no slot here keeps them alive.
    import gc
    gc.collect()
    from waste import sense, ranger, events
    sense = ranger = events = None
    c = Cycle(cfg, store.load_json("secrets.json", {}))
    c.safe = safe
    ms = c.s["measure_s"] * 1000
    try:
        ms = asyncio.run(c.wake())
        # the cycle ran: not a boot loop. An absent gateway or Wi-Fi is no
        # firmware fault ("wifi", "timeout", "max-age 60"...); an exception
        # caught in the wake window ("Type: message") is.
        if c.error is None or ":" not in c.error:
            app.mark_healthy()
    except Exception as e:
        try:
            from dev import log
            log.exception("bin wake", e)
            from waste import sense
            ms = sense.finish(c)
        except Exception:
            pass
    c.sleep(ms)
