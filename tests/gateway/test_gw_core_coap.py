"""Gateway CoAP side with real aiocoap peers over UDP: registration, /dp, /cr, /time,
bad inputs and their documented answers (the daemon keeps serving after each)."""
import asyncio
import logging
import os
import socket
import sqlite3
import time

import cbor2
from aiocoap.numbers.codes import Code

from gw_core_harness import Device, running, senml_cbor


def run(coro):
    return asyncio.run(coro)


def test_register_push_query(tmp_path):
    async def scenario():
        async with running(tmp_path) as gw, Device("lamp-a", links=b"</cmd>") as dev:
            r = await dev.register(gw)
            assert r.code == Code.CREATED, r
            loc = dev.location
            assert loc.startswith("/rd/")
            # idempotent re-registration: same location
            r2 = await dev.register(gw)
            assert r2.code == Code.CREATED and "/" + "/".join(r2.opt.location_path) == loc
            t0 = int(time.time()) - 10
            r = await dev.post_readings(gw, senml_cbor("lamp-a", t0, power=41.5, level=80, relay=True))
            assert r.code == Code.CHANGED and r.payload == b""
            # SenML JSON, relative time t, bn without prefix
            r = await dev.post_readings(gw, [{"bn": "urn:dev:ep:lamp-a:", "bt": t0 + 1, "n": "energy", "u": "Wh",
                                              "v": 1200}, {"n": "mode", "vs": "normal", "t": 1}], ct=110)
            assert r.code == Code.CHANGED, r.payload
            # the same readings again (a retransmission after a lost ACK): stored once
            r = await dev.post_readings(gw, senml_cbor("lamp-a", t0, power=41.5, level=80, relay=True))
            assert r.code == Code.CHANGED
            body = await gw.get("/api/devices/lamp-a/readings?limit=100")
            got = sorted((x["name"], x["t"], x["v"], x["vs"], x["vb"], x["unit"]) for x in body["readings"])
            assert got == sorted([("power", t0, 41.5, None, None, "W"), ("level", t0, 80.0, None, None, "%"),
                                  ("relay", t0, None, None, True, None), ("energy", t0 + 1, 1200.0, None, None, "Wh"),
                                  ("mode", t0 + 2, None, "normal", None, None)])
            body = await gw.get("/api/devices/lamp-a/readings?name=power&since=%d&until=%d" % (t0 - 1, t0 + 1))
            assert [x["v"] for x in body["readings"]] == [41.5]
            d = await gw.get("/api/devices/lamp-a")
            assert d["online"] and d["type"] == "lamp" and d["location"] == loc[1:]
            assert d["address"] == "127.0.0.1:%d" % dev.ctx.request_interfaces[0].token_interface.message_interface._local_port()
            assert d["latest"]["power"]["v"] == 41.5
            # a device inventing names: all stored, but the in-memory latest view stays bounded
            for k in range(3):
                recs = [{-2: "urn:dev:ep:lamp-a:", -3: t0, 0: "x%d" % (k * 60), 2: 1}] + \
                    [{0: "x%d" % (k * 60 + i), 2: i} for i in range(1, 60)]
                assert (await dev.post_readings(gw, recs)).code == Code.CHANGED
            assert len(gw.gw.registry.latest["lamp-a"]) == 128
            assert (await gw.get("/api/devices/lamp-a/readings?limit=1000"))["count"] == 185
            # update and delete
            r = await dev.req(gw, Code.POST, loc)
            assert r.code == Code.CHANGED
            r = await dev.req(gw, Code.POST, "/rd/nosuchid")
            assert r.code == Code.NOT_FOUND
            r = await dev.req(gw, Code.DELETE, loc)
            assert r.code == Code.DELETED
            r = await dev.post_readings(gw, senml_cbor("lamp-a", t0 + 5, power=1.0))
            assert r.code == Code.NOT_FOUND  # deregistered: no more readings accepted
            r = await dev.req(gw, Code.POST, loc)
            assert r.code == Code.NOT_FOUND  # -> the device re-registers
            ev = await gw.get("/api/events?device=lamp-a")
            kinds = [e["kind"] for e in ev["events"]]
            assert "registered" in kinds and "deregistered" in kinds
            m = gw.gw.metrics
            assert m.get("eclor_readings_stored_total") == 8 + 180
    run(scenario())


