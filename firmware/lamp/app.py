"""Lamp role: the controller plus the network, as asyncio tasks.

    run(cfg, safe) -> coroutine (app.py runs it)   make(cfg, safe) -> Controller

Order matters for "never dark": the controller takes its first step (the
fail-safe level until the time is known) before anything touches the
network, and the control loop never awaits the network. Tasks:

  control   step() every tick_ms (1 s), feeds the watchdog (main() itself)
  endpoint  the CoAP socket (resources in lamp/resources.py)
  register  coap.rd.Registration (et=eclor.lamp), back-off when away
  sender    outbox -> POST /dp (SenML CBOR, up to 4 packs per message);
            acked only on 2.01/2.04 (durable at the gateway); 5.03 waits
            Max-Age; a timeout backs off 5 s .. 5 min. Woken at once by
            events (waker()).
  upkeep    Wi-Fi re-association when the link is down (every link_s,
            30 s), then a registration update; clock.sync(): NTP, else
            GET /time from the gateway; every 30 s while unknown, then 6 h

If the network fails the lamp keeps following its schedule (the RTC keeps
time) and reports pile up in the bounded outbox (oldest dropped, counted).
"""
import asyncio
import hal
from micropython import const
import dev
from lamp import use
from lamp.control import Controller
# The network modules (endpoint, registration, resources) are imported in
# main() by lamp/setup.py: the technician shell builds the role with make()
# without them. dev.log, dev.clock and fmt.senml are loaded for the call
# that needs them (lamp.use) and dropped after: a log line, a clock sync
# every 6 h, the joining of several packs are rare, and between them their
# code is not on the heap.

_MAX_PACKS = const(4)
# CoAP numbers (RFC 7252) as const(): no name lookups in coap.codec, no qstrs
_POST = const(2)
_CREATED = const(65)  # 2.01
_CHANGED = const(68)  # 2.04
_BAD_REQUEST = const(128)  # 4.00
_FORBIDDEN = const(131)  # 4.03
_NOT_FOUND = const(132)  # 4.04
_SERVICE_UNAVAILABLE = const(163)  # 5.03
_MAX_AGE = const(14)  # option
_CT_SENML = const(112)  # SenML CBOR (fmt.senml.CT_CBOR)


current = None
source = None  # where the time last came from: dev.clock.sync()'s answer (upkeep)


def make(cfg, safe=False, hw=None):
    global current
    ctl = current = Controller(cfg, safe, hw)
    try:
        import app
        app.current = ctl
    except ImportError:
        pass
    return ctl


def run(cfg, safe=False):
    return main(cfg, safe)


def _log(fn, *args):
    # dev.log's fn, loaded for the line: never raises, as dev.log does not,
    # not even when there is no heap to load it (the control loop and the
    # tasks log from their except clauses); then the console line at least,
    # as dev.log prints it first (the benches look for MemoryError there)
    try:
        use("dev.log", fn, *args)
    except Exception:
        print("[E] log:", fn, args)


def waker(ep, wake):
    """ctl.on_change (each change of level, relay, fade or source; each
    event): the observe notification of lamp/state, and the sender's nap cut
    short. wake[0] is the sender's task while it naps in asyncio.sleep_ms():
    moving it in the task queue to now wakes it as Task.cancel() does a
    sleeping task, without raising into it (coap/endpoint.py _wake does the
    same) -- an asyncio.Event with wait_for_ms would keep asyncio's event
    and funcs modules (1.9 KB) on the heap all night for this."""
    def changed():
        t = wake[0]
        if t is not None:
            wake[0] = None
            q = asyncio.core._task_queue
            q.remove(t)
            q.push(t)  # no key: due now
        ep.notify("lamp/state")
    return changed


