"""The bin's wake window on the network (loaded only when transmitting).

Wi-Fi on with the saved channel/BSSID; register (POST /rd?...&b=UQ) or,
with the location kept from an earlier wake, update (POST /rd/ID; 4.04 ->
register again, coap.register); set the RTC if unknown (NTP, else GET /time);
POST the outbox to /dp, oldest first, as many packs per message as fit in
one datagram (waste/dp.py), each 2.04 acking exactly the items it carried.
The commands found in the answers go back to the cycle (waste/cycle.py),
which applies them with this module dropped and calls window() again to
POST their results to /cr (whose answer may carry more), then switches the
radio off and backs off if a session failed. No Wi-Fi, no answer or 5.03:
None, items kept. A 4.04 to /dp means the gateway has no registration for this source address
(NAT rebinding, gateway data reset): register again and resend, once per
wake. Any other 4.xx means the gateway will never take those packs: they are
dropped and counted, or the queue would be stuck behind them forever.

Energy on the host: the sim HAL's clock already spends the Wi-Fi
association; here each CoAP exchange adds _RTT_MS and each retransmission or
final timeout the expected wait of the configured ACK_TIMEOUT schedule, so
radio_ms reflects the protocol, not the host's speed. On a board _spend()
is a no-op: the ticks are real.

Heap: this module and the CoAP stack are loaded only by a wake that
transmits, after the measurement code was dropped; the command code
(dev.commands, waste.actions, waste.conf) only when an answer carries
commands (docs/bin.md "Memory").
"""
import asyncio
import gc
import hal
from micropython import const
from coap import codec
from coap.endpoint import Endpoint, Timeout, addr
from waste.cycle import unload

_RTT_MS = const(30)        # one CoAP exchange on the local Wi-Fi incl. gateway work
# The largest datagram the bin's endpoint takes in (coap.endpoint MAX_MSG):
# the gateway's answers to a queue-mode device carry at most 256 B of
# commands (docs/protocol.md) + 128 B of header and options. Its receive
# buffer (one byte more, waste.cycle _HOLE) is held through every session:
# 385 B, not the 1,153 B of a 1024-byte block.
_MAX_MSG = const(384)
_T_VALID = const(1704067200)  # RTC readings before 2024 mean "time unknown"

_advance = getattr(hal, "advance", None)   # sim only: spend documented time


def _spend(c, rtts, n):
    """Sim only: rtts CoAP exchanges plus the expected wait of n
    retransmission timeouts (ACK_TIMEOUT doubling, mean random factor)."""
    if _advance:
        # in quarters of a ms: 5/4, the mean of ACK_RANDOM_FACTOR 1.5's
        # uniform draw, in integers (the same sum as in floats, no float
        # global held through the radio phase)
        t = 0
        for k in range(n):
            t += c.s["ack_timeout_ms"] * 5 << k
        _advance(rtts * _RTT_MS + t // 4)


async def window(c, res=None):
    """One CoAP session of the wake window for cycle c; returns the gateway's
    answers that carry commands, as [(payload, content-format)] ([] if
    none), or None when it failed (c.error says why).

    res None, the first one: Wi-Fi on, register or update, the time if
    unknown, the outbox to /dp. res (CBOR bytes), after the cycle applied
    the commands with this module and the CoAP stack dropped: this wake's
    reading if a `report` asked for it, then res to /cr. The endpoint binds
    the same local port in every session of a wake, so the gateway sees one
    address."""
    ep = task = None
    try:
        if res is None:
            # Wi-Fi on, the settings made lean (waste/radio.py, dropped
            # before the endpoint is made)
            from waste.radio import connect
            ok = connect(c)
            connect = None
            unload("waste.radio")
            if not ok:
                return None
        # a clean heap for the endpoint: its receive loop needs one
        # contiguous MAX_MSG block per datagram (measured: ~3 KB less heap).
        # After commands, the block the cycle kept for the endpoint's receive
        # buffer (in c.ep, waste/cycle.py) is let go only after the collection: garbage but
        # not yet free, it cannot be taken by the small objects Endpoint()
        # makes first, and the allocator's own collection frees it for the
        # buffer when no other piece fits (as coap.endpoint's run() does)
        gc.collect()
        c.ep = None
        # the endpoint on this wake's local port: a random one of the
        # dynamic range (49152..65535) the first time, the same one after
        # (c.s read here: connect() made it lean; no local keeps the old one)
        s = c.s
        p = {"ACK_TIMEOUT": s["ack_timeout_ms"], "MAX_RETRANSMIT": s["max_retransmit"], "MAX_MSG": _MAX_MSG}
        s = None
        if c.sess:
            port, mid = c.sess
            ep = Endpoint(port, p, mid=mid)
            mid = None
        else:
            import os   # os.urandom: the random module may be seeded by the sim HAL
            for k in range(8):
                port = 49152 + (int.from_bytes(os.urandom(2), "big") & 0x3FFF)
                try:
                    ep = Endpoint(port, p)
                    break
                except OSError:   # in use
                    if k == 7:
                        raise
        p = None
        c.ep = ep
        task = asyncio.create_task(ep.run())
        gw = c.cfg["gateway"]
        c.gw = addr(gw["host"], gw.get("port", 5683))
        if res is None:
            # the registration (waste/reg.py), called from here (no frame
            # of its own held through it); its code and coap.register dropped
            # after: room for dev.clock, which is loaded only when the time
            # is unknown (after a power-on), then for the flush
            from waste.reg import register
            ok = await register(c)
            register = None
            unload("waste.reg", "coap.register")
            if not ok:
                return None
            if c.packed is not None or hal.time() < _T_VALID:
                # after a power-on: the time, the pack that waited for it
                from waste.radio import timed
                await timed(c)
                timed = None
                unload("waste.radio")
            # the outbox to /dp (waste/dp.py, loaded only now: not on the
            # heap during the registration; the cycle drops it with us)
            from waste.dp import flush
            return await flush(c)
        from waste.cr import results
        return await results(c, res)
    except Timeout:
        c.error = "timeout"
    except Exception as e:   # never let a network oddity skip the deep sleep
        c.error = "%s: %s" % (type(e).__name__, e)
    finally:
        if ep:
            c.sess = (port, ep._mid)   # the next session of this wake continues them
            ep.close()
            c.ep = None
        if task:
            task.cancel()
    return None


async def post(c, path, payload, ct):
    """One CoAP POST over cycle c's session (c.ep to c.gw, set by window())
    with its physical cost accounted; None on timeout."""
    ep = c.ep
    retx = ep.retx
    # free the garbage now: the receive loop needs one contiguous
    # MAX_MSG block per datagram and a fragmented heap cannot give it
    gc.collect()
    hal.wdt_feed()   # a wake window with retransmissions may pass 60 s
    c.bytes += len(payload)
    try:
        # the exchange keeps the packed datagram alone: no second copy of
        # the body held here through it (the caller drops its own too)
        r = ep.request(codec.POST, c.gw, path, payload, ct=ct)
        payload = None
        r = await r
    except Timeout:
        _spend(c, 0, c.s["max_retransmit"] + 1)
        c.error = "timeout"
        return None
    _spend(c, 1, ep.retx - retx)
    return r
