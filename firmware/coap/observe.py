"""RFC 7641 Observe, server side.

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
from coap.codec import Msg, CON, NON, OBSERVE


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
                r = ep._call(res[0], m)
                if hasattr(r, "send"):
                    r = await r
                m.code = 0  # build() must not treat this as a new registration
                code, payload, opts = ep.build(m, r, res)
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
                    ep._send(ep._pack(Msg(NON, code, o[6], o[1], opts, payload), o[0]), o[0])
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
