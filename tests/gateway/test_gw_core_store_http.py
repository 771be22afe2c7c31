"""Store (group commit, savepoint isolation, migrations, retention) and the HTTP
server (keep-alive, JSON errors, stats) of the gateway."""
import asyncio
import sqlite3
import threading
import time

import pytest

from eclor.gateway import store as st
from eclor.gateway.metrics import Metrics
from gw_core_harness import Device, running, senml_cbor
from aiocoap.numbers.codes import Code


def test_group_commit_batches_and_resolves_after_commit(tmp_path):
    path = str(tmp_path / "db.sqlite")
    m = Metrics()
    s = st.Store(path, metrics=m).open()
    gate = threading.Event()

    async def scenario():
        # hold the writer busy so that the next 200 writes pile up into one batch
        blocker = s.write(lambda con: gate.wait(5))
        futs = [s.write(st.insert_readings, "d", [("p", 1000000000.0 + i, float(i), None, None, "W")])
                for i in range(200)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in futs)  # nothing acknowledged before its commit
        gate.set()
        await blocker
        await asyncio.gather(*futs)
        # every acknowledged write is visible to an independent connection
        con = sqlite3.connect(path)
        assert con.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 200
        con.close()
        # one failing job does not fail its batch-mates
        bad = s.write(lambda con: con.execute("INSERT INTO nosuchtable VALUES (1)"))
        good = s.write(st.insert_event, 1.0e9, "d", "x", None)
        with pytest.raises(sqlite3.OperationalError):
            await bad
        await good
        rows = await s.read(st.query_events, "d")
        assert [r["kind"] for r in rows] == ["x"]
    asyncio.run(scenario())
    batches = m.get("eclor_storage_batches_total")
    s.close()
    assert batches <= 10, batches  # 200 writes went in a handful of commits, not 200
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(st.MIGRATIONS)


def test_migration_refuses_newer_schema(tmp_path):
    path = str(tmp_path / "db.sqlite")
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=%d" % (len(st.MIGRATIONS) + 1))
    con.close()
    with pytest.raises(RuntimeError, match="newer than this gateway"):
        st.Store(path).open()


