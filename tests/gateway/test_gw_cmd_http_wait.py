"""The HTTP server's idle timeout bounds reading a request, never a running
handler: a command POST with "wait" longer than the idle timeout gets its
answer (here: idle 0.5 s, waits of 1.5 s; in production 30 s vs up to 300 s)."""
import asyncio
import json
import time

from gw_core_harness import running

IDLE = 0.5


async def request(r, w, method, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    w.write(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n"
             % (method, path, len(data))).encode() + data)
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    n = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
    return int(head.split()[1]), json.loads(await r.readexactly(n)), head


def test_wait_longer_than_idle_timeout_is_answered(tmp_path):
    async def scenario():
        async with running(tmp_path, http_idle_s=IDLE, command_retry_s=60) as gw:
            assert gw.gw.http.idle_s == IDLE
            # declared, never registered: its command stays queued, so "wait" runs to its end
            st, _ = await gw.http("POST", "/api/devices", {"devices": [
                {"ep": "lamp-a", "type": "lamp", "zone": "z"}, {"ep": "lamp-b", "type": "lamp", "zone": "z"}]})
            assert st == 201
            r, w = await asyncio.open_connection("127.0.0.1", gw.http_port)
            try:
                t0 = time.monotonic()
                st, c, head = await asyncio.wait_for(request(r, w, "POST", "/api/devices/lamp-a/commands", {
                    "action": "level", "params": {"level": 10}, "wait": 3 * IDLE}), 10)
                took = time.monotonic() - t0
                assert st == 201 and c["state"] == "queued", c
                assert 3 * IDLE - 0.05 <= took < 3 * IDLE + 2, took
                assert b"keep-alive" in head
                # same connection (keep-alive): a group command waiting past the idle timeout
                t0 = time.monotonic()
                st, g, _ = await asyncio.wait_for(request(r, w, "POST", "/api/commands", {
                    "selector": {"zone": "z"}, "action": "resume", "wait": 3 * IDLE}), 10)
                assert st == 200 and g["summary"] == {"queued": 2, "total": 2}, g
                assert time.monotonic() - t0 >= 3 * IDLE - 0.05
                # and an idle connection is still closed after the idle timeout
                t0 = time.monotonic()
                assert await asyncio.wait_for(r.read(), 5) == b""
                assert IDLE - 0.05 <= time.monotonic() - t0 < IDLE + 2
            finally:
                w.close()
            # a request trickling in slower than the idle timeout is cut off
            r, w = await asyncio.open_connection("127.0.0.1", gw.http_port)
            try:
                w.write(b"GET /healthz HTTP/1.1\r\n")
                await w.drain()
                assert await asyncio.wait_for(r.read(), 5) == b""
            finally:
                w.close()
            # the gateway still serves
            assert (await gw.get("/healthz"))["status"] == "ok"
    asyncio.run(scenario())
