"""The start of a wake's first CoAP session, its endpoint made
(waste/link.py window()): the registration -- register, or update with
the location kept from an earlier wake, in queue mode (b=UQ), coap.rd --
the clock if unknown, a pack that waited for it; register() alone for
waste/dp.py after a 4.04.

A module of its own, dropped with coap.rd once the bin is registered, so
that the /dp POSTs that come next (the peak of a wake's heap) do not hold
its code (docs/bin.md "Memory"). A 4.04 to /dp loads both again.
"""
import hal
from micropython import const
from waste.link import _spend
from waste.cycle import unload

_T_VALID = const(1704067200)  # RTC readings before 2024 mean "time unknown"


async def first(c):
    """The start of cycle c's first session, its endpoint made
    (waste/link.py window()): register (coap.rd dropped after: room for
    dev.clock, which is loaded only when the time is unknown, after a
    power-on), set the clock if unknown and queue a pack that waited for
    it; True when registered."""
    if not await register(c):
        return False
    unload("coap.rd")
    if hal.time() < _T_VALID:
        from dev import clock
        await clock.sync(c.ep, c.gw, c.cfg.get("ntp", "pool.ntp.org"))
        _spend(c, 1, 0)
        clock = None
        unload("dev.clock")
    if c.deferred is not None and hal.time() >= _T_VALID:
        from waste.queue import queue
        queue(c, int(hal.time()), c.deferred)
        queue = None
        unload("waste.queue")
    return True


async def register(c):
    """Register or update over cycle c's session (c.ep to c.gw); True when
    the gateway took it (c.error says why not)."""
    from coap.rd import Registration
    ep = c.ep
    st, s = c.st, c.s
    # the lifetime must outlast the longest sleep between transmissions
    lt = max(c.cfg.get("lt", 3600), 2 * s["heartbeat_s"] + 600)
    reg = Registration(ep, c.gw, c.cfg["ep"], "eclor.bin", lt,
                       b'</dp>;rt="eclor.bin";ct=112', queue=True)
    if st.get("rd_lt") == lt:
        reg.location = st.get("rd")
    loc = reg.location
    retx = ep.retx
    ok = await reg.ensure()
    if ok:
        _spend(c, 1 + (loc is not None and reg.location != loc), ep.retx - retx)
        st["rd"] = reg.location
        st["rd_lt"] = lt
    else:
        _spend(c, 0, s["max_retransmit"] + 1)
        c.error = "register %s" % reg.last_code
    return ok
