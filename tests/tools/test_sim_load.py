"""The CPython load devices (eclor.tools.fleet.load) against a real aiocoap
peer over real UDP on 127.0.0.1: registration, readings, a command to an
always-on lamp, queue-mode commands for a bin, all under injected loss.

The aiocoap peer here is a minimal stand-in for the wire contract only (the
gateway proper is exercised by tests/tools/test_system_*.py); it checks
what the devices send, byte for byte through a second CoAP implementation.
"""
import asyncio
import random
import socket

import aiocoap
import aiocoap.resource
import cbor2
import pytest

from eclor.tools import territory
from eclor.tools.fleet import load


class MiniGateway(aiocoap.resource.Resource):
    """RD + /dp + /cr per the wire contract, with a loss of its own."""

    def __init__(self, loss=0.0):
        super().__init__()
        self.eps = {}          # ep -> (rd id, remote, params)
        self.by_id = {}
        self.readings = {}     # (ep, name, t) -> value
        self.queued = {}       # ep -> [command maps]
        self.results = {}      # cmd id -> result map
        self.rng = random.Random(5)
        self.loss = loss

    async def needs_blockwise_assembly(self, request):
        return False

    def _sender(self, request):
        for ep, (rid, remote, _) in self.eps.items():
            if remote == request.remote.hostinfo:
                return ep
        return None

    async def render(self, request):
        path = request.opt.uri_path
        if self.loss and self.rng.random() < self.loss:
            # Simulate a lost request by never answering... aiocoap would
            # still ACK; so instead answer 5.03 with Max-Age 0 sometimes.
            m = aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE)
            m.opt.max_age = 0
            return m
        if path == ("rd",):
            q = dict(x.split("=", 1) for x in request.opt.uri_query)
            ep = q["ep"]
            rid = self.eps[ep][0] if ep in self.eps else str(len(self.eps) + 1)
            self.eps[ep] = (rid, request.remote.hostinfo, q)
            self.by_id[rid] = ep
            assert request.opt.content_format == 40 and request.payload.startswith(b"<")
            return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", rid))
        if len(path) == 2 and path[0] == "rd":
            if path[1] not in self.by_id:
                return aiocoap.Message(code=aiocoap.NOT_FOUND)
            return aiocoap.Message(code=aiocoap.CHANGED)
        ep = self._sender(request)
        if ep is None:
            return aiocoap.Message(code=aiocoap.NOT_FOUND)
        if path == ("dp",):
            assert request.opt.content_format == 112
            recs = cbor2.loads(request.payload)
            assert recs[0][-2] == "urn:dev:ep:%s:" % ep
            bt = recs[0][-3]
            for r in recs:
                self.readings[(ep, r[0], bt)] = r.get(2, r.get(3, r.get(4)))
            pending = self.queued.pop(ep, [])
            return aiocoap.Message(code=aiocoap.CHANGED, payload=cbor2.dumps(pending) if pending else b"",
                                   content_format=60 if pending else None)
        if path == ("cr",):
            for r in cbor2.loads(request.payload):
                self.results[r["id"]] = r
            return aiocoap.Message(code=aiocoap.CHANGED)
        return aiocoap.Message(code=aiocoap.NOT_FOUND)


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _serve(gw):
    port = _free_udp_port()
    ctx = await aiocoap.Context.create_server_context(gw, bind=("127.0.0.1", port))
    return ctx, port


def test_codec_roundtrip_and_rejects_junk():
    data = load.encode(load.CON, load.POST, 0x1234, b"\x01\x02",
                       [(load.O_URI_QUERY, b"x" * 300), (load.O_URI_PATH, b"rd"), (load.O_CONTENT_FORMAT, b"\x28")],
                       b"payload")
    m = load.decode(data)
    assert (m.mtype, m.code, m.mid, m.token, m.payload) == (load.CON, load.POST, 0x1234, b"\x01\x02", b"payload")
    assert m.opt(load.O_URI_PATH) == [b"rd"] and m.opt(load.O_URI_QUERY) == [b"x" * 300]
    assert m.uint(load.O_CONTENT_FORMAT) == 40
    # What aiocoap makes of our bytes is what we meant.
    a = aiocoap.Message.decode(data)
    assert a.opt.uri_path == ("rd",) and a.opt.content_format == 40 and len(a.opt.uri_query[0]) == 300
    for junk in (b"", b"\x00\x01", b"\x48\x01\x00\x01ab", b"\x40\x01\x00\x01\xff", b"\x40\x01\x00\x01\xf0"):
        with pytest.raises(ValueError):
            load.decode(junk)


