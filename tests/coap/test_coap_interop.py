"""Interop: the firmware CoAP stack (in unix MicroPython) against aiocoap,
through a lossy UDP relay that drops 20 % of the datagrams in each direction
(seeded, 127.0.0.1 only).

* firmware client -> aiocoap server: PUT, GET, POST, Block2 GET of 3 KB,
  Block1 PUT of 3 KB, a separate response, observe with ten notifications,
  observe of a 3 KB resource (each notification fetched whole, RFC 7959
  §2.6).
* aiocoap client -> firmware server: PUT, GET, POST, observe with ten
  notifications, Block2 GET of 3 KB, Block1 PUT of 3 KB.

Both the firmware and aiocoap use short ACK_TIMEOUT (100 ms) and a larger
MAX_RETRANSMIT (8) so the tests stay fast and a 20 % loss rate does not
exhaust the retransmissions (0.36**9 per exchange).
"""
import asyncio
import json
import random
import socket
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
import pytest
from aiocoap.numbers.constants import TransportTuning

from eclor.tools import mpy

LOSS = 0.2
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
BIG = bytes((i * 31 + 7) & 255 for i in range(3072))


class LossyRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and `server`, dropping LOSS of
    them in each direction with a seeded random generator."""

    def __init__(self, server, seed):
        self.server = server
        self.client = None
        self.rnd = random.Random(seed)
        self.passed = self.dropped = 0
        self.from_server = {}  # message type -> count (before the loss)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if addr == self.server:
            dst = self.client
        else:
            self.client, dst = addr, self.server
        if dst is None:
            return
        if addr == self.server and data:
            t = (data[0] >> 4) & 3
            self.from_server[t] = self.from_server.get(t, 0) + 1
        if self.rnd.random() < LOSS:
            self.dropped += 1
            return
        self.passed += 1
        self.transport.sendto(data, dst)


async def start_relay(server_port, seed):
    loop = asyncio.get_running_loop()
    transport, relay = await loop.create_datagram_endpoint(
        lambda: LossyRelay(("127.0.0.1", server_port), seed), local_addr=("127.0.0.1", 0))
    return transport, relay, transport.get_extra_info("sockname")[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fast_aiocoap(monkeypatch):
    monkeypatch.setattr(TransportTuning, "ACK_TIMEOUT", 0.1)
    monkeypatch.setattr(TransportTuning, "MAX_RETRANSMIT", 8)
    monkeypatch.setattr(TransportTuning, "EMPTY_ACK_DELAY", 0.05, raising=False)


@pytest.fixture(scope="module", params=["src", "mpy"])
def firmware(request, tmp_path_factory):
    if request.param == "src":
        return mpy.firmware_dir()
    dst = tmp_path_factory.mktemp("coap-fw-mpy")
    mpy.compile_tree(dst)
    return dst


async def run_micropython(fw, script, args, tmp_path, timeout=60):
    path = tmp_path / "script.py"
    path.write_text(script)
    proc = await asyncio.create_subprocess_exec(
        *mpy.micropython_cmd([str(path)] + [str(a) for a in args]), env=mpy.micropython_env([fw]),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError("micropython timed out\n" + out.decode() + err.decode())
    assert proc.returncode == 0, out.decode() + err.decode()
    return out.decode()


FW_CLIENT = r"""
import asyncio, sys, json
from coap import codec
from coap.observe import Server

BIG = bytes((i * 31 + 7) & 255 for i in range(3072))

def whole(p):
    # p is BigCounter state n's 3 KB representation (checked in place: no
    # 3 KB copy to compare with on a 100 KB heap)
    n = int(p[:2])
    return len(p) == 3000 and all(p[2 + i] == (i * 7 + n) & 255 for i in range(2998))

