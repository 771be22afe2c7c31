"""CoAP requests to the lamp's resources other than lamp/state and cmd (the
table is in lamp/resources.py). Loaded for each request through lamp.use()
and dropped afterwards, like lamp/admin.py whose operator actions they call
(through the Controller).
"""
import json
import hal
from coap import codec
from fmt import cbor

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


def serve(srv, req):
    """A request to a lamp resource other than lamp/state (table in
    lamp/resources.py); ValueError/TypeError/KeyError -> 4.00 + reason."""
    try:
        return _serve(srv, req)
    except (ValueError, TypeError, KeyError) as e:
        return codec.BAD_REQUEST, str(e).encode(), CT_TEXT


def _serve(srv, req):
    ctl = srv.ctl
    path = req.path
    m = req.method
    GET, PUT, POST = codec.GET, codec.PUT, codec.POST
    if path == "dev/info":
        import version
        return _out(req, {"fw": version.VERSION, "up_s": hal.ticks_ms() // 1000, "heap": hal.free_heap(),
                          "reset": hal.reset_cause(), "rssi": hal.rssi(), "mode": "safe" if ctl.safe else "normal",
                          "id": hal.machine_id()})
    if path == "lamp/override":
        if m == GET:
            o = ctl.overrides[0] if ctl.overrides else None
            return _out(req, {"level": o[0], "start": o[1], "exp": o[2]} if o else {})
        if m == codec.DELETE:
            ctl.resume()
            return codec.DELETED, b"", None
        if m in (PUT, POST):
            b = _body(req)
            if isinstance(b, int):
                b = {"level": b}
            if not isinstance(b, dict):
                raise ValueError("expected {level, duration}")
            ctl.set_override(b.get("level"), b.get("duration", 0))
            return codec.CHANGED, b"", None
    elif path == "lamp/calendar":
        if m == GET:
            data = ctl.calendar_cbor()
            if req.accept == CT_JSON:
                return _out(req, cbor.loads(data))
            return codec.CONTENT, data, CT_CBOR
        if m == PUT:
            ctl.set_calendar(_body(req), req.payload if req.ct == CT_CBOR else None)
            return codec.CHANGED, b"", None
    elif path == "lamp/type":
        if m == GET:
            return _out(req, ctl.lamp_type())
        if m == PUT:
            ctl.set_type(_body(req))
            return codec.CHANGED, b"", None
    elif path == "dev/config":
        if m == GET:
            return _out(req, ctl.cfg)
        if m in (POST, PUT):
            ctl.set_config(_body(req))
            return codec.CHANGED, b"", None
    elif path == "dev/reboot":
        if m == POST:
            ctl.reboot()  # lamp/admin.py
            return codec.CHANGED, b"", None
    return codec.METHOD_NOT_ALLOWED, b"", None