def test_bad_inputs_get_documented_answers(tmp_path):
    async def scenario():
        async with running(tmp_path, allow_undeclared=False) as gw, \
                Device("lamp-b") as dev, Device("lamp-c") as other:
            # undeclared device refused (4.03) while allow_undeclared is false
            r = await dev.register(gw)
            assert r.code == Code.FORBIDDEN and b"inventory" in r.payload
            st, _ = await gw.http("POST", "/api/devices", {"devices": [
                {"ep": "lamp-b", "type": "lamp", "zone": "centre"}, {"ep": "lamp-c", "type": "lamp"}]})
            assert st == 201
            r = await dev.register(gw, extra=())
            assert r.code == Code.CREATED
            # declared as lamp, registering as bin -> 4.03
            dev2 = Device("lamp-c", et="eclor.bin")
            dev2.ctx = other.ctx
            r = await dev2.register(gw)
            assert r.code == Code.FORBIDDEN and b"declared as lamp" in r.payload
            bad_reg = [
                (["lt=300", "et=eclor.lamp"], b"ep= missing"),
                (["ep=x", "lt=300", "et=thing"], b"et must be"),
                (["ep=x", "lt=abc", "et=eclor.lamp"], b"lt must be"),
                (["ep=bad name!", "lt=300", "et=eclor.lamp"], b"invalid ep"),
            ]
            for q, diag in bad_reg:
                r = await dev.req(gw, Code.POST, "/rd", b"", 40, q)
                assert r.code in (Code.BAD_REQUEST, Code.FORBIDDEN) and diag in r.payload, (q, r, r.payload)
            r = await dev.req(gw, Code.POST, "/rd", b"<bad", 40, ["ep=lamp-b", "et=eclor.lamp"])
            assert r.code == Code.BAD_REQUEST and b"link-format" in r.payload
            t = int(time.time())
            # unregistered sender -> 4.04
            r = await other.post_readings(gw, senml_cbor("lamp-c", t, power=1.0))
            assert r.code == Code.NOT_FOUND and b"register" in r.payload
            # unsupported content format -> 4.15
            r = await dev.req(gw, Code.POST, "/dp", b'[{"n":"power","v":1}]', 50)
            assert r.code == Code.UNSUPPORTED_CONTENT_FORMAT
            r = await dev.req(gw, Code.POST, "/dp", b'[{"n":"power","v":1}]')
            assert r.code == Code.UNSUPPORTED_CONTENT_FORMAT
            # too large -> 4.13 (sent block-wise by aiocoap, reassembled, then refused)
            big = cbor2.dumps([{0: "x%d" % i, 2: i, 6: 0} for i in range(600)])
            assert len(big) > 4096
            r = await dev.req(gw, Code.POST, "/dp", big, 112)
            assert r.code == Code.REQUEST_ENTITY_TOO_LARGE
            # another device's name in bn -> 4.03
            r = await dev.post_readings(gw, senml_cbor("lamp-c", t, power=1.0))
            assert r.code == Code.FORBIDDEN and b"does not belong" in r.payload
            # invalid SenML -> 4.00 with a diagnostic naming record and field
            cases = [
                (b"\xff\x00", 112, b"invalid CBOR"),
                (cbor2.dumps({0: "power"}), 112, b"array"),
                (cbor2.dumps([]), 112, b"empty"),
                (cbor2.dumps([{0: "power", 2: 1, 99: 1}]), 112, b"unknown label 99"),
                (cbor2.dumps([{0: "power"}]), 112, b"exactly one of v, vs, vb"),
                (cbor2.dumps([{0: "power", 2: 1, 3: "x"}]), 112, b"exactly one"),
                (cbor2.dumps([{0: "power", 2: "high"}]), 112, b"v must be a number"),
                (cbor2.dumps([{0: "power", 2: float("nan")}]), 112, b"finite"),
                (cbor2.dumps([{0: "level", 1: "%", 2: 150}]), 112, b"out of range"),
                (cbor2.dumps([{0: "power", 1: "kW", 2: 1}]), 112, b"unit must be 'W'"),
                (cbor2.dumps([{0: "power", 2: 1, 6: 1e12}]), 112, b"time"),
                (cbor2.dumps([{0: "power", 2: 1, 6: 1000.0, -3: 1.0e9 - 2e8}]), 112, b"out of range"),
                (cbor2.dumps([{0: "bad name", 2: 1}]), 112, b"invalid name"),
                (cbor2.dumps([{0: "ev:fire", 2: 1}]), 112, b"vb expected"),
                (cbor2.dumps([{0: "x%d" % i, 2: i} for i in range(70)]), 112, b"too many records"),
                (b'[{"n": "power", "v": 1,}]', 110, b"invalid JSON"),
                (b'[{"n": "power", "v": 1, "s": 3}]', 110, b"not supported"),
            ]
            for pl, ct, diag in cases:
                r = await dev.req(gw, Code.POST, "/dp", pl, ct)
                assert r.code == Code.BAD_REQUEST, (pl, r)
                assert diag in r.payload, (pl, r.payload)
            # methods
            r = await dev.req(gw, Code.GET, "/dp")
            assert r.code == Code.METHOD_NOT_ALLOWED
            r = await dev.req(gw, Code.GET, "/nothing")
            assert r.code == Code.NOT_FOUND
            # and it still serves
            r = await dev.post_readings(gw, senml_cbor("lamp-b", t, power=2.0))
            assert r.code == Code.CHANGED
            assert (await gw.get("/healthz"))["status"] == "ok"
            body = await gw.get("/api/devices/lamp-b/readings?name=power")
            assert [x["v"] for x in body["readings"]] == [2.0]  # nothing from the refused payloads
    run(scenario())


