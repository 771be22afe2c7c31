"""Group command fan-out under loss: 200 raw-UDP lamps on 127.0.0.1, each on
its own socket, losing 10 % of the datagrams in each direction (seeded).

What must hold: every lamp ends `done`, each command is applied exactly once
on its lamp (retransmissions carry the same MID and are answered from the
lamp's MID cache, as a CoAP endpoint does), the relay never has more than
`group_concurrency` exchanges in flight, the group's commands are created in
one store job and the state changes are coalesced (far fewer store jobs than
state changes), and the relay uses its own transmission parameters."""
import asyncio
import collections
import random
import socket
import time

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from gw_core_harness import running
from eclor.gateway import commands as cmds
from eclor.gateway import daemon

N = 200
LOSS = 0.10


class Lamp(asyncio.DatagramProtocol):
    """A lamp speaking raw CoAP on its own UDP socket (aiocoap only as codec)."""

    def __init__(self, ep, rng, gw_addr):
        self.ep, self.rng, self.gw_addr = ep, rng, gw_addr
        self.transport = None
        self.applied = collections.Counter()   # command id -> times applied
        self.by_mid = {}                       # (addr, mid) -> cached answer
        self.waiting = {}                      # mid -> future (our own requests)
        self.mid = rng.getrandbits(16)
        self.dropped = 0

    def connection_made(self, transport):
        self.transport = transport

    def lossy_send(self, data, addr):
        if self.rng.random() < LOSS:
            self.dropped += 1
            return
        self.transport.sendto(data, addr)

    def datagram_received(self, data, addr):
        if self.rng.random() < LOSS:
            self.dropped += 1
            return
        m = aiocoap.Message.decode(data)
        if m.mtype == Type.ACK:
            f = self.waiting.get(m.mid)
            # an empty ACK: the gateway answers separately (aiocoap does when
            # the handler takes longer than its empty-ACK delay, e.g. on a
            # loaded machine); keep waiting for the response by token
            if f is not None and not f.done() and m.code != Code.EMPTY:
                f.set_result(m)
            return
        if m.code.is_response() and m.token == b"r":   # the separate response to our registration
            if m.mtype == Type.CON:
                ack = aiocoap.Message(code=Code.EMPTY)
                ack.mtype, ack.mid, ack.token = Type.ACK, m.mid, b""
                self.lossy_send(ack.encode(), addr)
            for f in self.waiting.values():
                if not f.done():
                    f.set_result(m)
            return
        if m.mtype != Type.CON or m.opt.uri_path != ("cmd",):
            return
        key = (addr, m.mid)
        if key not in self.by_mid:  # a new exchange: apply; a retransmission: same answer again
            cmd = cbor2.loads(m.payload)
            self.applied[cmd["id"]] += 1
            ans = aiocoap.Message(code=Code.CHANGED, content_format=60, payload=cbor2.dumps(
                {"id": cmd["id"], "s": "done", "r": {"level": cmd["p"]["level"]}}))
            ans.mtype, ans.mid, ans.token = Type.ACK, m.mid, m.token
            self.by_mid[key] = ans.encode()
        self.lossy_send(self.by_mid[key], addr)

    async def register(self):
        """POST /rd with our own retransmissions (loss applies here too)."""
        self.mid = (self.mid + 1) & 0xFFFF
        m = aiocoap.Message(code=Code.POST, uri_path=("rd",), content_format=40, payload=b"</cmd>;ct=60",
                            uri_query=("ep=" + self.ep, "lt=300", "et=eclor.lamp"))
        m.mtype, m.mid, m.token = Type.CON, self.mid, b"r"
        f = self.waiting[self.mid] = asyncio.get_running_loop().create_future()
        data = m.encode()
        for attempt in range(8):
            self.lossy_send(data, self.gw_addr)
            try:
                return await asyncio.wait_for(asyncio.shield(f), 0.2 * 2 ** min(attempt, 3))
            except asyncio.TimeoutError:
                pass
        raise AssertionError("%s could not register" % self.ep)


