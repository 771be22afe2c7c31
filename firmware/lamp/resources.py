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

Served from here: cmd with the command actions. lamp/state (read at each
observe notification) is served by lamp/state.py, the other resources, operator
work, by lamp/requests.py: each loaded for the request and dropped afterwards
(lamp.use).
One Server object is the handler of every path and the command table
(installed by lamp/setup.py). A cmd request loads lamp/cmd.py and
dev.commands for the request only (lamp.use).
"""
from micropython import const
from lamp import use

_POST = const(2)  # CoAP numbers (RFC 7252): no name lookups in coap.codec
_CHANGED = const(68)  # 2.04
_BAD_REQUEST = const(128)  # 4.00
_METHOD_NOT_ALLOWED = const(133)  # 4.05
_ACTIONS = const(("level", "resume", "calendar", "lamp_type", "config", "report", "reboot"))


class Server:
    def __init__(self, ctl):
        self.ctl = ctl

    def __call__(self, req):
        # the endpoint's handler of every lamp path
        path = req.path
        if path == "cmd":
            # served here, not by lamp/requests.py: a command then loads only
            # the module of its action (the gateway relays every operator
            # action as a command: the command's heap sets the lamp's minimum)
            if req.method != _POST:
                return _METHOD_NOT_ALLOWED, b"", None
            ct = 50 if req.ct == 50 else 60  # JSON, else CBOR
            try:
                return _CHANGED, use("cmd", "serve", self, req.payload, ct), ct
            except (ValueError, TypeError, KeyError) as e:  # unparsable: 4.00 + reason
                return _BAD_REQUEST, str(e).encode(), 0
        if path == "lamp/state":  # also each observe notification
            return use("state", "serve", self.ctl, req)
        return use("requests", "serve", self, req)

    def get(self, action):
        # dev.commands' table lookup: action -> handler(params), None if unknown
        if action in _ACTIONS:
            return lambda p: self._act(action, p)
        return None

    def _act(self, a, p):
        # a command action (docs/lamp.md); the controller loads the code of
        # calendar and lamp_type/config on use
        ctl = self.ctl
        if a == "level":
            ctl.set_override(p.get("level"), p.get("duration", 0))
            return {"target": ctl.dim.target}
        if a == "resume":
            return ctl.resume()
        if a == "calendar":
            # logged by lamp/cmd.py after the answer (see below); self.cbor:
            # the calendar as CBOR, encoded by lamp/cmd.py before the action
            cid = ctl.set_calendar(p.get("calendar"), self.cbor, True)
            self.due.append(cid)
            return {"calendar": cid}
        if a == "lamp_type":
            return ctl.set_type(p)
        if a == "config":
            return ctl.set_config(p)
        if a == "report":
            # queued by lamp/cmd.py once the command is answered, after
            # dev.commands and fmt.cbor are dropped (the night's peak)
            self.due.append(None)
            return None
        ctl.reboot()  # "reboot": lamp/admin.py
