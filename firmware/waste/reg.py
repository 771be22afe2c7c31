"""The registration of a CoAP session (waste/link.py window(), and
waste/dp.py after a 4.04): register, or update with the location kept
from an earlier wake, in queue mode (b=UQ), RFC 9176 as coap.rd speaks it.

A module of its own, dropped once the bin is registered, so that the /dp
POSTs that come next (the peak of a wake's heap) do not hold its code
(docs/bin.md "Memory"). A 4.04 to /dp loads it again.

One exchange or two per wake, not coap.rd's Registration: that class
carries what a lamp that stays registered needs (the update schedule,
the lifetime's expiry, the back-off of retries, a background task,
deregister), ~1.8 KB of code that the registration, the wall of a bin's
wake heap, would hold for one call of ensure(). The exchanges are the
same as its ensure() makes: an update (POST to the location) when one is
kept for this lifetime; on a 4.xx to it, or without one, a registration
(POST /rd with the query and the link to /dp); 5.xx: none.
"""
from micropython import const
from waste.link import _spend

_POST = const(2)
_LOCATION_PATH = const(8)
_CREATED = const(65)
_CHANGED = const(68)
_CT_LINK = const(40)


async def register(c):
    """Register or update over cycle c's session (c.ep to c.gw); True when
    the gateway took it (c.error says why not)."""
    ep = c.ep
    st, s = c.st, c.s
    # the lifetime must outlast the longest sleep between transmissions
    lt = max(c.cfg.get("lt", 3600), 2 * s["heartbeat_s"] + 600)
    loc = old = st.get("rd") if st.get("rd_lt") == lt else None
    retx = ep.retx
    ok = False
    try:
        if loc:
            r = await ep.request(_POST, c.gw, loc)
            code = r.code
            ok = code == _CHANGED
            if not ok and code < 160:
                # 4.04: it forgot us (any other 4.xx too): register again
                loc = None
        if not loc:
            # one literal, bytes (as coap.rd: short ones would each be
            # interned for good, and the endpoint sizes a str by 4 bytes a
            # character)
            q = ("ep=%s lt=%d et=eclor.bin b=UQ" % (c.cfg["ep"], lt)).encode().split()
            r = await ep.request(_POST, c.gw, "rd", b'</dp>;rt="eclor.bin";ct=112', ct=_CT_LINK, query=q)
            code = r.code
            if code == _CREATED:
                loc = "/".join(r.opts(_LOCATION_PATH)) or None
                ok = loc is not None
    except Exception as e:   # Timeout, Reset, OSError...
        code = repr(e)
    if ok:
        _spend(c, 1 + (old is not None and loc != old), ep.retx - retx)
        st["rd"] = loc
        st["rd_lt"] = lt
    else:
        _spend(c, 0, s["max_retransmit"] + 1)
        c.error = "register %s" % code
    return ok
