"""The serving side of an endpoint: `Server`, an Endpoint that serves
resources, with request dispatch and RFC 7641 Observe, server side."""
#
#     ep = Server(port=5683, params=...)          # Endpoint's arguments
#     ep.add(path, handler, obs=False, attrs=b"") # serve path (no leading slash)
#     ep.links(filt=None)                         # the /.well-known/core document
#     ep.notify(path)                             # notify path's observers (tasks)
#     ep.observers(path=None)                     # how many (of path, or in all)
#     r = await ep.observe(peer, path, cb, query=None, accept=None)
#     ep.unobserve(r)                             # client Observe (coap/watch.py)
#
# A module of its own, so that a client (a bin: a plain coap.endpoint
# Endpoint) holds none of this code.  Dispatch: Uri-Path routing, /.well-known/core, Block1
# reassembly (coap.block), piggybacked answers for plain handlers, an empty
# ACK then a separate CON response for coroutine handlers, 5.00 for a handler
# that raises, 4.00 for a non-UTF-8 path.
#
# An observer is `[peer, token, path, request, non_count, last_con_ms,
# last_non_mid, busy, pending]` in `ep._obs` (request: the registering GET
# encoded, decoded again for each notification), at most OBS_MAX of them (a
# GET+Observe beyond that is answered without the Observe option: not
# registered).
#
# * GET with Observe=0 on an `obs` resource registers (or refreshes the same
#   peer+token); Observe=1 deregisters; an RST to a notification deregisters.
# * Every notification carries the next value of one 24-bit sequence counter.
# * Notifications are NON, except at least every OBS_CON_N-th one or when the
#   last CON one is older than OBS_CON_MS: that CON is retransmitted like a
#   request and the observer is dropped when it is never acknowledged (or
#   RST), so a dead client does not stay registered forever.
# * An error answer from the handler is sent and ends the observation.
# * If the state changes while a notification is still being retransmitted,
#   the newest state is sent when it completes (no queue of stale states).
#
# The client side of Observe is coap/watch.py.  Besides the Server class
# with the API above, plain functions over the endpoint's state: each class
# and method costs RAM when loaded from .mpy.
import asyncio
import gc
import sys
import time
from micropython import const

from coap.codec import Msg, decode
from coap.endpoint import Endpoint

_CON = const(0)
_NON = const(1)
_ACK = const(2)
_GET = const(1)
_OBSERVE = const(6)
_CONTENT_FORMAT = const(12)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_CONTENT = const(69)
_CONTINUE = const(95)
_BAD_REQUEST = const(128)
_BAD_OPTION = const(130)
_NOT_FOUND = const(132)
_METHOD_NOT_ALLOWED = const(133)
_INTERNAL_SERVER_ERROR = const(160)
_CT_LINK = const(40)
_OOM_RETRY_MS = const(200)  # a notification that found no heap: next try

_seq = 2  # the notification sequence counter (24 bits)


class Server(Endpoint):
    def add(self, path, handler, obs=False, attrs=b""):
        """Serve `path` (no leading slash) with handler; obs=True allows Observe."""
        if not self._srv:
            # the first resource: the serving state (made here, not in an
            # __init__ of Server's own: one function less in RAM)
            self._res = {}  # path -> [handler, obs, attrs]
            self._obs = []  # observers [see above]
            self._srv = sys.modules[__name__]  # requests are dispatched by serve()
        self._res[path.strip("/")] = [handler, obs, attrs]

    def links(self, filt=None):
        """The /.well-known/core document (RFC 6690) for the served resources."""
        return links(self._res or {}, filt)

    def notify(self, path):
        """Send the current state of `path` to its observers (in a task)."""
        if self._obs:
            notify(self, path.strip("/"))

    def observers(self, path=None):
        """Number of observers (of `path`, or in total)."""
        n = 0
        for o in self._obs:  # a loop: a comprehension is one more function in RAM
            if path is None or o[2] == path.strip("/"):
                n += 1
        return n

    async def observe(self, peer, path, cb, query=None, accept=None):
        """GET+Observe as a client; cb(msg) gets each newer notification.
        Returns the first response.  See coap.watch."""
        from coap.watch import watch
        return await watch(self, peer, path, cb, query, accept)

    def unobserve(self, r):
        """End the observation started with response r (RST to the next)."""
        l = []
        for o in self._cobs:  # a loop: a comprehension is one more function in RAM
            if o[1] != r.token:
                l.append(o)
        self._cobs = l


