"""The serving side of an Endpoint: request dispatch and RFC 7641 Observe.

Loaded by the first `Endpoint.add()`, so a client-only device (a bin) does
not carry it (3 KB less heap).  Dispatch: Uri-Path routing,
/.well-known/core, Block1 reassembly (coap.block), piggybacked answers for
plain handlers, an empty ACK then a separate CON response for coroutine
handlers, 5.00 for a handler that raises, 4.00 for a non-UTF-8 path.

An observer is `[peer, token, path, request, non_count, last_con_ms,
last_non_mid, busy, pending]`, at most OBS_MAX of them (a GET+Observe beyond
that is answered without the Observe option: not registered).

* GET with Observe=0 on an `obs` resource registers (or refreshes the same
  peer+token); Observe=1 deregisters; an RST to a notification deregisters.
* Every notification carries the next value of one 24-bit sequence counter.
* Notifications are NON, except at least every OBS_CON_N-th one or when the
  last CON one is older than OBS_CON_MS: that CON is retransmitted like a
  request and the observer is dropped when it is never acknowledged (or
  RST), so a dead client does not stay registered forever.
* An error answer from the handler is sent and ends the observation.
* If the state changes while a notification is still being retransmitted,
  the newest state is sent when it completes (no queue of stale states).

Client side (`Endpoint.observe` / `unobserve`): `watch` registers and
`note` delivers notifications newer than the last one (RFC 7641 §3.4:
24-bit sequence comparison, or 128 s passed), and ends the observation on
an error or a response without Observe.  A notification carrying Block2
is delivered as its first block.
"""
import asyncio
import time

from coap import codec
from coap.codec import Msg, CON, NON, ACK, OBSERVE


class Observers:
    def __init__(self, ep):
        self.ep = ep
        self.l = []
        self.seq = 2

    def _next(self):
        self.seq = (self.seq + 1) & 0xFFFFFF
        return self.seq

    def count(self, path=None):
        return len([o for o in self.l if path is None or o[2] == path.strip("/")])

    def clear(self):
        self.l = []

    def _find(self, peer, token):
        for o in self.l:
            if o[0] == peer and o[1] == token:
                return o
        return None

    def _drop(self, o):
        if o in self.l:
            self.l.remove(o)

    def on_request(self, m, code, opts):
        """Called for a GET on an obs resource, before the answer is sent."""
        v = m.uopt(OBSERVE)
        o = self._find(m.peer, m.token)
        if v is None or m.uopt(codec.BLOCK2, 0) >> 4:
            return  # plain GET, or a later block of a notification
        if v == 1 or code >= 96:
            if o:
                self._drop(o)
            return
        if v != 0:
            return
        if o is None:
            if len(self.l) >= self.ep.p["OBS_MAX"]:
                return
            o = [m.peer, m.token, m.path, m, 0, time.ticks_ms(), -1, 0, 0]
            self.l.append(o)
        else:
            o[3] = m
        opts.append([OBSERVE, self._next()])

    def reset(self, peer, mid):
        """RST from peer for message id mid: drop the observer it was for."""
        for o in self.l:
            if o[0] == peer and o[6] == mid:
                self._drop(o)
                return

    def notify(self, path):
        for o in self.l:
            if o[2] == path:
                if o[7]:
                    o[8] = 1  # busy: send the newest state when done
                else:
                    asyncio.create_task(self._send(o))

    async def _send(self, o):
        ep = self.ep
        o[7] = 1
        try:
            while o in self.l:
                o[8] = 0
                res = ep._res.get(o[2])
                if res is None:
                    self._drop(o)
                    return
                m = o[3]
                r = call(res[0], m)
                if hasattr(r, "send"):
                    try:
                        r = await r
                    except Exception as ex:
                        print("coap: handler", o[2], repr(ex))
                        r = (codec.INTERNAL_SERVER_ERROR, b"", None)
                m.code = 0  # build() must not treat this as a new registration
                code, payload, opts = build(ep, m, r, res)
                m.code = codec.GET
                now = time.ticks_ms()
                p = ep.p
                end = code >= 128
                if not end:
                    opts.append([OBSERVE, self._next()])
                if end or o[4] + 1 >= p["OBS_CON_N"] or time.ticks_diff(now, o[5]) >= p["OBS_CON_MS"]:
                    o[4] = 0
                    o[5] = now
                    try:
                        await ep.exchange(Msg(CON, code, 0, o[1], opts, payload), o[0], False)
                    except Exception:
                        end = True  # never acknowledged, or RST: the client is gone
                else:
                    o[4] += 1
                    o[6] = ep._next_mid()
                    try:
                        ep._send(ep._pack(Msg(NON, code, o[6], o[1], opts, payload), o[0]), o[0])
                    except Exception:
                        end = True  # endpoint closed (or out of memory)
                if end:
                    self._drop(o)
                    return
                if not o[8]:
                    return
        finally:
            o[7] = 0


