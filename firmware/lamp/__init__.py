# The lamp role (docs/lamp.md). use() is the load-on-use policy of the role:
# code that is not needed every second (operator actions lamp.admin, calendar
# validation lamp.calcheck, the sun's position lamp.astro) is imported for the
# call and dropped afterwards, so it is not on the heap between calls.


def use(name, fn, *args, **kw):
    """Call lamp.<name>.<fn>(*args, **kw) with the module loaded for the call only.
    Dropped only when it comes from a .mpy: a frozen module costs no heap, and
    from source it would be compiled again each time, which needs more heap
    than keeping it. A nested use() of the same module shares the import."""
    import sys
    import gc
    full = "lamp." + name
    if full not in sys.modules:
        gc.collect()  # see below: the module's code then packs low too
    __import__(full)
    m = sys.modules[full]
    try:
        return getattr(m, fn)(*args, **kw)
    finally:
        if m.__file__.endswith(".mpy") and full in sys.modules:
            from dev import forget
            forget(full)
            # Collect now: the GC allocates from the lowest free block, so
            # with the garbage of this burst gone the next objects (and a
            # qstr pool growth: one block of several KB) pack low instead of
            # being spread over the heap's top, which fragments it.
            gc.collect()
