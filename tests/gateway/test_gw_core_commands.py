"""Command relay end to end over real UDP: always-on lamps (POST /cmd to the
registered address), queue-mode bins (commands in the /dp answer, results via
/cr), group commands, validation, observation, and persistence over a restart."""
import asyncio
import json
import time

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code

from gw_core_harness import Device, running, senml_cbor


def run(coro):
    return asyncio.run(coro)


async def wait_state(gw, cid, states=("done", "failed", "expired"), timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        c = await gw.get("/api/commands/" + cid)
        if c["state"] in states or time.monotonic() > deadline:
            return c
        await asyncio.sleep(0.05)


def test_always_on_command_reaches_done(tmp_path):
    async def scenario():
        async with running(tmp_path) as gw, Device("lamp-1", links=b"</cmd>") as lamp:
            assert (await lamp.register(gw)).code == Code.CREATED
            st, c = await gw.http("POST", "/api/devices/lamp-1/commands",
                                  {"action": "level", "params": {"level": 40, "duration": 600}, "ttl": 60})
            assert st == 201 and c["id"].startswith("c-") and c["state"] in ("queued", "sent", "done")
            c = await wait_state(gw, c["id"])
            assert c["state"] == "done" and c["answer"] == {"s": "done", "r": {"applied": "level"}}
            assert lamp.received[0]["a"] == "level" and lamp.received[0]["p"] == {"level": 40, "duration": 600}
            assert lamp.received[0]["id"] == c["id"] and lamp.received[0]["exp"] > time.time()
            # server-side wait: the answer holds the final state
            st, c2 = await gw.http("POST", "/api/devices/lamp-1/commands", {"action": "resume", "wait": 5})
            assert st == 201 and c2["state"] == "done"
            # idempotent by id: re-submitting the same id does not send again
            n = len(lamp.received)
            st, c3 = await gw.http("POST", "/api/devices/lamp-1/commands", {"id": c2["id"], "action": "resume"})
            assert st == 200 and c3["id"] == c2["id"] and c3["state"] == "done"
            await asyncio.sleep(0.2)
            assert len(lamp.received) == n
            # the device refuses: failed with its reason
            lamp.cmd_answer = lambda cmd: aiocoap.Message(
                code=Code.CHANGED, content_format=60,
                payload=cbor2.dumps({"id": cmd["id"], "s": "failed", "r": "relay stuck"}))
            st, c4 = await gw.http("POST", "/api/devices/lamp-1/commands", {"action": "reboot", "wait": 5})
            assert c4["state"] == "failed" and c4["answer"] == {"s": "failed", "r": "relay stuck"}
            # a CoAP error from the device: failed with the code
            lamp.cmd_answer = lambda cmd: aiocoap.Message(code=Code.BAD_REQUEST, payload=b"nope")
            st, c5 = await gw.http("POST", "/api/devices/lamp-1/commands", {"action": "report", "wait": 5})
            assert c5["state"] == "failed" and "4.00" in c5["answer"]["r"]
            # validation against the device type -> clear 400
            for body, msg in [({"action": "geometry", "params": {"depth_m": 1}}, "not for a lamp"),
                              ({"action": "explode"}, "unknown action"),
                              ({"action": "level", "params": {}}, "needs parameter 'level'"),
                              ({"action": "level", "params": {"level": 101}}, "within 0..100"),
                              ({"action": "level", "params": {"level": 5, "colour": 1}}, "no parameter 'colour'"),
                              ({"action": "level", "params": {"level": 5}, "ttl": -1}, "ttl"),
                              ({"action": "config", "params": {}}, "at least one key")]:
                st, err = await gw.http("POST", "/api/devices/lamp-1/commands", body)
                assert st == 400 and msg in err["error"], (body, err)
            st, err = await gw.http("POST", "/api/devices/nobody/commands", {"action": "reboot"})
            assert st == 404 and "unknown device" in err["error"]
            st, lst = await gw.http("GET", "/api/commands?device=lamp-1&state=done")
            assert {c["id"] for c in lst["commands"]} == {c["id"], c2["id"]}
            text = (await gw.http("GET", "/metrics"))[1]
            assert 'eclor_commands_total{state="done"} 2' in text
    run(scenario())


def test_queue_mode_delivered_on_next_dp_and_result_via_cr(tmp_path):
    async def scenario():
        async with running(tmp_path) as gw, Device("bin-1", et="eclor.bin", queue=True, links=b"") as b:
            assert (await b.register(gw)).code == Code.CREATED
            t = int(time.time())
            r = await b.post_readings(gw, senml_cbor("bin-1", t - 5, fill=10.0))
            assert r.code == Code.CHANGED and r.payload == b""  # nothing pending: empty 2.04
            st, c = await gw.http("POST", "/api/devices/bin-1/commands",
                                  {"action": "thresholds", "params": {"full_pct": 75}, "ttl": 600})
            assert st == 201 and c["state"] == "queued"
            await asyncio.sleep(0.2)
            assert (await gw.get("/api/commands/" + c["id"]))["state"] == "queued"  # no push to a sleeper
            r = await b.post_readings(gw, senml_cbor("bin-1", t, fill=20.0))
            assert r.code == Code.CHANGED and r.opt.content_format == 60
            cmds = cbor2.loads(r.payload)
            assert [x["id"] for x in cmds] == [c["id"]] and cmds[0]["a"] == "thresholds"
            assert cmds[0]["p"] == {"full_pct": 75}
            assert (await gw.get("/api/commands/" + c["id"]))["state"] == "sent"
            # the device did not answer in this wake: handed over again next time (at-least-once)
            r = await b.post_readings(gw, senml_cbor("bin-1", t + 1, fill=21.0))
            assert [x["id"] for x in cbor2.loads(r.payload)] == [c["id"]]
            res = cbor2.dumps([{"id": c["id"], "s": "done", "r": None}])
            r = await b.req(gw, Code.POST, "/cr", res, 60)
            assert r.code == Code.CHANGED and r.payload == b""
            c = await gw.get("/api/commands/" + c["id"])
            assert c["state"] == "done"
            # a late duplicate result changes nothing; a bad /cr gets 4.00 / 4.15
            r = await b.req(gw, Code.POST, "/cr", cbor2.dumps([{"id": c["id"], "s": "failed"}]), 60)
            assert r.code == Code.CHANGED
            assert (await gw.get("/api/commands/" + c["id"]))["state"] == "done"
            assert (await b.req(gw, Code.POST, "/cr", b"\x01", 60)).code == Code.BAD_REQUEST
            assert (await b.req(gw, Code.POST, "/cr", b"x", 0)).code == Code.UNSUPPORTED_CONTENT_FORMAT
            r = await b.post_readings(gw, senml_cbor("bin-1", t + 2, fill=22.0))
            assert r.payload == b""
            # expiry: a short TTL runs out while the bin sleeps
            st, c2 = await gw.http("POST", "/api/devices/bin-1/commands", {"action": "report", "ttl": 1})
            c2 = await wait_state(gw, c2["id"], timeout=5)
            assert c2["state"] == "expired"
            r = await b.post_readings(gw, senml_cbor("bin-1", t + 3, fill=23.0))
            assert r.payload == b""
            st, err = await gw.http("POST", "/api/devices/bin-1/commands", {"action": "level", "params": {"level": 1}})
            assert st == 400 and "not for a bin" in err["error"]
            # results in JSON (ct 50), a single map, are accepted too
            st, c3 = await gw.http("POST", "/api/devices/bin-1/commands", {"action": "intervals",
                                                                           "params": {"measure_s": 600}})
            r = await b.post_readings(gw, senml_cbor("bin-1", t + 4, fill=24.0))
            assert [x["id"] for x in cbor2.loads(r.payload)] == [c3["id"]]
            r = await b.req(gw, Code.POST, "/cr", json.dumps({"id": c3["id"], "s": "failed", "r": "busy"}).encode(), 50)
            assert r.code == Code.CHANGED
            c3 = await gw.get("/api/commands/" + c3["id"])
            assert c3["state"] == "failed" and c3["answer"] == {"s": "failed", "r": "busy"}
    run(scenario())


def test_queue_mode_answers_carry_at_most_256_bytes_of_commands(tmp_path):
    # 30 commands waiting for a bin: ~1.3 KB of CBOR. An answer carries the
    # oldest that fit in 256 B (what the bin's receive buffer is sized for;
    # a 1.3 KB answer went Block2 and stranded them all, "sent" until they
    # expired); the answer to its /cr the next ones.
    async def scenario():
        async with running(tmp_path) as gw, Device("bin-2", et="eclor.bin", queue=True, links=b"") as b:
            assert (await b.register(gw)).code == Code.CREATED
            ids = []
            for i in range(30):
                st, c = await gw.http("POST", "/api/devices/bin-2/commands",
                                      {"action": "thresholds", "params": {"full_pct": 50 + i}, "ttl": 600})
                assert st == 201
                ids.append(c["id"])
            r = await b.post_readings(gw, senml_cbor("bin-2", int(time.time()), fill=10.0))
            assert r.code == Code.CHANGED and 0 < len(r.payload) <= 256, len(r.payload)
            got = [x["id"] for x in cbor2.loads(r.payload)]
            assert 3 <= len(got) < 30 and got == ids[:len(got)], got
            assert (await gw.get("/api/commands/" + ids[len(got)]))["state"] == "queued"
            rounds = 1
            while len(got) < 30:
                res = cbor2.dumps([{"id": x, "s": "done", "r": None} for x in got])
                r = await b.req(gw, Code.POST, "/cr", res, 60)
                assert r.code == Code.CHANGED and 0 < len(r.payload) <= 256, (r.code, len(r.payload))
                nxt = [x["id"] for x in cbor2.loads(r.payload)]
                assert nxt == ids[len(got):len(got) + len(nxt)], (len(got), nxt)
                got += nxt
                rounds += 1
            assert got == ids, rounds
            r = await b.req(gw, Code.POST, "/cr", cbor2.dumps([{"id": x, "s": "done", "r": None} for x in ids]), 60)
            assert r.code == Code.CHANGED
            for x in (ids[0], ids[-1]):
                assert (await gw.get("/api/commands/" + x))["state"] == "done"
    run(scenario())


def test_group_command_fans_out_with_summary(tmp_path):
    async def scenario():
        async with running(tmp_path, group_concurrency=2) as gw:
            await gw.http("POST", "/api/devices", {"devices": [
                {"ep": "l%d" % i, "type": "lamp", "zone": "nord", "commune": "Thil", "tags": ["rue-a"]}
                for i in range(4)] + [{"ep": "b0", "type": "bin", "zone": "nord", "commune": "Thil"}]})
            devs = [Device("l%d" % i, links=b"</cmd>") for i in range(4)]
            for d in devs:
                await d.__aenter__()
            devs[3].cmd_answer = lambda cmd: aiocoap.Message(code=Code.NOT_FOUND, payload=b"no /cmd")
            try:
                for d in devs[:4]:
                    assert (await d.register(gw)).code == Code.CREATED
                st, res = await gw.http("POST", "/api/commands", {
                    "selector": {"zone": "nord", "type": "lamp"}, "action": "level", "params": {"level": 0},
                    "wait": 10})
                assert st == 200, res
                assert res["summary"] == {"done": 3, "failed": 1, "total": 4}
                assert [d["ep"] for d in res["devices"]] == ["l0", "l1", "l2", "l3"]
                assert all(len(d.received) == 1 for d in devs)
                st, lst = await gw.http("GET", "/api/commands?group=" + res["group"])
                assert lst["count"] == 4
                # a mixed selector: the bin cannot take 'level' -> refused before anything is sent
                st, err = await gw.http("POST", "/api/commands", {"selector": {"commune": "Thil"},
                                                                  "action": "level", "params": {"level": 1}})
                assert st == 400 and "not for a bin" in err["error"]
                st, err = await gw.http("POST", "/api/commands", {"selector": {"zone": "sud"}, "action": "reboot"})
                assert st == 404
                st, err = await gw.http("POST", "/api/commands", {"selector": {"colour": "red"}, "action": "reboot"})
                assert st == 400 and "selector" in err["error"]
                st, res = await gw.http("POST", "/api/commands", {"selector": {"tag": "rue-a"}, "action": "report",
                                                                  "wait": 0})
                assert res["summary"]["total"] == 4
            finally:
                for d in devs:
                    await d.__aexit__(None, None, None)
    run(scenario())


def test_observed_resource_notifications_are_stored(tmp_path):
    async def scenario():
        async with running(tmp_path) as gw, Device("lamp-o") as lamp:  # links mark </s>;obs
            assert (await lamp.register(gw)).code == Code.CREATED
            for _ in range(100):
                if lamp.state.level == 0 and (await gw.get("/api/devices/lamp-o")).get("latest", {}).get("level"):
                    break
                await asyncio.sleep(0.05)
            for lvl in (30, 70):
                await asyncio.sleep(0.01)
                lamp.state.set(lvl)
                for _ in range(100):
                    d = await gw.get("/api/devices/lamp-o")
                    if d["latest"].get("level", {}).get("v") == lvl:
                        break
                    await asyncio.sleep(0.05)
                assert d["latest"]["level"]["v"] == lvl
            rows = (await gw.get("/api/devices/lamp-o/readings?name=level"))["readings"]
            assert {r["v"] for r in rows} >= {0.0, 30.0, 70.0}
            # the observation ends (as when the device reboots): its next update restarts it
            for t in gw.gw.observer.tasks["lamp-o"]:
                t.cancel()
            await asyncio.sleep(0.1)
            assert (await lamp.req(gw, Code.POST, lamp.location)).code == Code.CHANGED
            await asyncio.sleep(0.3)
            lamp.state.set(90)
            for _ in range(100):
                d = await gw.get("/api/devices/lamp-o")
                if d["latest"]["level"]["v"] == 90:
                    break
                await asyncio.sleep(0.05)
            assert d["latest"]["level"]["v"] == 90
            assert gw.gw.metrics.get("eclor_observe_notifications_total") >= 3
    run(scenario())


def test_restart_keeps_registry_and_command_queue(tmp_path):
    async def scenario():
        async with Device("bin-r", et="eclor.bin", queue=True, links=b"") as b, \
                Device("lamp-r", links=b"</cmd>") as lamp:
            async with running(tmp_path) as gw:
                assert (await b.register(gw)).code == Code.CREATED
                assert (await lamp.register(gw)).code == Code.CREATED
                loc = b.location
                t = int(time.time())
                assert (await b.post_readings(gw, senml_cbor("bin-r", t, fill=85.0, battery=3.2))).code == Code.CHANGED
                st, c = await gw.http("POST", "/api/devices/bin-r/commands", {"action": "report", "ttl": 600})
                assert st == 201
                lamp.cmd_answer = lambda cmd: aiocoap.Message(code=Code.SERVICE_UNAVAILABLE)  # busy: retry later
                st, cl = await gw.http("POST", "/api/devices/lamp-r/commands", {"action": "reboot", "ttl": 600})
                await asyncio.sleep(0.3)
            lamp.cmd_answer = None
            async with running(tmp_path, command_retry_s=0.2) as gw:  # a new process on new ports
                d = await gw.get("/api/devices/bin-r")
                assert d["online"] and d["location"] == loc[1:] and d["latest"]["fill"]["v"] == 85.0
                # the lamp's command is re-sent to its last address after the restart
                cl = await wait_state(gw, cl["id"])
                assert cl["state"] == "done"
                # the bin's address is the same; the gateway port changed, the registry did not
                r = await b.req(gw, Code.POST, loc)
                assert r.code == Code.CHANGED
                r = await b.post_readings(gw, senml_cbor("bin-r", t + 1, fill=86.0))
                assert [x["id"] for x in cbor2.loads(r.payload)] == [c["id"]]
                col = await gw.get("/api/collection")
                assert [x["ep"] for x in col["bins"]] == ["bin-r"] and col["bins"][0]["fill"] == 86.0
                stats = await gw.get("/api/stats")
                assert stats["total"]["bins_to_collect"] == 1 and stats["total"]["low_batteries"] == 1
    run(scenario())


def raw(mtype, mid, token, m):
    """A message with the messaging-layer fields set by hand (a raw-socket peer)."""
    m.mtype, m.mid, m.token = mtype, mid, token
    return m


def test_command_retransmitted_to_a_lossy_device(tmp_path):
    """The device loses the first /cmd: aiocoap retransmits (counted in /metrics)
    and the command still ends `done`, sent from the gateway's CoAP port to the
    port the device registered from."""
    import socket
    from aiocoap.numbers.types import Type

    async def scenario():
        async with running(tmp_path, ack_timeout=0.3, max_retransmit=2) as gw:
            t = gw.gw.coap.tuning()
            assert (t.ACK_TIMEOUT, t.MAX_RETRANSMIT) == (0.3, 2)
            loop = asyncio.get_running_loop()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            reg = raw(Type.CON, 7, b"\x01", aiocoap.Message(code=Code.POST, uri_path=("rd",), payload=b"</cmd>",
                                                           uri_query=("ep=lamp-raw", "lt=300", "et=eclor.lamp")))
            s.sendto(reg.encode(), gw.coap_addr)
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(s, 2048), 5)
            assert aiocoap.Message.decode(data).code == Code.CREATED
            st, c = await gw.http("POST", "/api/devices/lamp-raw/commands", {"action": "reboot", "ttl": 60})
            assert st == 201
            first, src = await asyncio.wait_for(loop.sock_recvfrom(s, 2048), 5)   # dropped on purpose
            again, src2 = await asyncio.wait_for(loop.sock_recvfrom(s, 2048), 10)  # the retransmission
            assert first == again and src == src2 == gw.coap_addr
            m = aiocoap.Message.decode(again)
            assert m.mtype == Type.CON and m.opt.uri_path == ("cmd",) and m.opt.content_format == 60
            cmd = cbor2.loads(m.payload)
            ack = raw(Type.ACK, m.mid, m.token, aiocoap.Message(
                code=Code.CHANGED, payload=cbor2.dumps({"id": cmd["id"], "s": "done", "r": "rebooting"})))
            ack.opt.content_format = 60
            s.sendto(ack.encode(), src)
            c = await wait_state(gw, c["id"])
            assert c["state"] == "done" and c["answer"] == {"s": "done", "r": "rebooting"}
            s.close()
            text = (await gw.http("GET", "/metrics"))[1]
            n = [ln for ln in text.splitlines() if ln.startswith("eclor_coap_retransmissions_total ")]
            assert n and int(n[0].split()[1]) >= 1, n
    run(scenario())