async def main():
    ep = Server(params={"ACK_TIMEOUT": 100, "MAX_RETRANSMIT": 8, "RESPONSE_TIMEOUT": 10000})
    asyncio.create_task(ep.run())
    a = ("127.0.0.1", int(sys.argv[1]))
    out = {}
    r = await ep.request(codec.PUT, a, "text", b"hello")
    out["put"] = r.code
    r = await ep.request(codec.GET, a, "text")
    out["get"] = [r.code, r.payload.decode(), r.ct]
    r = await ep.request(codec.POST, a, "text", b" world", query=["mode=append"])
    out["post"] = [r.code, r.payload.decode()]
    r = await ep.request(codec.GET, a, "big")
    out["block2"] = [r.code, len(r.payload), r.payload == BIG]
    r = await ep.request(codec.PUT, a, "upload", BIG, ct=42)
    out["block1"] = [r.code, r.payload.decode()]
    r = await ep.request(codec.GET, a, "slow")
    out["separate"] = [r.code, r.payload.decode()]
    seen = []
    r = await ep.observe(a, "counter", lambda n: seen.append(int(n.payload)))
    out["observe_first"] = [r.code, r.opt(codec.OBSERVE) is not None]
    for _ in range(300):
        if seen and seen[-1] >= 10:
            break
        await asyncio.sleep_ms(50)
    ep.unobserve(r)
    out["observe"] = seen
    # a 3 KB observable resource: each notification comes as its first block,
    # the stack fetches the rest (GET Block2 1.., same ETag) and delivers it whole
    big = []
    def on_big(n):
        big.append([int(n.payload[:2]), len(n.payload), whole(n.payload)])
    r = await ep.observe(a, "bigcounter", on_big)
    out["big_first"] = [r.code, len(r.payload), whole(r.payload), r.opt(codec.OBSERVE) is not None]
    for _ in range(400):
        if big and big[-1][0] >= 5:
            break
        await asyncio.sleep_ms(50)
    ep.unobserve(r)
    out["big_observe"] = big
    out["retx"] = ep.retx
    print("RESULT " + json.dumps(out))
    ep.close()