def test_group_command_to_200_lossy_lamps(tmp_path):
    async def scenario():
        async with running(tmp_path, group_concurrency=32, command_ack_timeout=0.1,
                           command_max_retransmit=8, command_retry_s=0.5) as gw:
            relay = gw.gw.relay
            t = relay.tuning()
            assert (t.ACK_TIMEOUT, t.ACK_RANDOM_FACTOR, t.MAX_RETRANSMIT) == (0.1, 1.5, 8)
            # the observe/other requests keep the general parameters
            assert gw.gw.coap.tuning().ACK_TIMEOUT == 2.0
            await gw.http("POST", "/api/devices", {"devices": [
                {"ep": "lamp-%03d" % i, "type": "lamp", "commune": "Thil"} for i in range(N)]})
            loop = asyncio.get_running_loop()
            lamps = []
            for i in range(N):
                lamp = Lamp("lamp-%03d" % i, random.Random(1000 + i), gw.coap_addr)
                await loop.create_datagram_endpoint(lambda lamp=lamp: lamp, local_addr=("127.0.0.1", 0),
                                                    family=socket.AF_INET)
                lamps.append(lamp)
            try:
                regs = await asyncio.gather(*(lamp.register() for lamp in lamps))
                assert all(r.code == Code.CREATED for r in regs)

                # instrument: peak exchanges in flight, store jobs by kind
                peak = [0]
                acquire = relay.window.acquire

                async def counting_acquire():
                    await acquire()
                    peak[0] = max(peak[0], relay.window.held)
                relay.window.acquire = counting_acquire
                jobs = collections.Counter()
                store = gw.gw.store
                write, write_nowait = store.write, store.write_nowait

                def count(fn):
                    jobs[getattr(fn, "__name__", "other")] += 1
                store.write = lambda fn, *a: (count(fn), write(fn, *a))[1]
                store.write_nowait = lambda fn, *a: (count(fn), write_nowait(fn, *a))[1]

                t0 = time.monotonic()
                st, res = await gw.http("POST", "/api/commands", {
                    "selector": {"commune": "Thil", "type": "lamp"}, "action": "level",
                    "params": {"level": 70}, "ttl": 120, "wait": 30})
                took = time.monotonic() - t0
                store.write, store.write_nowait = write, write_nowait
                assert st == 200, res
                assert res["summary"] == {"done": N, "total": N}, res["summary"]
                assert all(d["state"] == "done" and d["answer"]["r"] == {"level": 70} for d in res["devices"])
                ids = {d["ep"]: d["id"] for d in res["devices"]}
                for lamp in lamps:  # applied exactly once, nothing else applied
                    assert lamp.applied == {ids[lamp.ep]: 1}, (lamp.ep, lamp.applied)
                assert sum(lamp.dropped for lamp in lamps) > 20  # the loss did happen
                assert 1 <= peak[0] <= 32, peak
                assert relay.window.held == 0 and relay.window.queued == 0
                # one job creates the group; 2 x 200 state changes in far fewer jobs
                assert jobs["insert_commands"] == 1 and jobs["insert_command"] == 0, jobs
                assert 1 <= jobs["apply_updates"] < N, jobs
                assert took < 20, took
                # the states are durable: read back from the database
                await asyncio.sleep(0.2)
                rows = await gw.gw.store.read(lambda con: con.execute(
                    "SELECT state, COUNT(*) FROM commands WHERE grp=? GROUP BY state",
                    (res["group"],)).fetchall())
                assert [tuple(r) for r in rows] == [("done", N)], rows
                text = (await gw.http("GET", "/metrics"))[1]
                assert "eclor_command_window" in text
            finally:
                for lamp in lamps:
                    lamp.transport.close()
    asyncio.run(scenario())


def test_command_tuning_inherits_the_general_parameters(tmp_path):
    async def scenario():
        async with running(tmp_path, ack_timeout=0.7, max_retransmit=2) as gw:
            t = gw.gw.relay.tuning()
            assert (t.ACK_TIMEOUT, t.ACK_RANDOM_FACTOR, t.MAX_RETRANSMIT) == (0.7, 1.5, 2)
            gw.gw.cfg.update(command_ack_timeout=0.2, command_max_retransmit=5)  # as after a SIGHUP
            t = gw.gw.relay.tuning()
            assert (t.ACK_TIMEOUT, t.MAX_RETRANSMIT) == (0.2, 5)
    asyncio.run(scenario())


def test_config_refuses_bad_command_parameters():
    from eclor.gateway import config
    import pytest
    for k, v in (("command_ack_timeout", 0.001), ("command_ack_random_factor", 0.5),
                 ("command_max_retransmit", 11), ("command_max_retransmit", -2), ("group_concurrency", 0),
                 ("coap_rcvbuf", -1), ("http_idle_s", 0.0)):
        with pytest.raises(config.ConfigError, match=k):
            config.load(None, {k: v})
    cfg = config.load(None, {"command_ack_timeout": 0.25, "command_max_retransmit": 6})
    assert cfg["command_ack_timeout"] == 0.25 and cfg["command_max_retransmit"] == 6


def test_coap_socket_receive_buffer_is_raised(tmp_path):
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
    except OSError:
        rmem_max = None

    async def scenario():
        async with running(tmp_path, coap_rcvbuf=1 << 21) as gw:
            sock = gw.gw.coap.udp.transport.get_extra_info("socket")
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert gw.gw.coap_rcvbuf == got
            # Linux reports twice what it grants; capped by rmem_max unless privileged
            assert got >= min(1 << 21, rmem_max or 1 << 21), (got, rmem_max)
            text = (await gw.http("GET", "/metrics"))[1]
            assert "eclor_coap_rcvbuf_bytes %d" % got in text or "eclor_coap_rcvbuf_bytes %d.0" % got in text
    asyncio.run(scenario())
    # the helper on its own, on a plain socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = daemon.raise_rcvbuf(s, 1 << 20)
        assert got == s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= min(1 << 20, rmem_max or 1 << 20)


def test_window_is_fifo_and_survives_cancellation():
    async def scenario():
        limit = [2]
        w = cmds.Window(lambda: limit[0])
        order = []

        async def user(i, hold):
            await w.acquire()
            order.append(i)
            try:
                await asyncio.sleep(hold)
            finally:
                w.release()
        await w.acquire()
        await w.acquire()
        tasks = [asyncio.ensure_future(user(i, 0.01)) for i in range(5)]
        await asyncio.sleep(0)
        assert w.queued == 5
        tasks[1].cancel()          # a waiter cancelled while queued
        w.release()
        w.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == [0, 2, 3, 4] and w.held == 0 and w.queued == 0
    asyncio.run(scenario())
