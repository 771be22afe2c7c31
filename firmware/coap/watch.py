"""Client side of RFC 7641 Observe (`Endpoint.observe` / `unobserve`),
loaded on first use: a device that observes nothing does not carry it."""
#
# `watch` registers (GET with Observe=0) and `note` delivers the
# notifications newer than the last one (RFC 7641 §3.4: 24-bit sequence
# comparison, or 128 s passed), and ends the observation on an error or a
# response without Observe.  An observation is `[peer, token, callback, seq,
# ticks, request options, fetching, pending]` in `ep._cobs`.
#
# A representation larger than one block (RFC 7959 §2.6) comes as its first
# block, in the registration answer or in a notification.  The rest is
# fetched with GET and Block2 num 1, 2... (without Observe; coap.block
# checks that the ETag stays the same), and the callback gets the
# notification with the whole body.  One fetch runs at a time per
# observation.  A notification that arrives during a fetch is kept, and is
# fetched next (only the newest: no queue of stale states).  When the
# registration answer's representation changes while its blocks are fetched
# (ETag changed), `watch` gets the current state again with a plain GET (up
# to three tries), so the first response it returns is whole.  A finished fetch
# is delivered even when a newer notification is already waiting: under a
# steady stream of notifications, each slower to fetch than the next one is
# to arrive, dropping it would starve the callback forever.  A fetch that
# fails (timeout, ETag changed) delivers nothing; the next notification
# carries the state.
import asyncio
import time
from micropython import const

from coap.codec import Msg
from coap.endpoint import addr

_CON = const(0)
_GET = const(1)
_OBSERVE = const(6)
_URI_PATH = const(11)
_URI_QUERY = const(15)
_ACCEPT = const(17)
_BLOCK2 = const(23)


async def watch(ep, peer, path, cb, query, accept):
    if isinstance(peer, tuple):
        peer = addr(peer[0], peer[1])
    opts = [[_URI_PATH, s] for s in path.strip("/").split("/") if s]
    for q in query or ():
        opts.append([_URI_QUERY, q])
    if accept is not None:
        opts.append([_ACCEPT, accept])
    r = await ep.exchange(Msg(_CON, _GET, 0, b"", opts + [[_OBSERVE, 0]]), peer)
    v = r.uopt(_OBSERVE)
    if v is not None and r.code < 96:
        if not ep._cobs:
            ep._cobs = []  # the first observation (the class default is ())
        ep._cobs.append([r.peer, r.token, cb, v, time.ticks_ms(), opts, 0, None])
    m = r
    for i in range(3):
        if m.opt(_BLOCK2) is None:
            break
        try:
            await _whole(ep, opts, m)
            break
        except ValueError:
            if i == 2:
                raise
            # the representation changed between its blocks (a notification
            # is on its way): start again (RFC 7959 §2.4) with a plain GET of
            # the current state, whose blocks are fetched the same way
            m = await ep.exchange(Msg(_CON, _GET, 0, b"", opts), peer)
    if m is not r:
        r.payload = m.payload
        if m.opt(_BLOCK2) is None:
            from coap import block
            block.drop(r, _BLOCK2)
    return r


async def _whole(ep, opts, m):
    # m holds the first block: fetch the others and put the whole body in
    # m.payload.  True when done (False: the server answered otherwise).
    from coap import block
    r = await block.fetch(ep, _GET, m.peer, opts, m, True)
    if r.code != m.code:
        return False
    m.payload = r.payload
    block.drop(m, _BLOCK2)
    return True


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
                if m.uopt(_BLOCK2, 0) & 8:  # more blocks: fetch them first
                    o[7] = m
                    if not o[6]:
                        o[6] = 1
                        asyncio.create_task(_rest(ep, o))
                    return True
            else:
                return True  # older than what we have: ACK it, do not deliver
            _give(o, m)
            return True
    return False


async def _rest(ep, o):
    # fetch the rest of the newest multi-block notification (o[7]) and
    # deliver it, until none is pending
    try:
        while o[7] and o in ep._cobs:
            m = o[7]
            o[7] = None
            try:
                ok = await _whole(ep, o[5], m)
            except Exception:  # timeout, blocks that do not line up, ETag changed
                ok = False
            if ok and o in ep._cobs:
                _give(o, m)
    finally:
        o[6] = 0


def _give(o, m):
    try:
        o[2](m)
    except Exception as e:
        print("coap: observe callback", repr(e))
