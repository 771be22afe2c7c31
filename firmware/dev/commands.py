"""Command objects (docs/architecture.md): {"id", "a", "p", "exp"} in, result
{"id", "s": "done"|"failed", "r": result-or-reason} out.

The role gives a table action -> handler(params). A handler returns the
result (anything CBOR/JSON can carry, or None) or raises ValueError(reason)
for a refused command; it must leave the previous settings untouched when it
refuses (dev.config.apply does). Any other exception is caught too and
reported as failed, so a bad command never stops the device. Handlers are
plain functions; one that must act after the answer is sent (reboot) should
schedule that itself.

Idempotence: the last _KEEP (8) ids with their results are kept in
data/cmds.json (written after each newly applied command, i.e. at the rate
of operator commands), so a command re-sent after a lost answer -- or after
a reboot -- is answered with the stored result and not applied again. The
file is read when a command comes, not held in RAM between commands (eight
results are ~2 KB of heap on the 64-bit host, for a lamp all night long).

Poison commands: before a handler runs, the id is stored with the answer
failed "interrupted by a restart", then replaced by the real result. If the
device resets inside the handler (hang -> watchdog, hard fault), the re-sent
command gets that answer instead of resetting the device again -- one extra
small write per command, commands being rare.

Expiry: a command whose "exp" (UTC seconds) is past is answered failed
"expired" without being applied -- only when the device knows the time
(dev.clock.time_known()); otherwise the gateway's own expiry rules.
"""
import json
from micropython import const
from dev import store, now

_CT_JSON = const(50)  # private const(): no name, no dict slot
_CT_CBOR = const(60)
_KEEP = const(8)
# The answers of a refused command, in one string picked by index (_why):
# one object on the heap while this module is loaded (at each command)
# instead of one per message, each ~50 B beyond its characters on the
# 64-bit port. Only for the refusals: split() makes a list of them all.
_WHY = const("commands: invalid JSON"  # 0
             "|commands: unsupported content-format %s"  # 1
             "|commands: expected a map or an array of maps"  # 2
             "|bad command: not a map"  # 3
             "|bad command: missing id"  # 4
             "|unknown action %s"  # 5
             "|bad command: p must be a map"  # 6
             "|bad command: exp must be a number")  # 7


def _why(i, *args):
    return _WHY.split("|")[i] % args


def parse(data, ct=_CT_CBOR):
    """Payload -> list of command maps (one map or an array of maps). ValueError."""
    if ct == _CT_CBOR:
        from fmt import cbor  # here, not at the top: see begin()
        obj = cbor.loads(data)
    elif ct == _CT_JSON:
        try:
            obj = json.loads(data)
        except Exception:
            raise ValueError(_why(0))
    else:
        raise ValueError(_why(1, ct))
    if isinstance(obj, dict):
        return [obj]
    if isinstance(obj, list):
        return obj
    raise ValueError(_why(2))


def encode(obj, ct=_CT_CBOR):
    """Result map(s) -> payload bytes in ct (60 CBOR or 50 JSON)."""
    if ct == _CT_JSON:
        return json.dumps(obj).encode()
    from fmt import cbor
    return cbor.dumps(obj)


class Commands:
    def __init__(self, handlers, path="data/cmds.json", now=None):
        self.handlers = handlers
        self.path = path
        self.now = now  # () -> UTC seconds, or None when unknown; None: dev.now

    def _recent(self):
        r = store.load_json(self.path, [])  # [[id, result], ...] oldest first
        return r if isinstance(r, list) else []

    def _known(self, cid):
        # the stored result of cid, or None; a method of its own so that no
        # entry of the list stays referenced from apply()'s frame while the
        # handler runs (the heap's peak at a command)
        for e in self._recent():
            if e[0] == cid:
                return e[1]
        return None

    def _remember(self, cid, res):
        recent = self._recent()
        if recent and recent[-1][0] == cid:
            recent[-1][1] = res  # the pending entry of this command
        else:
            recent.append([cid, res])
        del recent[:-_KEEP]
        try:
            store.save_json(self.path, recent)
        except (TypeError, ValueError):  # a result JSON cannot hold: keep its text
            res["r"] = str(res["r"])
            store.save_json(self.path, recent)

    def apply(self, cmd):
        """Apply one command map; returns its result map (never raises)."""
        res, h, p = self.begin(cmd)
        if h is not None:
            self.run(res, h, p)
            self.end(res)
        return res

    # apply() in three steps, for a role that runs the handler with fmt.cbor
    # off the heap (lamp/cmd.py; it is imported only by parse() and encode()
    # for that): the payload is decoded, begin() checks the command, the role
    # drops fmt.cbor, run() and end(), and encode() loads it again.

    def begin(self, cmd):
        """apply()'s checks: (res, h, p). h None: res is the final result
        (invalid, known -- answered again, not applied again --, expired).
        Else run(res, h, p), then end(res): the id is already stored as
        "interrupted by a restart" (poison commands)."""
        if not isinstance(cmd, dict):
            return {"id": None, "s": "failed", "r": _why(3)}, None, None
        cid = cmd.get("id")
        if not isinstance(cid, (str, int)) or cid is True or cid is False or cid == "":
            return {"id": None, "s": "failed", "r": _why(4)}, None, None
        e = self._known(cid)
        if e is not None:
            return e, None, None
        res = {"id": cid, "s": "failed", "r": None}
        a = cmd.get("a")
        p = cmd.get("p", {})
        exp = cmd.get("exp")
        h = self.handlers.get(a) if isinstance(a, str) else None
        if p is None:
            p = {}
        if h is None:
            res["r"] = _why(5, a)
        elif not isinstance(p, dict):
            res["r"] = _why(6)
        elif exp is not None and not isinstance(exp, (int, float)):
            res["r"] = _why(7)
        else:
            t = self.now() if self.now else now()
            if exp is not None and t is not None and t > exp:
                res["r"] = "expired"
            else:
                self._remember(cid, {"id": cid, "s": "failed", "r": "interrupted by a restart"})
                return res, h, p
        self._remember(cid, res)
        return res, None, None

    def run(self, res, h, p):
        """The handler h(p) of a command begin() let through, its result or
        its refusal into res (never raises)."""
        try:
            res["r"] = h(p)
            res["s"] = "done"
        except ValueError as e:
            res["r"] = str(e) or "refused"
        except Exception as e:
            res["r"] = "error: %s %s" % (type(e).__name__, e)

    def end(self, res):
        """Store the result of a command begin() let through."""
        self._remember(res["id"], res)

    def apply_payload(self, data, ct=_CT_CBOR):
        """Parse and apply; returns the list of results. ValueError if unparsable."""
        return [self.apply(c) for c in parse(data, ct)]
