"""CoAP resources of the lamp (docs/lamp.md has the table).

  lamp/state     GET, observable: SenML (112 CBOR; 110 JSON with Accept 110)
  lamp/override  GET / PUT {"level", "duration"} (or text "50") / DELETE = resume
  lamp/calendar  GET / PUT the calendar (ct 60 CBOR or 50 JSON; Block1/Block2
                 by the endpoint); invalid -> 4.00 with the reason, old kept
  lamp/type      GET / PUT lamp type parameters (validated, persisted)
  dev/info       GET firmware, uptime, free heap, reset cause, RSSI, boots
  dev/config     GET / POST changes (validated by dev.config, persisted)
  dev/reboot     POST -> 2.04, reboot half a second later
  cmd            POST command map(s) (docs/architecture.md) -> result map(s)

Maps are answered in CBOR (60) unless the request's Accept is 50 (JSON).
Bad input is a 4.00 with the reason as text, never an exception upward.
"""
import json
import hal
from coap import codec
from fmt import cbor, senml
from dev.commands import Commands

CT_TEXT = 0
CT_JSON = 50
CT_CBOR = 60


def _body(req):
    ct = req.ct
    data = req.payload
    if ct == CT_CBOR:
        return cbor.loads(data)
    if ct == CT_TEXT:
        try:
            return int(bytes(data).decode())
        except ValueError:
            raise ValueError("expected a number")
    if ct == CT_JSON or ct is None:
        try:
            return json.loads(bytes(data).decode())
        except Exception:
            raise ValueError("invalid JSON")
    raise ValueError("unsupported content-format %s" % ct)


def _out(req, obj, code=codec.CONTENT):
    if req.accept == CT_JSON:
        return code, json.dumps(obj).encode(), CT_JSON
    return code, cbor.dumps(obj), CT_CBOR


def _bad(reason):
    return codec.BAD_REQUEST, str(reason).encode(), CT_TEXT


def _guard(fn):
    # any ValueError/TypeError from decoding or validation -> 4.00 + reason
    def h(req):
        try:
            return fn(req)
        except (ValueError, TypeError, KeyError) as e:
            return _bad(e)
    return h


def install(ep, ctl, reboot):
    """Serve the lamp's resources on endpoint ep for controller ctl."""
    cmds = Commands(actions(ctl, reboot))
    ctl.cmds = cmds
    GET, PUT, POST, DELETE = codec.GET, codec.PUT, codec.POST, codec.DELETE

    def state(req):
        if req.method != GET:
            return codec.METHOD_NOT_ALLOWED, b"", None
        r = ctl.readings()
        for n in sorted(ctl.faults.active):
            r.append(("ev:" + n, None, True, None))
        if req.accept == senml.CT_JSON:
            return codec.CONTENT, senml.encode_json(r, ctl.bn, ctl._t_now()).encode(), senml.CT_JSON
        return codec.CONTENT, bytes(ctl.pack(r)), senml.CT_CBOR

    def override(req):
        if req.method == GET:
            o = ctl.overrides[0] if ctl.overrides else None
            return _out(req, {"level": o[0], "start": o[1], "exp": o[2]} if o else {})
        if req.method == DELETE:
            ctl.resume()
            return codec.DELETED, b"", None
        if req.method not in (PUT, POST):
            return codec.METHOD_NOT_ALLOWED, b"", None
        b = _body(req)
        if isinstance(b, int):
            b = {"level": b}
        if not isinstance(b, dict):
            raise ValueError("expected {level, duration}")
        ctl.set_override(b.get("level"), b.get("duration", 0))
        return codec.CHANGED, b"", None

    def calendar(req):
        if req.method == GET:
            data = ctl.calendar_cbor()
            if req.accept == CT_JSON:
                return _out(req, cbor.loads(data))
            return codec.CONTENT, data, CT_CBOR
        if req.method != PUT:
            return codec.METHOD_NOT_ALLOWED, b"", None
        ctl.set_calendar(_body(req), req.payload if req.ct == CT_CBOR else None)
        return codec.CHANGED, b"", None

    def ltype(req):
        if req.method == GET:
            return _out(req, ctl.lamp_type())
        if req.method != PUT:
            return codec.METHOD_NOT_ALLOWED, b"", None
        ctl.set_type(_body(req))
        return codec.CHANGED, b"", None

    def info(req):
        import version
        return _out(req, {"fw": version.VERSION, "up_s": hal.ticks_ms() // 1000, "heap": hal.free_heap(),
                          "reset": hal.reset_cause(), "rssi": hal.rssi(), "mode": "safe" if ctl.safe else "normal",
                          "id": hal.machine_id()})

    def conf(req):
        if req.method == GET:
            return _out(req, ctl.cfg)
        if req.method not in (POST, PUT):
            return codec.METHOD_NOT_ALLOWED, b"", None
        ctl.set_config(_body(req))
        return codec.CHANGED, b"", None

    def rb(req):
        if req.method != POST:
            return codec.METHOD_NOT_ALLOWED, b"", None
        reboot()
        return codec.CHANGED, b"", None

    def cmd(req):
        if req.method != POST:
            return codec.METHOD_NOT_ALLOWED, b"", None
        ct = CT_JSON if req.ct == CT_JSON else CT_CBOR
        res = cmds.apply_payload(req.payload, ct)
        out = res[0] if len(res) == 1 else res
        if ct == CT_JSON:
            return codec.CHANGED, json.dumps(out).encode(), CT_JSON
        return codec.CHANGED, cbor.dumps(out), CT_CBOR

    ep.add("lamp/state", _guard(state), obs=True, attrs=b'rt="eclor.lamp.state";ct=112;obs')
    ep.add("lamp/override", _guard(override), attrs=b'rt="eclor.lamp.override"')
    ep.add("lamp/calendar", _guard(calendar), attrs=b'rt="eclor.lamp.calendar";ct="60 50"')
    ep.add("lamp/type", _guard(ltype), attrs=b'rt="eclor.lamp.type"')
    ep.add("dev/info", _guard(info), attrs=b'rt="eclor.dev.info";ct=60')
    ep.add("dev/config", _guard(conf), attrs=b'rt="eclor.dev.config"')
    ep.add("dev/reboot", _guard(rb), attrs=b'rt="eclor.dev.reboot"')
    ep.add("cmd", _guard(cmd), attrs=b'rt="eclor.cmd";ct=60')
    return cmds


def actions(ctl, reboot):
    """Command action table (docs/architecture.md) -> handlers(params)."""
    def level(p):
        ctl.set_override(p.get("level"), p.get("duration", 0))
        return {"target": ctl.dim.target}

    def calendar(p):
        return {"calendar": ctl.set_calendar(p.get("calendar"))}

    def report(p):
        ctl.report()

    def rb(p):
        reboot()

    return {"level": level, "resume": lambda p: ctl.resume(), "calendar": calendar,
            "lamp_type": ctl.set_type, "config": ctl.set_config, "report": report, "reboot": rb}