def test_time_resource(tmp_path):
    async def scenario():
        async with running(tmp_path) as gw, Device("t") as dev:
            r = await dev.req(gw, Code.GET, "/time")
            assert r.code == Code.CONTENT and abs(int(r.payload) - time.time()) < 5
            import aiocoap
            m = aiocoap.Message(code=Code.GET, uri=gw.coap_uri + "/time", accept=60)
            r = await dev.ctx.request(m).response
            assert r.opt.content_format == 60 and abs(cbor2.loads(r.payload) - time.time()) < 5
            r = await dev.req(gw, Code.POST, "/time")
            assert r.code == Code.METHOD_NOT_ALLOWED
    run(scenario())


def test_storage_unavailable_answers_503_then_recovers(tmp_path):
    async def scenario():
        async with running(tmp_path, busy_ms=200, retry_after_s=17) as gw, Device("lamp-d") as dev:
            assert (await dev.register(gw)).code == Code.CREATED
            t = int(time.time())
            # another process holds the write lock (a backup tool, a stuck sqlite3 shell...)
            locker = sqlite3.connect(os.path.join(str(tmp_path), "eclor.db"), isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            r = await dev.post_readings(gw, senml_cbor("lamp-d", t, power=5.0))
            assert r.code == Code.SERVICE_UNAVAILABLE and r.opt.max_age == 17, (r, r.payload)
            st, body = await gw.http("GET", "/healthz")
            assert st == 503 and body["storage"] == "unavailable"
            st, body = await gw.http("POST", "/api/devices/lamp-d/commands", {"action": "report"})
            assert st == 503 and "StorageUnavailable" in body["error"]
            locker.execute("ROLLBACK")
            locker.close()
            r = await dev.post_readings(gw, senml_cbor("lamp-d", t, power=5.0))
            assert r.code == Code.CHANGED
            body = await gw.get("/api/devices/lamp-d/readings?name=power")
            assert [x["v"] for x in body["readings"]] == [5.0]
            assert gw.gw.metrics.get("eclor_storage_errors_total") >= 1
    run(scenario())


def test_junk_datagrams_do_not_flood_the_log(tmp_path):
    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record)

    async def scenario():
        async with running(tmp_path, log_sample_s=60.0) as gw, Device("lamp-j") as dev:
            h = Catch()
            logging.getLogger().addHandler(h)
            asyncio.get_running_loop().set_exception_handler(
                lambda loop, ctx: records.append(logging.makeLogRecord({"msg": "loop: %s" % ctx.get("message"),
                                                                        "levelno": 40})))
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rnd = __import__("random").Random(7)
                n = 0
                for i in range(300):
                    if i % 3 == 0:   # CON GET with a non-UTF-8 Uri-Path: UnicodeDecodeError in aiocoap
                        d = bytes([0x40, 0x01, i & 0xff, 1, 0xb2, 0xff, 0xfe])
                    elif i % 3 == 1:  # unparsable header
                        d = bytes([0x00]) + rnd.randbytes(rnd.randrange(0, 40))
                    else:             # random bytes
                        d = rnd.randbytes(rnd.randrange(1, 60))
                    s.sendto(d, gw.coap_addr)
                    n += 1
                s.close()
                await asyncio.sleep(0.5)
                # the gateway still serves
                assert (await dev.register(gw)).code == Code.CREATED
                r = await dev.post_readings(gw, senml_cbor("lamp-j", int(time.time()), power=3.0))
                assert r.code == Code.CHANGED
            finally:
                logging.getLogger().removeHandler(h)
            junk = gw.gw.metrics.get("eclor_coap_junk_total")
            assert junk >= 200, junk
            text = (await gw.http("GET", "/metrics"))[1]
            assert "eclor_coap_junk_total %d" % junk in text
    run(scenario())
    noisy = [r for r in records if r.levelno >= logging.WARNING]
    assert 1 <= len(noisy) <= 3, [r.getMessage() for r in noisy]  # a sample, not a flood
    assert not any(r.exc_info for r in noisy)


