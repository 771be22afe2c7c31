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

_RTT_MS = const(30)        # one CoAP exchange on the local Wi-Fi incl. gateway work
_RANDOM_FACTOR = 1.25      # mean of ACK_RANDOM_FACTOR 1.5's uniform draw
_MAX_POST = const(1024)    # bytes per /dp POST: one datagram, no block-wise
_MAX_CMD_ROUNDS = const(4)  # /cr answers that may carry further commands
_CT_CBOR = const(60)
_T_VALID = const(1704067200)  # RTC readings before 2024 mean "time unknown"

_advance = getattr(hal, "advance", None)   # sim only: spend documented time


def _spend(c, rtts, n):
    """Sim only: rtts CoAP exchanges plus the expected wait of n
    retransmission timeouts (ACK_TIMEOUT doubling, mean random factor)."""
    if _advance:
        t = 0
        for k in range(n):
            t += c.s["ack_timeout_ms"] * _RANDOM_FACTOR * (1 << k)
        _advance(rtts * _RTT_MS + int(t))


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
        # a clean heap for the endpoint: its receive loop needs one
        # contiguous MAX_MSG block per datagram (measured: ~3 KB less heap)
        gc.collect()
        self.ep = ep = Endpoint(0, {"ACK_TIMEOUT": s["ack_timeout_ms"], "MAX_RETRANSMIT": s["max_retransmit"]})
        task = asyncio.create_task(ep.run())
        gw = c.cfg["gateway"]
        self.gw = addr(gw["host"], gw.get("port", 5683))
        try:
            if not await self.register():
                return False
            from dev import clock
            if not clock.time_known():
                await clock.sync(ep, self.gw, c.cfg.get("ntp", "pool.ntp.org"))
                _spend(c, 1, 0)
            clock = None
            from waste.cycle import unload
            unload("coap.rd", "dev.clock")    # done with them: heap for the flush
            if c.deferred is not None and hal.time() >= _T_VALID:
                c.queue(int(hal.time()), c.deferred)
            cmds = await self.flush()
            if cmds is None:
                return False
            rounds = 0
            while cmds and rounds < _MAX_CMD_ROUNDS:
                rounds += 1
                res = _apply(c, cmds)
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
                r = await self.post("cr", res, _CT_CBOR)
                if r is None:
                    return False
                if r.code == codec.CHANGED:
                    cmds += _decode_cmds(r)
            # every flush() above returned only once the outbox was empty
            return True
        except Timeout:
            c.error = "timeout"
            return False
        finally:
            ep.close()
            task.cancel()

    async def post(self, path, payload, ct):
        """One CoAP POST with its physical cost accounted; None on timeout."""
        c, ep = self.c, self.ep
        retx = ep.retx
        # free the garbage now: the receive loop needs one contiguous
        # MAX_MSG block per datagram and a fragmented heap cannot give it
        gc.collect()
        hal.wdt_feed()   # a wake window with retransmissions may pass 60 s
        c.bytes += len(payload)
        try:
            r = await ep.request(codec.POST, self.gw, path, payload, ct=ct)
        except Timeout:
            _spend(c, 0, c.s["max_retransmit"] + 1)
            c.error = "timeout"
            return None
        _spend(c, 1, ep.retx - retx)
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
        if ok:
            _spend(c, 1 + (loc is not None and reg.location != loc), self.ep.retx - retx)
            st["rd"] = reg.location
            st["rd_lt"] = lt
        else:
            _spend(c, 0, s["max_retransmit"] + 1)
            c.error = "register %s" % reg.last_code
        return ok

    async def flush(self):
        """POST the backlog to /dp; returns the commands in the answers ([] if
        none), or None when the gateway did not take everything."""
        c = self.c
        ob = c.outbox()
        cmds = []
        while len(ob):
            body, n, last = _body(ob.peek(16))
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
            cmds += _decode_cmds(r)
        return cmds


def _body(items):
    """(payload, n, seq of the last) for the oldest packs that fit in one
    /dp POST (_MAX_POST bytes). Several packs are joined into one SenML
    array: same as fmt.senml.concat for the packs the wake makes (fewer
    than 24 records: one-byte array head), written once into a buffer of
    the right size, without fmt.senml or fmt.cbor on the heap (a wake
    without commands does not load them). SenML base values hold until
    changed, so the joined array means exactly the union of the packs."""
    size = recs = n = 0
    for seq, data in items:
        if n and size + len(data) > _MAX_POST:
            break
        size += len(data)
        recs += data[0] & 0x1F
        n += 1
    if n == 1:
        return items[0][1], 1, items[0][0]
    # CBOR array head: < 24 items in the initial byte, else one more byte
    # (a 1024-byte body holds fewer than 256 records of at least 5 bytes)
    h = 1 if recs < 24 else 2
    body = bytearray(h + size - n)
    if h == 1:
        body[0] = 0x80 | recs
    else:
        body[0] = 0x98
        body[1] = recs
    for i in range(n):
        d = items[i][1]
        body[h:h + len(d) - 1] = memoryview(d)[1:]
        h += len(d) - 1
    return body, n, items[n - 1][0]


def _decode_cmds(r):
    """Command maps from an answer: CBOR (ct 60) or JSON (ct 50); [] if none."""
    if not r.payload or r.ct not in (50, _CT_CBOR):
        return []
    from dev.commands import parse
    try:
        return parse(r.payload, r.ct)
    except ValueError as e:
        return [str(e)]   # answered "failed: bad command" without an id


def _apply(c, cmds):
    """Apply command maps (waste/actions.py); returns their results as the
    CBOR payload for /cr.

    The command code (dev.commands, waste.actions, waste.conf) is loaded
    only for this and dropped before the /cr exchange: most wakes get no
    command, and the radio phase is the bin's heap peak (docs/bin.md
    "Memory"). The outbox is empty here (flush() returned): its code goes
    first, and a "report" command re-opens it. fmt.cbor is dropped too,
    which frees it only if dev.commands does not hold it."""
    from waste.cycle import unload
    c.ob = None
    unload("dev.outbox", "fmt.cbor")
    res = _run(c, cmds)
    unload("waste.actions", "waste.setconf", "waste.conf", "dev.commands", "fmt.cbor")
    from fmt import cbor
    return cbor.dumps(res)


def _run(c, cmds):
    # a call of its own: once it returned, no dead slot of this frame keeps
    # the command code alive for the GC (it scans the stack conservatively)
    from waste.actions import Actions
    return Actions(c).apply(cmds)


async def transmit(c):
    """Run the wake window for cycle c, then the back-off bookkeeping;
    True when the outbox was emptied."""
    t_on = hal.ticks_ms()
    ok = False
    try:
        ok = await Link(c).session()
    except Exception as e:   # never let a network oddity skip the deep sleep
        c.error = "%s: %s" % (type(e).__name__, e)
    finally:
        hal.wifi_off()
        c.radio_ms += hal.ticks_diff(hal.ticks_ms(), t_on)
    st, s = c.st, c.s
    if ok:
        st["fails"] = 0
        st["next_try"] = 0
    else:
        n = st.get("fails", 0)
        st["fails"] = n + 1
        wait = s["backoff_s"] << n if n < 16 else s["backoff_max_s"]
        if wait > s["backoff_max_s"]:
            wait = s["backoff_max_s"]
        if c.error and c.error.startswith("max-age "):
            wait = max(int(c.error[8:]), s["backoff_s"])
        st["next_try"] = int(hal.time()) + wait
    st["tot_tx"] = st.get("tot_tx", 0) + 1
    return ok
