"""Services shared by the lamp and bin roles: store, config, clock, outbox, commands, log."""


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
