"""The bin's wake window on the network (loaded only when transmitting).

Wi-Fi on with the saved channel/BSSID; register (POST /rd?...&b=UQ) or,
with the location kept from an earlier wake, update (POST /rd/ID; 4.04 ->
register again, coap.rd); set the RTC if unknown (NTP, else GET /time);
POST the outbox to /dp, oldest first, as many packs per message as fit in
one datagram (MAX_POST), each 2.04 acking exactly the items it carried; apply
the commands found in the /dp answers and POST their results to /cr (whose
answer may carry more); radio off. Returns True when everything queued was
taken. No Wi-Fi, no answer or 5.03: False, items kept, the cycle backs off.
A 4.04 to /dp means the gateway has no registration for this source address
(NAT rebinding, gateway data reset): register again and resend, once per
wake. Any other 4.xx means the gateway will never take those packs: they are
dropped and counted, or the queue would be stuck behind them forever.

Energy on the host: the sim HAL's clock already spends the Wi-Fi
association; here each CoAP exchange adds RTT_MS and each retransmission or
final timeout the expected wait of the configured ACK_TIMEOUT schedule, so
radio_ms reflects the protocol, not the host's speed. On a board _spend()
is a no-op: the ticks are real.
"""
import asyncio
import gc
import hal
from coap import codec
from coap.endpoint import Endpoint, Timeout, addr
from fmt import cbor
from dev.commands import parse
import waste.actions  # noqa: F401  (loaded now, while the heap is in one piece)

RTT_MS = 30            # one CoAP exchange on the local Wi-Fi incl. gateway work
RANDOM_FACTOR = 1.25   # mean of ACK_RANDOM_FACTOR 1.5's uniform draw
MAX_POST = 1024        # bytes per /dp POST: one datagram, no block-wise
MAX_CMD_ROUNDS = 4     # /cr answers that may carry further commands
CT_CBOR = 60

_advance = getattr(hal, "advance", None)   # sim only: spend documented time


def _spend(ms):
    if _advance:
        _advance(ms)


def retx_wait_ms(ack_ms, n):
    """Expected time spent waiting for n retransmission timeouts."""
    t = 0
    for k in range(n):
        t += ack_ms * RANDOM_FACTOR * (1 << k)
    return int(t)


