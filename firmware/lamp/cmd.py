"""The cmd resource's work (lamp/resources.py): the command maps applied
through dev.commands (ids remembered on flash, expiry, result maps) with the
lamp's action table, the results encoded in the request's format. Loaded for
each cmd request with dev.commands (lamp.use) and dropped after it: between
operator commands neither is on the heap (dev.commands keeps nothing in RAM,
its stored results are read per command anyway).

The actions run with fmt.cbor off the heap: it is loaded to decode the
payload and to encode the answer (and a calendar, below), and dropped in
between (the action's module -- lamp/calcheck.py, lamp/settings.py with
dev.check, lamp/admin.py -- on top of dev.commands and fmt.cbor was the
night's peak). dev.commands stays: loaded again after the action, in a heap
the action's modules have left fragmented, it was the allocation that
failed (its stored result then the poison answer "interrupted").
"""


def serve(srv, data, ct):
    # srv: the Server, whose get(action) is the action table. ValueError,
    # TypeError, KeyError for an unparsable payload (answered 4.00)
    from dev.commands import Commands, parse, encode
    cmds = parse(data, ct)
    srv.due = []  # what the actions leave for after the answer (lamp/resources.py)
    cm = Commands(srv)
    for i in range(len(cmds)):
        c = cmds[i]
        cmds[i] = None  # the command map is not needed after its action
        res, h, p = cm.begin(c)
        srv.cbor = None
        if h is not None:
            if c.get("a") == "calendar":
                # stored as CBOR (lamp/calcheck.py): encoded now, while
                # fmt.cbor is on the heap anyway, so that the validation and
                # the install run without it. What CBOR cannot carry is
                # refused there, as before.
                try:
                    srv.cbor = encode(p.get("calendar"))
                except ValueError:
                    pass
            c = None
            _drop()
            cm.run(res, h, p)
            h = p = srv.cbor = None
            cm.end(res)
        cmds[i] = res
    out = encode(cmds[0] if len(cmds) == 1 else cmds, ct)
    due, srv.due = srv.due, None
    if due:
        cmds = cm = Commands = parse = encode = None
        _drop("dev.commands")
        _after(srv.ctl, due)
    return out


def _drop(*more):
    # fmt.cbor (and the fmt package), and more, off the heap; a .mpy only
    # (from source a module would be compiled again at each import)
    import sys
    import gc
    from dev import forget
    for n in more + ("fmt.cbor", "fmt"):
        if getattr(sys.modules.get(n), "__file__", "").endswith(".mpy"):
            forget(n)
    gc.collect()


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
