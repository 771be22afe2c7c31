"""Client side of RFC 7641 Observe (`Endpoint.observe` / `unobserve`),
loaded on first use: a device that observes nothing does not carry it.

`watch` registers (GET with Observe=0) and `note` delivers the
notifications newer than the last one (RFC 7641 §3.4: 24-bit sequence
comparison, or 128 s passed), and ends the observation on an error or a
response without Observe.  An observation is `[peer, token, callback, seq,
ticks]` in `ep._cobs`.  A notification carrying Block2 is delivered as its
first block.
"""
import time
from micropython import const

_GET = const(1)
_OBSERVE = const(6)


async def watch(ep, peer, path, cb, query, accept):
    r = await ep.request(_GET, peer, path, query=query, accept=accept, options=[[_OBSERVE, 0]])
    v = r.uopt(_OBSERVE)
    if v is not None and r.code < 96:
        ep._cobs.append([r.peer, r.token, cb, v, time.ticks_ms()])
    return r


def note(ep, m):
    """A response that matched no exchange: one of our observations?
    Returns True when it was (the endpoint then ACKs, else RSTs)."""
    for o in ep._cobs:
        if o[0] == m.peer and o[1] == m.token:
            v = m.uopt(_OBSERVE)
            now = time.ticks_ms()
            if v is None or m.code >= 96:
                ep._cobs.remove(o)  # final response: the observation is over
            elif (o[3] < v < o[3] + 0x800000) or (v < o[3] and o[3] - v > 0x800000) or time.ticks_diff(now, o[4]) > 128000:
                o[3] = v
                o[4] = now
            else:
                return True  # older than what we have: ACK it, do not deliver
            try:
                o[2](m)
            except Exception as e:
                print("coap: observe callback", repr(e))
            return True
    return False