class Link:
    def __init__(self, c):
        self.c = c
        self.ep = None
        self.gw = None
        self.rereg = False   # one re-registration per wake on a 4.04 to /dp

    async def session(self):
        c = self.c
        st, s = c.st, c.s
        sec = c.secrets
        saved = hal.wifi_connect(sec.get("ssid", ""), sec.get("psk", ""), saved=st.get("wifi"),
                                 ip=c.cfg.get("ip"))
        if not saved:
            c.error = "wifi"
            st.pop("wifi", None)   # stale channel/BSSID: scan next time
            return False
        st["wifi"] = saved
        c.reserve = None
        gc.collect()
        self.ep = ep = Endpoint(0, {"ACK_TIMEOUT": s["ack_timeout_ms"], "MAX_RETRANSMIT": s["max_retransmit"]})
        task = asyncio.create_task(ep.run())
        gw = c.cfg["gateway"]
        self.gw = addr(gw["host"], gw.get("port", 5683))
        try:
            if not await self.register():
                return False
            await self.sync_time()
            from waste.cycle import unload
            unload("coap.rd", "dev.clock")    # done with them: heap for the flush
            if c.deferred is not None and hal.time() >= 1704067200:
                c.queue(int(hal.time()), c.deferred)
            cmds = await self.flush()
            if cmds is None:
                return False
            rounds = 0
            while cmds and rounds < MAX_CMD_ROUNDS:
                rounds += 1
                res = c.apply(cmds)
                cmds = []
                if st.get("force") and c.reading:
                    # "report": this wake's reading goes out in this window;
                    # queued already unless the wake only retried a backlog
                    if c.queued:
                        st["force"] = 0
                    else:
                        c.queue(int(hal.time()), False)
                    cmds = await self.flush()
                    if cmds is None:
                        return False
                r = await self.post("cr", cbor.dumps(res), CT_CBOR)
                if r is None:
                    return False
                if r.code == codec.CHANGED and r.payload and r.ct in (50, CT_CBOR):
                    cmds = cmds + _decode_cmds(r.payload, r.ct)
            return not len(c.outbox())
        except Timeout:
            c.error = "timeout"
            return False
        finally:
            ep.close()
            task.cancel()

    async def post(self, path, payload, ct, query=None):
        """One CoAP POST with its physical cost accounted; None on timeout."""
        c, ep = self.c, self.ep
        retx = ep.retx
        # free the garbage now: the receive loop needs one contiguous
        # MAX_MSG block per datagram and a fragmented heap cannot give it
        gc.collect()
        hal.wdt_feed()   # a wake window with retransmissions may pass 60 s
        c.bytes += len(payload)
        try:
            r = await ep.request(codec.POST, self.gw, path, payload, ct=ct, query=query)
        except Timeout:
            _spend(retx_wait_ms(c.s["ack_timeout_ms"], c.s["max_retransmit"] + 1))
            c.error = "timeout"
            return None
        _spend(RTT_MS + retx_wait_ms(c.s["ack_timeout_ms"], ep.retx - retx))
        return r

    async def register(self):
        from coap.rd import Registration
        c = self.c
        st, s = c.st, c.s
        # the lifetime must outlast the longest sleep between transmissions
        lt = max(c.cfg.get("lt", 3600), 2 * s["heartbeat_s"] + 600)
        reg = Registration(self.ep, self.gw, c.cfg["ep"], "eclor.bin", lt,
                           b'</dp>;rt="eclor.bin";ct=112', queue=True)
        if st.get("rd_lt") == lt:
            reg.location = st.get("rd")
        loc = reg.location
        retx = self.ep.retx
        ok = await reg.ensure()
        exchanges = 1 + (loc is not None and reg.location != loc)
        if ok:
            _spend(exchanges * RTT_MS + retx_wait_ms(s["ack_timeout_ms"], self.ep.retx - retx))
            st["rd"] = reg.location
            st["rd_lt"] = lt
        else:
            _spend(retx_wait_ms(s["ack_timeout_ms"], s["max_retransmit"] + 1))
            c.error = "register %s" % reg.last_code
        return ok

    async def sync_time(self):
        from dev import clock
        if clock.time_known():
            return
        await clock.sync(self.ep, self.gw, self.c.cfg.get("ntp", "pool.ntp.org"))
        _spend(RTT_MS)

    async def flush(self):
        """POST the backlog to /dp; returns the commands in the answers ([] if
        none), or None when the gateway did not take everything."""
        c = self.c
        ob = c.outbox()
        cmds = []
        while len(ob):
            items = ob.peek(16)
            size = 0
            n = 0
            for seq, data in items:
                if n and size + len(data) > MAX_POST:
                    break
                size += len(data)
                n += 1
            last = items[n - 1][0]
            body = _concat(items, n) if n > 1 else items[0][1]
            items = None
            r = await self.post("dp", body, 112)    # SenML CBOR
            body = None
            if r is None:
                return None
            if r.code == 163:   # 5.03: keep them, retry after Max-Age
                c.error = "max-age %d" % r.uopt(codec.MAX_AGE, 60)
                return None
            if r.code == 132 and not self.rereg:
                # 4.04: the gateway does not know this address (NAT
                # rebinding, its data reset): register anew, resend the same
                self.rereg = True
                c.st.pop("rd", None)
                if not await self.register():
                    return None
                continue
            if 128 <= r.code < 160:
                ob.dropped += n
                ob.ack(last)
                c.error = "refused %d" % r.code
                continue
            if r.code != codec.CHANGED:
                c.error = "dp %d" % r.code
                return None
            ob.ack(last)        # durable at the gateway: never sent again
            c.sent += n
            if r.payload and r.ct in (50, CT_CBOR):
                cmds.extend(_decode_cmds(r.payload, r.ct))
        return cmds


def _concat(items, n):
    """Join n SenML CBOR packs into one array. Same as fmt.senml.concat for
    the packs cycle.pack() makes (fewer than 24 records: one-byte array
    head), without loading fmt.senml (~5 KB of RAM) in the radio phase.
    SenML base values hold until changed, so the joined array means exactly
    the union of the packs."""
    total = 0
    for i in range(n):
        total += items[i][1][0] & 0x1F
    w = cbor.Writer(16)
    w.array(total)
    for i in range(n):
        w.raw(memoryview(items[i][1])[1:])
    return bytes(w.value())


def _decode_cmds(payload, ct):
    """Command maps from an answer: CBOR (ct 60) or JSON (ct 50)."""
    try:
        return parse(payload, ct)
    except ValueError as e:
        return [str(e)]   # answered "failed: bad command" without an id


async def transmit(c):
    """Run the wake window for cycle c; True when the outbox was emptied."""
    t_on = hal.ticks_ms()
    ok = False
    try:
        ok = await Link(c).session()
    except Exception as e:   # never let a network oddity skip the deep sleep
        c.error = "%s: %s" % (type(e).__name__, e)
    finally:
        hal.wifi_off()
        c.radio_ms += hal.ticks_diff(hal.ticks_ms(), t_on)
    return ok
