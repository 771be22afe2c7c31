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
    srv.due = []  # what the actions leave for after the answer (lamp/resources.py)
    res = Commands(srv).apply_payload(data, ct)
    out = encode(res[0] if len(res) == 1 else res, ct)
    due, srv.due = srv.due, None
    if due:
        res = Commands = encode = None
        _after(srv.ctl, due)
    return out


def _after(ctl, due):
    # What the commands left (lamp/resources.py): a report command's report
    # (None), an installed calendar's log line (its id), done here once the
    # command's results are stored and encoded, with dev.commands and
    # fmt.cbor dropped first (as lamp.use() drops them after this call), so
    # that lamp/state.py, fmt.senml and the CBOR Writer, or dev.log, do not
    # load on top of them (the report and calendar commands were the
    # night's peak). Still before the answer is sent. A failed report is
    # logged (the benches look for a MemoryError there): the endpoint would
    # swallow it.
    import sys
    import gc
    from dev import forget
    for n in ("dev.commands", "fmt.cbor", "fmt"):
        if getattr(sys.modules.get(n), "__file__", "").endswith(".mpy"):
            forget(n)
    gc.collect()
    for x in due:
        if x is None:
            try:
                ctl.report()
            except Exception as e:
                from lamp.app import _log
                _log("exception", "report command", e)
        else:  # as lamp/calcheck.py logs it, without loading that module again
            from dev import log
            log.event("calendar %s installed" % x)
