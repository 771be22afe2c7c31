"""The registration of a CoAP session (waste/link.py window(), and
waste/dp.py after a 4.04): register, or update with the location kept
from an earlier wake, in queue mode (b=UQ), RFC 9176 (coap.register).

A module of its own, dropped once the bin is registered, so that the /dp
POSTs that come next (the peak of a wake's heap) do not hold its code
(docs/bin.md "Memory"). A 4.04 to /dp loads it again.

One exchange or two per wake (coap.register), not coap.rd's Registration:
that class carries what a lamp that stays registered needs (the update
schedule, the lifetime's expiry, the back-off of retries, a background
task, deregister), ~1.8 KB of code that the registration, the wall of a
bin's wake heap, would hold.
"""
from coap.register import register as exchange
from waste.link import _spend


async def register(c):
    """Register or update over cycle c's session (c.ep to c.gw); True when
    the gateway took it (c.error says why not)."""
    ep = c.ep
    st, s = c.st, c.s
    # the lifetime must outlast the longest sleep between transmissions
    lt = max(c.cfg.get("lt", 3600), 2 * s["heartbeat_s"] + 600)
    loc = old = st.get("rd") if st.get("rd_lt") == lt else None
    retx = ep.retx
    try:
        ok, loc, code = await exchange(ep, c.gw, loc, c.cfg["ep"], "eclor.bin", lt, True,
                                       b'</dp>;rt="eclor.bin";ct=112')
    except MemoryError:  # no heap for the exchange's own frame
        ok, code = False, "MemoryError"
    if ok:
        _spend(c, 1 + (old is not None and loc != old), ep.retx - retx)
        st["rd"] = loc
        st["rd_lt"] = lt
    else:
        _spend(c, 0, s["max_retransmit"] + 1)
        c.error = "register %s" % code
    return ok