def notify(ep, path):
    for o in ep._obs:
        if o[2] == path:
            if o[7]:
                o[8] = 1  # busy: send the newest state when done
            else:
                try:
                    asyncio.create_task(_push(ep, o))
                except MemoryError:
                    # no heap for the task: this state is skipped (RFC 7641
                    # lets a server skip states; the next notify() sends the
                    # newest), the caller is not the one to fail
                    ep.oom += 1


async def _push(ep, o):
    # send notifications to observer o until no newer state is pending
    o[7] = 1
    try:
        while o in ep._obs:
            o[8] = 0
            res = ep._res.get(o[2])
            end = res is None
            try:
                if not end:
                    m = decode(o[3])
                    m.peer = o[0]
                    try:
                        r = res[0](m)
                        if hasattr(r, "send"):
                            r = await r
                    except MemoryError:
                        raise
                    except Exception as ex:
                        print("coap: handler", o[2], repr(ex))
                        r = (_INTERNAL_SERVER_ERROR, b"", None)
                    m.code = 0  # build() must not treat this as a new registration
                    code, payload, opts = build(ep, m, r, res)
                    m = r = None
                    end = code >= 128
                    if not end:
                        global _seq
                        _seq = (_seq + 1) & 0xFFFFFF
                        opts.append([_OBSERVE, _seq])
                    now = time.ticks_ms()
                    if end or o[4] + 1 >= ep.p["OBS_CON_N"] or time.ticks_diff(now, o[5]) >= ep.p["OBS_CON_MS"]:
                        o[4] = 0
                        o[5] = now
                        # while it waits for its ACK the exchange holds the
                        # datagram alone: not the message, options, payload
                        r = ep.exchange(Msg(_CON, code, 0, o[1], opts, payload), o[0], False)
                        opts = payload = None
                        await r
                    else:
                        o[4] += 1
                        o[6] = ep._mid = (ep._mid + 1) & 0xFFFF
                        ep._send(ep._pack(Msg(_NON, code, o[6], o[1], opts, payload), o[0]), o[0])
            except MemoryError:
                # our heap, not the client: keep the observer and send the
                # newest state a moment later (RFC 7641 lets a server skip
                # states; dropping the observer would leave its client
                # waiting for notifications that never come)
                gc.collect()
                o[8] = 1
                await asyncio.sleep_ms(_OOM_RETRY_MS)
                continue
            except Exception:
                # a CON notification never acknowledged or RST (the client
                # is gone), or the endpoint closed
                end = True
            if end:
                if o in ep._obs:
                    ep._obs.remove(o)
                return
            if not o[8]:
                return
    finally:
        o[7] = 0


def links(res, filt):
    # The link-format document (RFC 6690) of the served resources
    # {path: [handler, obs, attrs]}: the /.well-known/core answer and the
    # registration payload.  Attributes are kept as the raw bytes given to
    # add(), so this is concatenation.  Built here from bytes literals
    # (never interned, unlike short str ones) so that a registration or a
    # plain /.well-known/core GET does not load coap/linkformat.py: its 12
    # names would be interned for good and its code, loaded and dropped,
    # would leave holes in the heap (bench/coap_footprint.py "all" run).
    # Only a query filter loads it, for its _match, and drops it again.
    match = None
    if filt:
        from coap import linkformat
        match = linkformat._match
        sys.modules.pop("coap.linkformat", None)
        try:
            delattr(sys.modules["coap"], "linkformat")
        except (AttributeError, KeyError):
            pass
    out = bytearray()
    for path, r in res.items():
        a = r[2] or b""
        if r[1] and b"obs" not in a:
            a = a + b";obs" if a else b"obs"
        path = path.encode()
        if match and not match(path, a, filt):
            continue
        out.extend(b",</" if out else b"</")
        out.extend(path)
        out.extend(b">;" if a else b">")
        out.extend(a)
    return bytes(out)


