"""One RFC 9176 registration exchange, the subset of the ECLOR wire
contract: update a kept registration, or register.

`coap.rd.Registration` calls it for each of its registers and updates; a
bin's wake (waste/reg.py) calls it once per session without loading that
class, whose schedule, expiry, back-off and task (~1.8 KB of code) the
registration -- the peak of a bin's wake heap -- would otherwise hold."""
from micropython import const

_POST = const(2)
_LOCATION_PATH = const(8)
_CREATED = const(65)
_CHANGED = const(68)
_CT_LINK = const(40)


async def register(ep, gw, location, name, et, lt, queue=False, links=None):
    """Update `location` (POST to it -> 2.04) when one is given; without one,
    or when the directory forgot it (4.04, or any other 4.xx: registering
    again is idempotent and always works), register: POST
    /rd?ep=NAME&lt=LT&et=ET[&b=UQ] with the link-format `links` (None: the
    resources of a coap.observe Server) -> 2.01 with Location-Path.  A 5.xx
    to an update registers nothing (the directory is in trouble).

    Never raises.  Returns (ok, location, code): ok when the gateway took
    it; the location now valid (None: none, or forgotten); code the last
    answer's, or the exception's repr ("MemoryError": our heap, not the
    gateway)."""
    try:
        if location:
            r = await ep.request(_POST, gw, location)
            if r.code == _CHANGED or r.code >= 160:
                return r.code == _CHANGED, location, r.code
            location = None
        if links is None:
            links = ep.links() if ep._srv else b""
        # the query as bytes from one literal: short str literals ("ep=")
        # would each be interned for good, and the endpoint sizes the
        # request it keeps by 4 bytes a character for a str
        q = ("ep=%s lt=%d et=%s b=UQ" % (name, lt, et)).encode().split()
        if not queue:
            q.pop()
        r = await ep.request(_POST, gw, "rd", links, _CT_LINK, q)
        if r.code == _CREATED:
            location = "/".join(r.opts(_LOCATION_PATH)) or None
        return location is not None, location, r.code
    except Exception as e:  # Timeout, Reset, OSError, MemoryError...
        return False, location, "MemoryError" if isinstance(e, MemoryError) else repr(e)
