"""What a session after commands POSTs (waste/link.py window()): this
wake's reading if a `report` asked for it, then the results to /cr.

A module of its own so that the first session's /dp POSTs, the peak of a
wake's heap, do not hold this code (docs/bin.md "Memory"); the cycle drops
it with the link.
"""
import hal
from micropython import const
from waste.dp import flush, _cmds
from waste.link import post

_CHANGED = const(68)       # 2.04 (coap.codec.CHANGED)


async def results(c, res):
    """A session after commands: this wake's reading if a `report` asked
    for it, then the results res (CBOR) to /cr; the commands in the
    answers, or None when a POST failed."""
    st = c.st
    cmds = []
    if st.get("force") and (c.queued or c.reading):
        # "report": this wake's reading goes out in this window;
        # queued already unless the wake only retried a backlog
        if c.queued:
            st["force"] = 0
        else:
            from waste.queue import queue
            queue(c, int(hal.time()), False)
            queue = None
        cmds = await flush(c)
        if cmds is None:
            return None
    r = await post(c, "cr", res, 60)    # CBOR
    if r is None:
        return None
    if r.code == _CHANGED:
        cmds += _cmds(r)
    return cmds
