"""The lamp's state as SenML: the readings, the periodic report, the fault
events and the answer to GET lamp/state (also each observe notification).
Loaded for the call through lamp.use() (the Controller's __getattr__, and
lamp/resources.py for lamp/state) and dropped afterwards: a report is due
every 15 minutes and a notification at each change of level, relay or
source, so this code need not sit on the heap all night in between
(docs/lamp.md "Footprint"). dev.log is imported by the functions that log
(an event, a failed push) and dev.clock not at all (the time is dev.now(),
in the dev package): a report or a notification loads only this module,
fmt.senml and fmt.cbor (lamp.use drops them after).
"""
import dev
from fmt import senml
from micropython import const

_GET = const(1)  # CoAP numbers (RFC 7252): no name lookups in coap.codec
_CONTENT = const(69)  # 2.05
_METHOD_NOT_ALLOWED = const(133)  # 4.05


def readings(ctl):
    d = ctl.dim
    e = ctl.energy
    r = [("level", "%", int(d.level + 0.5), None), ("target", "%", d.target, None),
         ("relay", None, d.relay, None), ("energy", "Wh", round(e.wh, 2), None),
         ("hours", "s", int(e.on_s), None), ("switch_on", None, e.switch_on, None),
         ("mode", None, "safe" if ctl.safe else "normal", None)]
    if ctl.power is not None:
        r.append(("power", "W", round(ctl.power, 1), None))
    if ctl.voltage is not None:
        r.append(("voltage", "V", round(ctl.voltage, 1), None))
    if ctl.outbox.dropped:
        r.append(("dropped", None, ctl.outbox.dropped, None))
    return r


def now(ctl):
    """The UTC time as an int, None while unknown."""
    t = dev.now()
    return int(t) if t is not None else None


def _bn(ctl):
    # the SenML base name (not kept in the controller: one attribute fewer,
    # see lamp/control.py)
    return "urn:dev:ep:%s:" % ctl.cfg.get("ep", "lamp")


def pack(ctl, r):
    # a bytearray for this pack only (no cbor.Writer: its class, fmt/cborw.py,
    # is not loaded for a report or a notification; one kept in the
    # controller was 0.5 KB of heap all night for a report every 15 minutes)
    return senml.encode(r, _bn(ctl), now(ctl))


def report(ctl):
    """Queue a report now (also the `report` command)."""
    return push(ctl, readings(ctl))


def push(ctl, r):
    # Returns ctl.on_change (the observe notification and the sender's
    # wake-up), called by the Controller (lamp/control.py __getattr__) once
    # lamp.use() has dropped this module and fmt.senml: the notification's
    # task was the allocation that failed first with them on the heap.
    try:
        ctl.outbox.push(pack(ctl, r))
    except OSError as e:
        from dev import log
        log.error("outbox push: %s" % e)
    return ctl.on_change


def on_event(ctl, name, active):
    # lamp/faults.py's callback: a fault raised or cleared
    from dev import log
    log.event("%s %s" % ("RAISED" if active else "cleared", name), "W" if active else "I")
    return push(ctl, [("ev:" + name, None, active, None)])


def serve(ctl, req):
    """GET lamp/state (lamp/resources.py): the readings plus ev:NAME true for
    each active fault; SenML CBOR, JSON with Accept 110."""
    if req.method != _GET:
        return _METHOD_NOT_ALLOWED, b"", None
    r = readings(ctl)
    for n in sorted(ctl.faults.active):
        r.append(("ev:" + n, None, True, None))
    if req.accept == senml.CT_JSON:
        return _CONTENT, senml.encode_json(r, _bn(ctl), now(ctl)).encode(), senml.CT_JSON
    return _CONTENT, bytes(pack(ctl, r)), senml.CT_CBOR
