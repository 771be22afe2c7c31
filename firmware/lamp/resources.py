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

Only lamp/state (read at each observe notification) is served from here.
The other resources and the command actions are operator work: served by
lamp/requests.py, loaded for the request and dropped afterwards (lamp.use).
One Server object is the handler of every path and the command table.
"""
from micropython import const
from fmt import senml
from dev.commands import Commands
from lamp import use

_RES = (("lamp/state", b'rt="eclor.lamp.state";ct=112;obs'), ("lamp/override", b'rt="eclor.lamp.override"'),
        ("lamp/calendar", b'rt="eclor.lamp.calendar";ct="60 50"'), ("lamp/type", b'rt="eclor.lamp.type"'),
        ("dev/info", b'rt="eclor.dev.info";ct=60'), ("dev/config", b'rt="eclor.dev.config"'),
        ("dev/reboot", b'rt="eclor.dev.reboot"'), ("cmd", b'rt="eclor.cmd";ct=60'))
_GET = const(1)  # CoAP numbers (RFC 7252): no name lookups in coap.codec
_CONTENT = const(69)  # 2.05
_METHOD_NOT_ALLOWED = const(133)  # 4.05
ACTIONS = ("level", "resume", "calendar", "lamp_type", "config", "report", "reboot")


class Server:
    def __init__(self, ctl, reboot):
        self.ctl = ctl
        self.reboot = reboot

    def __call__(self, req):
        # the endpoint's handler of every lamp path
        if req.path != "lamp/state":
            return use("requests", "serve", self, req)
        if req.method != _GET:
            return _METHOD_NOT_ALLOWED, b"", None
        ctl = self.ctl
        r = ctl.readings()
        for n in sorted(ctl.faults.active):
            r.append(("ev:" + n, None, True, None))
        if req.accept == senml.CT_JSON:
            return _CONTENT, senml.encode_json(r, ctl.bn, ctl._t_now()).encode(), senml.CT_JSON
        return _CONTENT, bytes(ctl.pack(r)), senml.CT_CBOR

    def get(self, action):
        # dev.commands' table lookup: action -> handler(params), None if unknown
        if action in ACTIONS:
            return lambda p: use("requests", "act", self, action, p)
        return None


def install(ep, ctl, reboot):
    """Serve the lamp's resources on endpoint ep for controller ctl."""
    srv = Server(ctl, reboot)
    cmds = ctl.cmds = Commands(srv)
    for path, attrs in _RES:
        ep.add(path, srv, obs=path == "lamp/state", attrs=attrs)
    return cmds
