"""Services shared by the lamp and bin roles: store, config, clock, outbox, commands, log."""


def now():
    """UTC seconds from the RTC, or None while the time is unknown (an RTC
    before 2024-01-01 has not been set). Here, in the package both roles
    hold, rather than in dev.clock (NTP and /time, loaded for a sync only):
    the command expiry and the roles read it without loading dev.clock."""
    import hal
    t = hal.time()
    return t if t >= 1704067200 else None


def forget(name):
    """Drop the module `name` ("pkg.mod") from sys.modules and its package,
    so that the GC reclaims its code once nothing else holds it (modules
    loaded on use: the config schema, the log...). Imported again when needed."""
    import sys
    if sys.modules.pop(name, None) is not None:
        pkg, _, attr = name.rpartition(".")
        try:
            delattr(sys.modules[pkg], attr)
        except (KeyError, AttributeError):
            pass