def test_fleet_against_aiocoap_peer_with_loss():
    async def main():
        gw = MiniGateway(loss=0.05)
        ctx, port = await _serve(gw)
        specs = territory.fleet(6, 4, seed=3)
        fleet = load.Fleet(specs, ("127.0.0.1", port), loss=0.15,
                           params=load.Params(ack_timeout=0.1, max_retransmit=6), seed=3, lt=60)
        await fleet.open()
        try:
            failed = await fleet.register_all()
            assert failed == 0, fleet.errors
            assert len(gw.eps) == 10
            assert {q["et"] for _, _, q in gw.eps.values()} == {"eclor.lamp", "eclor.bin"}
            assert all(q.get("b") == "UQ" for _, _, q in gw.eps.values() if q["et"] == "eclor.bin")
            for _ in range(3):
                assert await fleet.report_all() == 0, fleet.errors
            # Every reading a device counts as acknowledged is at the peer.
            acked = {(d.ep, n, t) for d in fleet.devices for n, t in d.acked}
            assert len(acked) == 3 * (6 * 7 + 4 * 5)
            assert acked <= set(gw.readings)
            # A command to an always-on lamp, sent by an aiocoap client to
            # the address the lamp registered from; resent once (same id).
            lamp = fleet.by_role("lamp")[0]
            client = await aiocoap.Context.create_client_context()
            host = gw.eps[lamp.ep][1]
            cmd = {"id": "c-1", "a": "level", "p": {"level": 55}, "exp": 2 ** 31}
            for _ in range(2):
                req = aiocoap.Message(code=aiocoap.POST, uri="coap://%s/cmd" % host,
                                      payload=cbor2.dumps(cmd), content_format=60)
                resp = await asyncio.wait_for(client.request(req).response, 30)
                assert resp.code == aiocoap.CHANGED
                assert cbor2.loads(resp.payload) == {"id": "c-1", "s": "done", "r": {"level": 55}}
            assert lamp.level == 55 and [c[0] for c in lamp.commands] == ["c-1"]
            bad = aiocoap.Message(code=aiocoap.POST, uri="coap://%s/cmd" % host, payload=b"\xff\xff", content_format=60)
            resp = await asyncio.wait_for(client.request(bad).response, 30)
            assert resp.code == aiocoap.BAD_REQUEST
            await client.shutdown()
            # Queue mode: a command waits at the peer and rides on the next /dp answer.
            b = fleet.by_role("bin")[0]
            gw.queued[b.ep] = [{"id": "c-2", "a": "thresholds", "p": {"full_pct": 75}},
                               {"id": "c-3", "a": "level", "p": {"level": 1}}]
            await b.report()
            assert gw.results["c-2"]["s"] == "done"
            assert gw.results["c-3"]["s"] == "failed" and "unknown action" in gw.results["c-3"]["r"]
            assert fleet.stats["retransmissions"] > 0 and fleet.stats["dropped_in"] + fleet.stats["dropped_out"] > 0
        finally:
            fleet.close()
            await ctx.shutdown()
    asyncio.run(main())


def test_reregisters_after_peer_forgets():
    async def main():
        gw = MiniGateway()
        ctx, port = await _serve(gw)
        fleet = load.Fleet(territory.fleet(2, 0), ("127.0.0.1", port), params=load.Params(ack_timeout=0.1), lt=60)
        await fleet.open()
        try:
            assert await fleet.register_all() == 0
            gw.eps.clear()
            gw.by_id.clear()       # the peer lost its registry
            assert await fleet.report_all() == 0, fleet.errors
            assert fleet.stats["reregistrations"] == 2 and len(gw.eps) == 2
            assert {(d.ep, n, t) for d in fleet.devices for n, t in d.acked} <= set(gw.readings)
        finally:
            fleet.close()
            await ctx.shutdown()
    asyncio.run(main())