def test_lifetime_expiry_marks_offline_with_event(tmp_path):
    async def scenario():
        async with running(tmp_path, min_lt=1, lt_grace_s=0.0) as gw, Device("bin-e", et="eclor.bin",
                                                                            queue=True, links=b"") as b:
            assert (await b.register(gw, lt=1)).code == Code.CREATED
            assert (await gw.get("/api/devices/bin-e"))["online"]
            for _ in range(60):
                await asyncio.sleep(0.1)
                if not (await gw.get("/api/devices/bin-e"))["online"]:
                    break
            d = await gw.get("/api/devices/bin-e")
            assert not d["online"] and d["status"] == "offline"
            ev = await gw.get("/api/events?device=bin-e&kind=expired")
            assert ev["count"] == 1
            r = await b.post_readings(gw, senml_cbor("bin-e", int(time.time()), fill=1.0))
            assert r.code == Code.NOT_FOUND
            assert (await b.req(gw, Code.POST, b.location)).code == Code.NOT_FOUND
            # re-registering brings it back, same location
            loc = b.location
            assert (await b.register(gw, lt=300)).code == Code.CREATED and b.location == loc
            assert (await gw.get("/api/devices/bin-e"))["online"]
    run(scenario())


def test_ipv6_dual_stack_bind(tmp_path):
    async def scenario():
        import aiocoap
        async with running(tmp_path, coap="[::]:0") as gw:
            cli = await aiocoap.Context.create_client_context()
            try:
                for host in ("127.0.0.1", "[::1]"):
                    m = aiocoap.Message(code=Code.POST, payload=b"", uri="coap://%s:%d/rd?ep=lamp-6%s&et=eclor.lamp"
                                        % (host, gw.gw.coap_port, host.strip("[]").replace(":", "").replace(".", "")))
                    r = await asyncio.wait_for(cli.request(m).response, 5)
                    assert r.code == Code.CREATED, host
                devs = {d["ep"]: d for d in (await gw.get("/api/devices"))["devices"]}
                assert devs["lamp-6127001"]["address"].startswith("127.0.0.1:")
                assert devs["lamp-61"]["address"].startswith("[::1]:")
            finally:
                await cli.shutdown()
    run(scenario())