def test_retention_and_hourly_aggregates(tmp_path):
    s = st.Store(str(tmp_path / "db.sqlite")).open()
    now = 1_800_000_000.0
    h = (now // 3600 - 2) * 3600  # two hours ago, on the hour
    rows = [("power", h + 60 * i, float(i), None, None, "W") for i in range(10)]
    rows.append(("power", now - 40 * 86400, 5.0, None, None, "W"))  # older than retention
    s.run_sync(st.insert_readings, "lamp", rows)
    res = s.run_sync(st.aggregate_and_expire, now, 30, 730)
    assert res["raw_deleted"] == 1
    con = sqlite3.connect(str(tmp_path / "db.sqlite"))
    agg = con.execute("SELECT hour, n, sum, min, max, last FROM hourly WHERE device='lamp'").fetchall()
    assert agg == [(int(h // 3600), 10, 45.0, 0.0, 9.0, 9.0)]
    # a large backlog is deleted in bounded chunks
    s.run_sync(st.insert_readings, "lamp", [("energy", now - 50 * 86400 + i, 1.0, None, None, "Wh")
                                            for i in range(25)])
    seen = []
    while True:
        res = s.run_sync(st.aggregate_and_expire, now, 30, 730, 48, 10, False)
        seen.append(res["raw_deleted"])
        if not res["more"]:
            break
    assert seen == [10, 10, 5]
    assert con.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 10
    s.close()


def test_http_api_errors_keepalive_and_stats(tmp_path):
    async def scenario():
        async with running(tmp_path) as gw, Device("lamp-s", links=b"</cmd>") as lamp, \
                Device("bin-s", et="eclor.bin", queue=True, links=b"") as b:
            st_, _ = await gw.http("POST", "/api/devices", {"devices": [
                {"ep": "lamp-s", "type": "lamp", "zone": "z1", "commune": "Russange"},
                {"ep": "bin-s", "type": "bin", "zone": "z1", "commune": "Russange", "lat": 49.48, "lon": 5.96}]})
            assert st_ == 201
            assert (await lamp.register(gw)).code == Code.CREATED
            assert (await b.register(gw)).code == Code.CREATED
            t = time.time() - 60
            await lamp.post_readings(gw, senml_cbor("lamp-s", t - 30, energy=1000.0, level=50.0))
            await lamp.post_readings(gw, senml_cbor("lamp-s", t, energy=1500.0, level=0.0, **{"ev:lampFailure": True}))
            await b.post_readings(gw, senml_cbor("bin-s", t, fill=92.0, battery=3.1, **{"ev:full": True}))
            stats = await gw.get("/api/stats")
            g = stats["groups"][0]
            assert (g["commune"], g["zone"], g["lamps"], g["lamps_on"], g["lamps_off"], g["lamps_faulty"]) == \
                ("Russange", "z1", 1, 0, 1, 1)
            assert (g["bins"], g["bins_to_collect"], g["low_batteries"], g["offline"]) == (1, 1, 1, 0)
            assert g["energy_today_kwh"] == (0.5 if time.time() % 86400 > 120 else g["energy_today_kwh"])
            await gw.gw.store.write(st.aggregate_and_expire, time.time() + 7200, 30, 730)
            hr = await gw.get("/api/devices/lamp-s/hourly?name=energy")
            assert hr["count"] >= 1 and sum(h["n"] for h in hr["hourly"]) == 2
            assert max(h["max"] for h in hr["hourly"]) == 1500.0 and min(h["min"] for h in hr["hourly"]) == 1000.0
            col = await gw.get("/api/collection")
            assert col["bins"] == [{"ep": "bin-s", "fill": 92.0, "t": round(t, 3), "zone": "z1", "commune": "Russange",
                                    "lat": 49.48, "lon": 5.96, "online": True, "status": "full"}]
            ev = await gw.get("/api/events?kind=ev:lampFailure")
            assert [e["device"] for e in ev["events"]] == ["lamp-s"]
            # the device repeats its active event in later reports: no new event row until it changes
            await lamp.post_readings(gw, senml_cbor("lamp-s", t + 1, **{"ev:lampFailure": True}))
            await lamp.post_readings(gw, senml_cbor("lamp-s", t + 2, **{"ev:lampFailure": True}))
            await lamp.post_readings(gw, senml_cbor("lamp-s", t + 3, **{"ev:lampFailure": False}))
            ev = await gw.get("/api/events?kind=ev:lampFailure")
            assert [e["detail"]["active"] for e in ev["events"]] == [False, True]  # newest first
            assert [d["ep"] for d in (await gw.get("/api/devices?status=faulty"))["devices"]] == []
            await lamp.post_readings(gw, senml_cbor("lamp-s", t + 4, **{"ev:lampFailure": True}))
            assert [d["ep"] for d in (await gw.get("/api/devices?status=faulty"))["devices"]] == ["lamp-s"]
            # JSON errors
            for method, path, body, raw, code, msg in [
                ("GET", "/api/devices/nobody", None, None, 404, "unknown device"),
                ("GET", "/nothing", None, None, 404, "no such endpoint"),
                ("DELETE", "/api/devices", None, None, 405, "not allowed"),
                ("POST", "/api/devices", None, b"{not json", 400, "invalid JSON"),
                ("POST", "/api/devices", {"ep": "x"}, None, 400, "type must be"),
                ("GET", "/api/devices/lamp-s/readings?limit=0", None, None, 400, "limit"),
                ("GET", "/api/devices/lamp-s/readings?since=yesterday", None, None, 400, "since"),
                ("GET", "/api/commands?state=lost", None, None, 400, "state must be"),
                ("GET", "/api/commands/c-none", None, None, 404, "unknown command"),
                ("GET", "/api/devices?online=perhaps", None, None, 400, "online"),
            ]:
                code_, body_ = await gw.http(method, path, body, raw=raw)
                assert code_ == code and msg in body_["error"], (path, code_, body_)
            # keep-alive: several requests on one connection
            r, w = await asyncio.open_connection("127.0.0.1", gw.http_port)
            for _ in range(3):
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                await w.drain()
                head = await r.readuntil(b"\r\n\r\n")
                n = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0].split(b":")[1])
                assert b"200 OK" in head and b"keep-alive" in head
                assert b'"status":"ok"' in await r.readexactly(n)
            w.write(b"GARBAGE\r\n\r\n")
            await w.drain()
            assert b"400" in (await r.read())[:20]
            w.close()
            text = (await gw.http("GET", "/metrics"))[1]
            for name in ("eclor_coap_requests_total", "eclor_readings_stored_total", "eclor_registrations_total",
                         "eclor_storage_queue_depth", "eclor_storage_commit_seconds_count", "eclor_devices",
                         "eclor_coap_retransmissions_total", "eclor_http_requests_total"):
                assert name in text, name
    asyncio.run(scenario())