async def sender(ctl, ep, reg, gw, wake):
    """Outbox -> POST /dp. Never dies: a full heap sends one pack at a time,
    an unreadable pack is skipped, a silent gateway is retried with back-off.
    wake: [None], see waker()."""
    backoff = 5000
    n = _MAX_PACKS
    ob = ctl.outbox
    while True:
        delay = 2000  # idle: woken at once by an event or a report
        if len(ob) and reg.registered:
            delay = 0
            try:
                items = ob.peek(n)
                if not items:  # the oldest pack cannot be read (flash error): skip it
                    ob.ack(ob.seqs[0])
                    continue
                last = items[-1][0]
                body = items[0][1] if len(items) == 1 else use("fmt.senml", "concat", [b for _, b in items])
                items = None
                r = await ep.request(_POST, gw, "dp", body, ct=_CT_SENML)
                body = None
                n = _MAX_PACKS
                if r.code in (_CREATED, _CHANGED):
                    ob.ack(last)  # durable at the gateway: only now
                    backoff = 5000
                elif r.code == _SERVICE_UNAVAILABLE:
                    delay = 1000 * (r.uopt(_MAX_AGE, 60) or 1)
                elif r.code == _BAD_REQUEST:
                    ob.ack(last)  # the gateway will never take it: do not block the queue
                    _log("error", "gateway refused a report: %s" % bytes(r.payload))
                elif r.code == _NOT_FOUND or r.code == _FORBIDDEN:
                    # the gateway does not know this source address (NAT
                    # rebinding, data reset): update the registration now
                    reg.kick()
                    delay = 1000
                else:
                    delay = backoff
            except MemoryError:
                import gc
                gc.collect()
                n = 1
                delay = 1000
            except Exception:  # Timeout, Reset, OSError: the gateway is away
                delay = backoff
                backoff = min(backoff * 2, 300000)
                reg.kick()
        if delay:  # a nap, cut short by waker()
            wake[0] = asyncio.current_task()
            try:
                await asyncio.sleep_ms(delay)
            finally:  # also when cancelled: waker() must not touch a task out of the queue
                wake[0] = None


def _wifi(cfg, sec):
    """(Re)associate when the board has Wi-Fi credentials; True when up."""
    try:
        return hal.wifi_connect(sec["ssid"], sec.get("psk", ""), ip=cfg.get("ip")) is not None
    except Exception as e:
        _log("exception", "wifi", e)
        return False


async def upkeep(cfg, sec, ep, gw, reg, ms):
    """Wi-Fi link and time. The link is checked every ms: an always-on
    lamp must come back by itself after an access-point outage (the
    association blocks the loop up to 10 s; PWM and relay hold their state
    in hardware meanwhile). Time: every 30 s while unknown, else every 6 h."""
    global source
    next_sync = 0
    while True:
        try:
            now = hal.ticks_ms()
            if sec.get("ssid") and hal.rssi() is None:
                if _wifi(cfg, sec):
                    _log("event", "wifi is back")
                    reg.kick()  # new address / NAT binding: tell the gateway now
                    next_sync = now
            if hal.ticks_diff(now, next_sync) >= 0:
                # dev.clock for the sync only (its coroutine keeps it alive
                # until done); the source it found is kept here
                source = await use("dev.clock", "sync", ep, gw, cfg.get("ntp"))
                next_sync = hal.ticks_ms() + (30000 if dev.now() is None else 6 * 3600000)
        except Exception as e:  # MemoryError included: try again next round
            _log("exception", "upkeep", e)
        await asyncio.sleep_ms(ms)


async def main(cfg, safe=False, hw=None):
    ctl = make(cfg, safe, hw)
    ctl.step()  # light first
    tasks = []
    ep = None
    try:
        ep = use("setup", "network", ctl, cfg, tasks)  # one-shot: lamp/setup.py
    except (MemoryError, OSError, ImportError) as e:
        # No heap, no socket or a network module missing (a half-done update):
        # the lamp still follows its schedule, stand-alone, rather than
        # crash-looping into safe mode. Logged for the technician.
        for t in tasks:
            t.cancel()
        tasks = []
        ctl.on_change = None
        if getattr(ctl, "ep", None):
            ctl.ep.close()
        ctl.ep = ctl.reg = None
        _log("exception", "network unavailable, lamp runs stand-alone", e)
    if safe:
        _log("event", "lamp in SAFE MODE: schedule and CoAP only")
    tick_ms = ctl.p.get("tick_ms", 1000)
    try:
        # the control loop, in this coroutine: a task of its own would be one
        # more generator frame and function on the heap all night
        while True:
            hal.wdt_feed()
            try:
                ctl.step()
            except Exception as e:  # a bug in one step must not stop the light
                _log("exception", "lamp step", e)
            await asyncio.sleep_ms(tick_ms)
    finally:
        for t in tasks:
            t.cancel()
        if ep:
            ep.close()
