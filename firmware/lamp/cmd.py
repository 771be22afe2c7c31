"""The cmd resource's work (lamp/resources.py): the command maps applied
through dev.commands (ids remembered on flash, expiry, result maps) with the
lamp's action table, the results encoded in the request's format. Loaded for
each cmd request with dev.commands (lamp.use) and dropped after it: between
operator commands neither is on the heap (dev.commands keeps nothing in RAM,
its stored results are read per command anyway).
"""


from micropython import const

_MIN_VALID = const(1704067200)  # dev.clock's "time known" (2024-01-01)


def now():
    # dev.clock.now() for the commands' expiry, without loading dev.clock
    # (1.7 KB) on top of the command's modules
    import hal
    t = hal.time()
    return t if t >= _MIN_VALID else None


def serve(srv, data, ct):
    # srv: the Server, whose get(action) is the action table. ValueError,
    # TypeError, KeyError for an unparsable payload (answered 4.00)
    from dev.commands import Commands, encode
    res = Commands(srv, now=now).apply_payload(data, ct)
    return encode(res[0] if len(res) == 1 else res, ct)