async def watch(ep, peer, path, cb, query, accept):
    r = await ep.request(codec.GET, peer, path, query=query, accept=accept, options=[[OBSERVE, 0]])
    v = r.uopt(OBSERVE)
    if v is not None and r.code < 96:
        ep._cobs.append([r.peer, r.token, cb, v, time.ticks_ms()])
    return r


def note(ep, m):
    """A response that matched no exchange: one of our observations?
    Returns True when it was (the endpoint then ACKs, else RSTs)."""
    for o in ep._cobs:
        if o[0] == m.peer and o[1] == m.token:
            v = m.uopt(OBSERVE)
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


# ---- request dispatch (moved out of the endpoint: see the module docstring) --

def serve(ep, m, e):
    try:
        path = m.path
        m.query  # both must be UTF-8: check once, here
    except Exception:  # UnicodeError (ValueError on some ports)
        ep.bad += 1
        answer(ep, m, (codec.BAD_REQUEST, b"Uri-Path/Query not UTF-8", 0), e, None)
        return
    r = None
    for o in m.options:
        # RFC 7252 §5.4.1: an unrecognised critical (odd) option -> 4.02.
        # Understood: Uri-Host 3, Uri-Port 7, Uri-Path 11, Uri-Query 15,
        # Accept 17, Block2 23, Block1 27.
        if o[0] & 1 and o[0] not in (3, 7, 11, 15, 17, 23, 27):
            r = (codec.BAD_OPTION, b"critical option %d" % o[0], 0)
            break
    if r is None and m.opt(codec.BLOCK1) is not None:
        from coap import block
        r = block.receive(ep, m)  # None: body complete in m.payload
    if r is None:
        if path == ".well-known/core":
            r = (codec.CONTENT, ep.links(m.query), codec.CT_LINK) if m.code == codec.GET else (codec.METHOD_NOT_ALLOWED, b"", None)
        else:
            res = ep._res.get(path)
            if res is None:
                r = (codec.NOT_FOUND, b"", None)
            else:
                r = call(res[0], m)
                if hasattr(r, "send"):  # coroutine: empty ACK now, CON response later
                    if m.mtype == CON:
                        e[3] = bytes((0x60, 0, m.mid >> 8, m.mid & 255))
                        ep._send(e[3], m.peer)
                    asyncio.create_task(_later(ep, m, r, res))
                    return
    answer(ep, m, r, e, ep._res.get(path))


def call(h, m):
    try:
        return h(m)
    except Exception as ex:
        print("coap: handler", m.path, repr(ex))
        return (codec.INTERNAL_SERVER_ERROR, b"", None)


async def _later(ep, m, coro, res):
    try:
        r = await coro
    except Exception as ex:
        print("coap: handler", m.path, repr(ex))
        r = (codec.INTERNAL_SERVER_ERROR, b"", None)
    if m.mtype == CON:
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
        opts.append([codec.CONTENT_FORMAT, ct])
    b1 = getattr(m, "b1", None)
    if b1 is not None and code != codec.CONTINUE:
        opts.append([codec.BLOCK1, b1])
    if res and res[1] and ep._obs and m.code == codec.GET:
        ep._obs.on_request(m, code, opts)
    if code < 128 and (len(payload) > (16 << ep.szx) or m.opt(codec.BLOCK2) is not None):
        from coap import block
        code, payload = block.slice2(ep, m, code, payload, opts)
    return code, payload, opts


def answer(ep, m, r, e, res):
    """Send the response to request m from handler result r.
    Returns a coroutine for a separate CON response, else None."""
    code, payload, opts = build(ep, m, r, res)
    if m.mtype == CON:
        msg = Msg(ACK, code, m.mid, m.token, opts, payload)
    elif m.mtype == NON:
        msg = Msg(NON, code, ep._next_mid(), m.token, opts, payload)
    else:
        return ep.exchange(Msg(CON, code, 0, m.token, opts, payload), m.peer, False)
    data = ep._pack(msg, m.peer)
    if e:
        e[3] = data if m.mtype == CON else None
    ep._send(data, m.peer)