def serve(ep, m, e):
    # e: where the reply of a CON goes in the dedup ring, ep._seen[e]
    try:
        path = m.path
        m.query  # both must be UTF-8: check once, here
    except Exception:  # UnicodeError (ValueError on some ports)
        ep.bad += 1
        answer(ep, m, (_BAD_REQUEST, b"Uri-Path/Query not UTF-8", 0), e, None)
        return
    r = None
    for o in m.options:
        # RFC 7252 §5.4.1: an unrecognised critical (odd) option -> 4.02.
        # Understood: Uri-Host 3, Uri-Port 7, Uri-Path 11, Uri-Query 15,
        # Accept 17, Block2 23, Block1 27.
        if o[0] & 1 and o[0] not in (3, 7, 11, 15, 17, 23, 27):
            r = (_BAD_OPTION, b"critical option %d" % o[0], 0)
            break
    if r is None and m.opt(_BLOCK1) is not None:
        from coap import block
        r = block.receive(ep, m)  # None: body complete in m.payload
    res = ep._res.get(path)
    if r is None:
        if path == ".well-known/core":
            r = (_CONTENT, ep.links(m.query), _CT_LINK) if m.code == _GET else (_METHOD_NOT_ALLOWED, b"", None)
        elif res is None:
            r = (_NOT_FOUND, b"", None)
        else:
            r = call(res[0], m)
            if hasattr(r, "send"):  # coroutine: empty ACK now, CON response later
                if m.mtype == _CON:
                    ep._seen[e] = bytes((0x60, 0, m.mid >> 8, m.mid & 255))
                    ep._send(ep._seen[e], m.peer)
                asyncio.create_task(_later(ep, m, r, res))
                return
    answer(ep, m, r, e, res)


def call(h, m):
    try:
        return h(m)
    except Exception as ex:
        print("coap: handler", m.path, repr(ex))
        return (_INTERNAL_SERVER_ERROR, b"", None)


async def _later(ep, m, coro, res):
    try:
        r = await coro
    except Exception as ex:
        print("coap: handler", m.path, repr(ex))
        r = (_INTERNAL_SERVER_ERROR, b"", None)
    if m.mtype == _CON:
        m.mtype = None  # answer with a separate CON response
    c = answer(ep, m, r, None, res)
    if c:
        try:
            await c
        except Exception:
            pass  # client gone: nothing more to do


def build(ep, m, r, res):
    """Handler result r for request m -> (code, payload, options), with
    Observe registration and Block2 slicing applied."""
    code, payload, ct = r[0], r[1] or b"", r[2]
    opts = list(r[3]) if len(r) > 3 and r[3] else []
    if ct is not None:
        opts.append([_CONTENT_FORMAT, ct])
    b1 = getattr(m, "b1", None)
    if b1 is not None and code != _CONTINUE:
        opts.append([_BLOCK1, b1])
    v = m.uopt(_OBSERVE)
    if v is not None and res and res[1] and m.code == _GET and not m.uopt(_BLOCK2, 0) >> 4:
        # a GET with Observe on an obs resource (not a later block of a
        # notification): register, refresh or deregister the observer
        l = ep._obs
        for o in l:
            if o[0] == m.peer and o[1] == m.token:
                break
        else:
            o = None
        if v == 1 or code >= 96:
            if o:
                l.remove(o)
        elif v == 0 and (o or len(l) < ep.p["OBS_MAX"]):
            # the request is kept encoded: ~50 B instead of the Msg with
            # its instance dict and option lists (~500 B on the 64-bit host);
            # a copy of m (its mtype is None in a separate response), packed
            # without ep.wrap (peer None)
            q = bytes(ep._pack(Msg(_CON, _GET, 0, m.token, m.options, m.payload), None))
            if o is None:
                l.append([m.peer, m.token, m.path, q, 0, time.ticks_ms(), -1, 0, 0])
            else:
                o[3] = q
            global _seq
            _seq = (_seq + 1) & 0xFFFFFF
            opts.append([_OBSERVE, _seq])
    if code < 128 and (len(payload) > (16 << ep.szx) or m.opt(_BLOCK2) is not None):
        from coap import block
        code, payload = block.slice2(ep, m, code, payload, opts)
    return code, payload, opts


def answer(ep, m, r, e, res):
    """Send the response to request m from handler result r.
    Returns a coroutine for a separate CON response, else None."""
    code, payload, opts = build(ep, m, r, res)
    if m.mtype == _CON:
        msg = Msg(_ACK, code, m.mid, m.token, opts, payload)
    elif m.mtype == _NON:
        ep._mid = (ep._mid + 1) & 0xFFFF
        msg = Msg(_NON, code, ep._mid, m.token, opts, payload)
    else:
        return ep.exchange(Msg(_CON, code, 0, m.token, opts, payload), m.peer, False)
    data = ep._pack(msg, m.peer)
    if e and m.mtype == _CON:
        # the ring keeps an exact copy: the view of the upper-bound encode
        # buffer would hold two more objects and the buffer's slack
        ep._seen[e] = bytes(data)
    ep._send(data, m.peer)
