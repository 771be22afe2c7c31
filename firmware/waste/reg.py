"""The registration of a CoAP session (waste/link.py window(), and
waste/dp.py after a 4.04): register, or update with the location kept
from an earlier wake, in queue mode (b=UQ) -- coap.rd.

A module of its own, dropped with coap.rd once the bin is registered, so
that the /dp POSTs that come next (the peak of a wake's heap) do not hold
its code (docs/bin.md "Memory"). A 4.04 to /dp loads both again.
"""
from waste.link import _spend


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
