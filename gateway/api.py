"""HTTP JSON API routes (docs/gateway.md lists them with examples).

Lists come wrapped: ``{"devices": [...]}``, ``{"readings": [...]}``,
``{"commands": [...]}``, ``{"events": [...]}``; errors are ``{"error": msg}``.
Everything here reads in-memory state or runs a query on the store's reader
threads; writes go through the registry / relay (durable before the answer).
"""
import time

from . import commands as cmds
from . import registry as reg
from . import store as st
from .http import HTTPError

EP = r"/api/devices/([^/]+)"


def _bool(v):
    v = v.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


def _limit(req, default=100):
    n = req.arg("limit", int, default)
    if not 1 <= n <= 10000:
        raise HTTPError(400, "limit must be within 1..10000")
    return n


def routes(gw):
    R = gw.registry

    def device(ep):
        d = R.devices.get(ep)
        if d is None:
            raise HTTPError(404, "unknown device %r" % ep)
        return d

    async def list_devices(req):
        f = {k: req.arg(k) for k in ("type", "zone", "commune", "status", "tag")}
        online = req.arg("online", _bool)
        now = time.time()
        out = []
        for d in sorted(R.devices.values(), key=lambda d: d["ep"]):
            if any(f[k] is not None and d.get(k) != f[k] for k in ("type", "zone", "commune")):
                continue
            if f["tag"] is not None and f["tag"] not in (d.get("tags") or []):
                continue
            if online is not None and bool(d.get("online")) != online:
                continue
            p = R.public(d, now)
            if f["status"] is not None and p["status"] != f["status"]:
                continue
            out.append(p)
        return 200, {"devices": out, "count": len(out)}

    async def get_device(req, ep):
        d = R.public(device(ep))
        d["commands_open"] = [gw.relay.open[i] for i in gw.relay.by_dev.get(ep, [])]
        return 200, d

    async def declare(req):
        body = req.json()
        records = body.get("devices") if isinstance(body, dict) and "devices" in body else body
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, list) or not records:
            raise HTTPError(400, "expected a device object or {\"devices\": [...]}")
        try:
            rows = await R.declare(records)
        except reg.RegistryError as e:
            raise HTTPError(e.code, str(e)) from None
        out = [R.public(r) for r in rows]
        return 201, (out[0] if len(out) == 1 and not isinstance(body, list) and "devices" not in body
                     else {"devices": out, "count": len(out)})

    async def readings(req, ep):
        device(ep)
        since, until = req.arg("since", float), req.arg("until", float)
        rows = await gw.store.read(st.query_readings, ep, req.arg("name"), since, until, _limit(req))
        return 200, {"ep": ep, "readings": rows, "count": len(rows)}

    async def hourly(req, ep):
        device(ep)
        rows = await gw.store.read(st.query_hourly, ep, req.arg("name"), req.arg("since", float),
                                   req.arg("until", float), _limit(req))
        return 200, {"ep": ep, "hourly": rows, "count": len(rows)}

    async def send(req, ep):
        body = req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "expected {\"action\", \"params\", \"ttl\"}")
        device(ep)
        try:
            c, created = await gw.relay.create(ep, body.get("action"), body.get("params"), body.get("ttl"),
                                               cid=body.get("id"))
            wait = body.get("wait")
            if wait:
                if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0 or wait > 300:
                    raise cmds.CommandError(400, "wait must be seconds within 0..300")
                c = await gw.relay.wait(c["id"], wait)
        except cmds.CommandError as e:
            raise HTTPError(e.status, str(e)) from None
        return (201 if created else 200), _cmd(c)

    async def group(req):
        body = req.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "expected {\"selector\", \"action\", \"params\", \"ttl\"}")
        wait = body.get("wait", gw.cfg["group_wait_s"])
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 300:
            raise HTTPError(400, "wait must be seconds within 0..300")
        try:
            res = await gw.relay.group(body.get("selector"), body.get("action"), body.get("params"),
                                       body.get("ttl"), wait)
        except cmds.CommandError as e:
            raise HTTPError(e.status, str(e)) from None
        return 200, res

    async def get_command(req, cid):
        c = gw.relay.lookup(cid) or await gw.store.read(st.get_command, cid)
        if c is None:
            raise HTTPError(404, "unknown command %r" % cid)
        return 200, _cmd(c)

    async def list_commands(req):
        state = req.arg("state")
        if state is not None and state not in cmds.STATES:
            raise HTTPError(400, "state must be one of %s" % ", ".join(cmds.STATES))
        rows = await gw.store.read(st.list_commands, req.arg("device"), state, req.arg("group"), _limit(req))
        # in-memory state is ahead of the store by at most one commit
        rows = [_cmd(gw.relay.lookup(r["id"]) or r) for r in rows]
        return 200, {"commands": rows, "count": len(rows)}

    async def events(req):
        rows = await gw.store.read(st.query_events, req.arg("device"), req.arg("kind"),
                                   req.arg("since", float), _limit(req))
        return 200, {"events": rows, "count": len(rows)}

    async def stats(req):
        return 200, await gw.stats()

    async def collection(req):
        thr = req.arg("threshold", float, gw.cfg["collection_threshold"])
        out = []
        for d in R.devices.values():
            if d.get("type") != "bin":
                continue
            fill = R.latest.get(d["ep"], {}).get("fill")
            if fill is None or fill[1] is None or fill[1] < thr:
                continue
            out.append({"ep": d["ep"], "fill": fill[1], "t": fill[0], "zone": d.get("zone"),
                        "commune": d.get("commune"), "lat": d.get("lat"), "lon": d.get("lon"),
                        "online": bool(d.get("online")), "status": R.status(d)})
        out.sort(key=lambda r: (-r["fill"], r["ep"]))
        return 200, {"threshold": thr, "bins": out, "count": len(out)}

    async def metrics(req):
        return 200, gw.metrics.render(), "text/plain; version=0.0.4"

    async def healthz(req):
        ok = gw.store.available
        body = {"status": "ok" if ok else "degraded", "storage": "ok" if ok else "unavailable",
                "queue_depth": gw.store.pending, "devices": len(R.devices),
                "uptime_s": round(time.time() - gw.started, 1)}
        return (200 if ok else 503), body

    return [
        ("GET", r"/api/devices", list_devices),
        ("POST", r"/api/devices", declare),
        ("GET", EP, get_device),
        ("GET", EP + r"/readings", readings),
        ("GET", EP + r"/hourly", hourly),
        ("POST", EP + r"/commands", send),
        ("POST", r"/api/commands", group),
        ("GET", r"/api/commands", list_commands),
        ("GET", r"/api/commands/([^/]+)", get_command),
        ("GET", r"/api/events", events),
        ("GET", r"/api/stats", stats),
        ("GET", r"/api/collection", collection),
        ("GET", r"/metrics", metrics),
        ("GET", r"/healthz", healthz),
    ]


def _cmd(c):
    keys = ("id", "device", "action", "params", "state", "created", "updated", "expires",
            "attempts", "answer", "grp")
    d = {k: c.get(k) for k in keys}
    d["ep"] = d["device"]
    d["result"] = d["answer"]
    d["group"] = d.pop("grp")
    return d