asyncio.run(main())
"""


class Text(resource.Resource):
    def __init__(self):
        super().__init__()
        self.value = b""

    async def render_get(self, request):
        return aiocoap.Message(payload=self.value, content_format=0)

    async def render_put(self, request):
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def render_post(self, request):
        assert request.opt.uri_query == ("mode=append",)
        self.value += request.payload
        return aiocoap.Message(code=aiocoap.CHANGED, payload=self.value)


class Big(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=BIG)


class Upload(resource.Resource):
    def __init__(self):
        super().__init__()
        self.got = []

    async def render_put(self, request):
        self.got.append(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"%d" % len(request.payload))


class Counter(resource.ObservableResource):
    """Counts 1..10 every 100 ms once observed, then repeats 10."""

    def __init__(self):
        super().__init__()
        self.n = 0
        self.task = None

    async def render_get(self, request):
        if self.task is None:
            self.task = asyncio.create_task(self.count())
        return aiocoap.Message(payload=b"%d" % self.n)

    async def count(self):
        while True:
            await asyncio.sleep(0.1)
            self.n = min(self.n + 1, 10)
            self.updated_state()


def big_rep(n):
    """The 3 KB representation of BigCounter state n (the firmware's whole()
    checks it)."""
    return b"%02d" % n + bytes((i * 7 + n) & 255 for i in range(2998))


class BigCounter(Counter):
    """Counter with a 3 KB representation (three 1 KB blocks) and an ETag per
    state: counts 1..5 every 150 ms once observed, then repeats 5.

    Block2 is cut by the resource itself, statelessly (RFC 7959 §2.4): the
    answer to the registration and every notification carry the first block
    only, as §2.6 has a server do, and a GET with Block2 num 1.. (no Observe)
    gets the others.  aiocoap's own block-wise layer is bypassed: it sends an
    observed representation whole, in one datagram, whatever its size, and
    answers 4.08 to a Block2 num > 0 it did not start itself."""

    def __init__(self):
        super().__init__()
        self.gets = []  # Block2 num of each rendering (None: without Block2)

    async def needs_blockwise_assembly(self, request):
        return False

    async def render_get(self, request):
        if self.task is None:
            self.task = asyncio.create_task(self.count())
        self.gets.append(request.opt.block2.block_number if request.opt.block2 else None)
        b = request.opt.block2
        whole = aiocoap.Message(code=aiocoap.CONTENT, payload=big_rep(self.n), etag=bytes((self.n,)))
        return whole._extract_block(b.block_number if b else 0, b.size_exponent if b else 6, 1024)

    async def count(self):
        while True:
            await asyncio.sleep(0.15)
            self.n = min(self.n + 1, 5)
            self.updated_state()


class Slow(resource.Resource):
    async def render_get(self, request):
        await asyncio.sleep(0.3)  # longer than EMPTY_ACK_DELAY: separate response
        return aiocoap.Message(payload=b"late")


def test_firmware_client_against_aiocoap_server_with_loss(firmware, tmp_path, fast_aiocoap):
    asyncio.run(_firmware_client(firmware, tmp_path))


async def _firmware_client(firmware, tmp_path):
    port = free_udp_port()
    site = resource.Site()
    site.add_resource(["text"], Text())
    site.add_resource(["big"], Big())
    up = Upload()
    site.add_resource(["upload"], up)
    site.add_resource(["slow"], Slow())
    counter = Counter()
    site.add_resource(["counter"], counter)
    bigc = BigCounter()
    site.add_resource(["bigcounter"], bigc)
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    transport, relay, rport = await start_relay(port, seed=7)
    try:
        out = await run_micropython(firmware, FW_CLIENT, [rport], tmp_path)
    finally:
        for c in (counter, bigc):
            if c.task:
                c.task.cancel()
        transport.close()
        await ctx.shutdown()
    line = [l for l in out.splitlines() if l.startswith("RESULT ")]
    assert line, out
    res = json.loads(line[0][7:])
    assert res["put"] == 68
    assert res["get"] == [69, "hello", 0]
    assert res["post"] == [68, "hello world"]
    assert res["block2"] == [69, 3072, True]
    assert res["block1"] == [68, "3072"] and up.got == [BIG]
    assert res["separate"] == [69, "late"]
    assert res["observe_first"] == [69, True]
    notes = res["observe"]
    assert notes == sorted(notes) and notes[-1] == 10 and len(set(notes)) >= 4, notes
    assert res["big_first"] == [69, 3000, True, True], res["big_first"]
    big = res["big_observe"]
    # every delivery is a whole, consistent 3 KB representation, in order
    assert big and all(b[1:] == [3000, True] for b in big), big
    assert [b[0] for b in big] == sorted(b[0] for b in big) and big[-1][0] == 5, big
    # the rest of each representation was asked as Block2 num 1, 2: never
    # block 0 again (None: the registration, and each notification's render)
    assert bigc.gets[0] is None and set(bigc.gets) == {None, 1, 2}, bigc.gets
    # the loss really happened and was recovered by retransmission
    assert relay.dropped > 0 and res["retx"] > 0, (relay.dropped, res)


FW_SERVER = r"""
import asyncio, sys
from coap import codec
from coap.observe import Server

BIG = bytes((i * 31 + 7) & 255 for i in range(3072))
text = [b""]
state = [0]
done = asyncio.Event()
uploads = []

def h_text(req):
    if req.method == codec.GET:
        return codec.CONTENT, text[0], 0
    if req.method == codec.PUT:
        text[0] = req.payload
        return codec.CHANGED, b"", None
    if req.method == codec.POST and req.query == ["mode=append"]:
        text[0] += req.payload
        return codec.CHANGED, text[0], 0
    return codec.METHOD_NOT_ALLOWED, b"", None

def h_upload(req):
    uploads.append(req.payload == BIG)
    return codec.CHANGED, b"%d" % len(req.payload), 0

