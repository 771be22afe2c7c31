# The lamp role (docs/lamp.md). use() is the load-on-use policy of the role:
# code that is not needed every second (operator actions lamp.admin, calendar
# validation lamp.calcheck, the sun's position lamp.astro) is imported for the
# call and dropped afterwards, so it is not on the heap between calls.
from micropython import const

# The services of dev/ and fmt/ that the lamp only needs now and then (a log
# line, a clock sync, a command, a report's SenML/CBOR): a call that loads
# one drops it afterwards too. None of them holds state the lamp needs
# between calls (dev.clock's time source: lamp.app.source), and no resident
# lamp object refers to them (a function or instance would keep its module
# alive anyway: see lamp/resources.py, lamp/app.py). Measured resident all
# night before: ~10 KB with asyncio.event/funcs (docs/lamp.md "Footprint").
_SVC = const(("dev.log", "dev.clock", "dev.commands", "fmt.senml", "fmt.cbor", "fmt"))


def use(name, fn, *args, **kw):
    """Call lamp.<name>.<fn>(*args, **kw) (or <name>.<fn> for a dotted name:
    "dev.log") with the module loaded for the call only, and with it the
    services above that the call loaded. Dropped only when it comes from a
    .mpy: a frozen module costs no heap, and from source it would be
    compiled again each time, which needs more heap than keeping it. A
    nested use() of the same module shares the import; a service loaded
    before the call (by an outer call, the shell) stays."""
    import sys
    import gc
    full = name if "." in name else "lamp." + name
    had = None
    if full not in sys.modules:
        gc.collect()  # see below: the module's code then packs low too
        had = [n for n in _SVC if n in sys.modules]
    m = None
    try:
        # the import inside: one that fails partway (no heap) must still
        # drop the services it loaded, or they stay and the heap with them
        __import__(full)
        m = sys.modules[full]
        return getattr(m, fn)(*args, **kw)
    finally:
        if m is None or m.__file__.endswith(".mpy"):
            from dev import forget
            forget(full)  # a nested use() of the same module may have done it
            if had is not None:  # this call loaded it
                for n in _SVC:
                    if n not in had and getattr(sys.modules.get(n), "__file__", "").endswith(".mpy"):
                        forget(n)
            # Collect now: the GC allocates from the lowest free block, so
            # with the garbage of this burst gone the next objects (and a
            # qstr pool growth: one block of several KB) pack low instead of
            # being spread over the heap's top, which fragments it.
            gc.collect()
