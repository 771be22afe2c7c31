"""queue(c, now, hb): this wake's pack into the outbox, with the state that goes
with it.

A module of its own, loaded where a pack is queued and dropped after: the
measurement queues it (waste/sense.py decide()), or, after a power-on,
the first CoAP session once it set the clock (waste/link.py), or a
`report` command's session (waste/dp.py). The radio phase does not hold
it through the /dp POSTs, the peak of a wake's heap (docs/bin.md
"Memory").
"""
import struct
from dev import store
from waste.cycle import STATE, unload


def queue(c, now, hb):
    """Persist cycle c's pack, at time now, in the outbox and the state
    that goes with it (hb: it carries the heartbeat)."""
    st, r = c.st, c.reading
    p = c.packed
    if p is None:
        # a "report" command after a wake that only retried its backlog
        from waste.sense import pack
        p = pack(c, hb)
    c.packed = None
    c.queued = True
    struct.pack_into(">I", p[0], p[1], now)
    c.outbox().push(p[0])
    # neither the pack nor the Outbox's code is needed for the state write
    # below: after a power-on it comes amid the first CoAP session
    # (waste/radio.py timed()), where that write found no room beside them
    # (dev.outbox: 1.9 KB of heap); the outbox is re-opened on use
    p = None
    c.ob = None
    unload("dev.outbox")
    if r["fill"] is not None:
        st["sent_fill"] = r["fill"]
    st["sent_status"] = r["status"]
    st["force"] = 0
    if hb:
        st["hb"] = now
        st["hb_awake"] = st["hb_radio"] = st["hb_wakes"] = 0
    store.save_json(STATE, st)
    # the pack is in the outbox: nothing reads this wake's reading again (a
    # `report` command queues no second one, waste/dp.py), ~0.3 KB less
    # through the radio phase
    c.reading = c.changes = None