def h_quit(req):
    done.set()
    return codec.DELETED, b"", None

async def main():
    ep = Server(port=int(sys.argv[1]), host="127.0.0.1",
                  params={"ACK_TIMEOUT": 100, "MAX_RETRANSMIT": 8, "OBS_CON_N": 2, "MAX_BODY": 4096})
    ep.add("text", h_text)
    ep.add("big", lambda req: (codec.CONTENT, BIG, 42))
    ep.add("upload", h_upload)
    ep.add("state", lambda req: (codec.CONTENT, b"%d" % state[0], 0), obs=True)
    ep.add("quit", h_quit)
    asyncio.create_task(ep.run())
    print("READY")
    while ep.observers("state") == 0:
        await asyncio.sleep_ms(20)
    for i in range(1, 11):
        state[0] = i
        ep.notify("state")
        await asyncio.sleep_ms(120)
    # the last change may have gone out NON and been lost: repeat the state
    # (as a device does on its report period) until the client is done
    while not done.is_set():
        ep.notify("state")
        await asyncio.sleep_ms(150)
    await asyncio.sleep_ms(300)  # let the last ACK retransmissions settle
    print("UPLOADS", uploads, "RETX", ep.retx, "BAD", ep.bad)
    ep.close()

asyncio.run(main())
"""


def test_aiocoap_client_against_firmware_server_with_loss(firmware, tmp_path, fast_aiocoap):
    asyncio.run(_firmware_server(firmware, tmp_path))


async def _firmware_server(firmware, tmp_path):
    port = free_udp_port()
    transport, relay, rport = await start_relay(port, seed=11)
    fw = asyncio.create_task(run_micropython(firmware, FW_SERVER, [port], tmp_path))
    await asyncio.sleep(0.5)
    ctx = await aiocoap.Context.create_client_context()
    base = "coap://127.0.0.1:%d/" % rport

    async def req(code, path, payload=b"", **kw):
        return await ctx.request(aiocoap.Message(code=code, uri=base + path, payload=payload, **kw)).response

    try:
        r = await req(aiocoap.PUT, "text", b"hello")
        assert r.code == aiocoap.CHANGED
        r = await req(aiocoap.GET, "text")
        assert (r.code, r.payload) == (aiocoap.CONTENT, b"hello")
        r = await req(aiocoap.POST, "text", b" world", uri_query=["mode=append"])
        assert (r.code, r.payload) == (aiocoap.CHANGED, b"hello world")

        # observe: ten state changes; at least every second notification is
        # CON, and a state that changes while a CON one is still being
        # retransmitted is sent when it completes (older ones are skipped)
        pr = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=base + "state", observe=0))
        seen = []
        last = asyncio.get_running_loop().create_future()

        def on_note(n):
            seen.append(int(n.payload))
            if seen[-1] == 10 and not last.done():
                last.set_result(None)
        pr.observation.register_callback(on_note)
        first = await pr.response
        seen.insert(0, int(first.payload))
        await asyncio.wait_for(last, 30)
        pr.observation.cancel()
        values = seen[1:]
        assert values == sorted(set(values)) and values[-1] == 10, seen
        assert len(values) >= 4, seen
        assert relay.from_server.get(0, 0) >= 3 and relay.from_server.get(1, 0) >= 3, relay.from_server

        r = await req(aiocoap.GET, "big")
        assert r.code == aiocoap.CONTENT and r.payload == BIG
        r = await req(aiocoap.PUT, "upload", BIG)
        assert (r.code, r.payload) == (aiocoap.CHANGED, b"3072")
        r = await req(aiocoap.DELETE, "quit")
        assert r.code == aiocoap.DELETED
        out = await asyncio.wait_for(fw, 30)
    finally:
        if not fw.done():
            fw.cancel()
        await ctx.shutdown()
        transport.close()
    assert "UPLOADS [True]" in out, out
    assert relay.dropped > 0, relay.dropped
