"""In-process gateway + real aiocoap peers over UDP on 127.0.0.1 (tests of issue 3).

``async with running(tmp_path, **cfg) as gw:`` starts the real daemon
(``daemon.serve``) on ephemeral ports and yields a handle with:
  gw.gw          the Gateway object (metrics, store, registry)
  gw.coap_uri    coap://127.0.0.1:PORT
  await gw.http(method, path, body=None) -> (status, json-or-text)

``Device`` is a simulated device: ONE aiocoap server context (its own UDP
socket) that both registers/posts to the gateway and serves /cmd and observable
resources -- so the gateway reaches it at the address it registered from, as
on the wire contract.
"""
import asyncio
import contextlib
import json
import time

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from eclor.gateway import config, daemon


@contextlib.asynccontextmanager
async def running(data_dir, **overrides):
    cfg = config.load(None, dict({"coap": "127.0.0.1:0", "http": "127.0.0.1:0", "data": str(data_dir),
                                  "maintenance_s": 3600.0}, **overrides))
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    task = loop.create_task(daemon.serve(cfg, ready=lambda gw, stop: ready.set_result((gw, stop))))
    done, _ = await asyncio.wait([ready, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    gw, stop = ready.result()
    h = Handle(gw)
    try:
        yield h
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 6) == 0


class Handle:
    def __init__(self, gw):
        self.gw = gw
        self.coap_uri = "coap://127.0.0.1:%d" % gw.coap_port
        self.coap_addr = ("127.0.0.1", gw.coap_port)
        self.http_port = gw.http_port

    async def http(self, method, path, body=None, raw=None, headers=None):
        r, w = await asyncio.open_connection("127.0.0.1", self.http_port)
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdr = "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n" % (method, path, len(data))
        if data:
            hdr += "Content-Type: application/json\r\n"
        for k, v in (headers or {}).items():
            hdr += "%s: %s\r\n" % (k, v)
        w.write(hdr.encode() + b"\r\n" + data)
        await w.drain()
        resp = await r.read()
        w.close()
        head, _, body = resp.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        if b"application/json" in head:
            return status, json.loads(body)
        return status, body.decode()

    async def get(self, path):
        st, body = await self.http("GET", path)
        assert st == 200, (path, st, body)
        return body


class CmdResource(resource.Resource):
    def __init__(self, dev):
        super().__init__()
        self.dev = dev

    async def render_post(self, req):
        cmd = cbor2.loads(req.payload)
        self.dev.received.append(cmd)
        if self.dev.cmd_answer is not None:
            return self.dev.cmd_answer(cmd)
        res = {"id": cmd["id"], "s": "done", "r": {"applied": cmd["a"]}}
        return aiocoap.Message(code=Code.CHANGED, payload=cbor2.dumps(res), content_format=60)


class StateResource(resource.ObservableResource):
    def __init__(self, dev):
        super().__init__()
        self.dev = dev
        self.level = 0

    async def render_get(self, req):
        pl = cbor2.dumps([{-2: "urn:dev:ep:%s:" % self.dev.ep, -3: time.time(), 0: "level", 1: "%", 2: self.level}])
        return aiocoap.Message(payload=pl, content_format=112)

    def set(self, level):
        self.level = level
        self.updated_state()


class Device:
    def __init__(self, ep, et="eclor.lamp", queue=False, links=b"</s>;obs;ct=112,</cmd>"):
        self.ep, self.et, self.queue, self.links = ep, et, queue, links
        self.received = []
        self.cmd_answer = None
        self.location = None

    async def __aenter__(self):
        site = resource.Site()
        site.add_resource(["cmd"], CmdResource(self))
        self.state = StateResource(self)
        site.add_resource(["s"], self.state)
        self.ctx = await aiocoap.Context.create_server_context(site, bind=("::ffff:127.0.0.1", 0),
                                                               transports=["udp6"])
        return self

    async def __aexit__(self, *exc):
        await self.ctx.shutdown()

    async def req(self, gw, method, path, payload=b"", ct=None, query=None):
        uri = gw.coap_uri + path + ("?" + "&".join(query) if query else "")
        m = aiocoap.Message(code=method, uri=uri, payload=payload)
        if ct is not None:
            m.opt.content_format = ct
        return await asyncio.wait_for(self.ctx.request(m).response, 10)

    async def register(self, gw, lt=300, extra=()):
        q = ["ep=" + self.ep, "lt=%d" % lt, "et=" + self.et] + (["b=UQ"] if self.queue else []) + list(extra)
        r = await self.req(gw, Code.POST, "/rd", self.links, 40, q)
        if r.code == Code.CREATED:
            self.location = "/" + "/".join(r.opt.location_path)
        return r

    async def post_readings(self, gw, records, ct=112):
        if ct == 112:
            pl = cbor2.dumps(records)
        else:
            pl = json.dumps(records).encode()
        return await self.req(gw, Code.POST, "/dp", pl, ct)


def senml_cbor(ep, t, **values):
    recs = [{-2: "urn:dev:ep:%s:" % ep, -3: t}]
    first = True
    for name, v in values.items():
        r = recs[0] if first else {}
        first = False
        r[0] = name
        if isinstance(v, bool):
            r[4] = v
        elif isinstance(v, str):
            r[3] = v
        else:
            r[2] = v
        if r is not recs[0]:
            recs.append(r)
    return recs
