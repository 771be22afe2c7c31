"""The cmd resource's work (lamp/resources.py): the command maps applied
through dev.commands (ids remembered on flash, expiry, result maps) with the
lamp's action table, the results encoded in the request's format. Loaded for
each cmd request with dev.commands (lamp.use) and dropped after it: between
operator commands neither is on the heap (dev.commands keeps nothing in RAM,
its stored results are read per command anyway).
"""


def serve(srv, data, ct):
    # srv: the Server, whose get(action) is the action table. ValueError,
    # TypeError, KeyError for an unparsable payload (answered 4.00)
    from dev.commands import Commands, encode
    res = Commands(srv).apply_payload(data, ct)
    return encode(res[0] if len(res) == 1 else res, ct)
