# RD registration client (firmware/coap/rd.py) against an RD played by a
# firmware Endpoint, inside unix MicroPython.
import asyncio
import time

from coap import codec, rd
from coap.endpoint import Endpoint
from coap.observe import Server
from coap.linkformat import parse
from test_coap_util import server, FAST

TIMEOUT = 40


class FakeRD:
    """Minimal RFC 9176 directory: idempotent by ep, forgets on demand."""

    def __init__(self, ep):
        self.regs = {}  # id -> (query, payload, ct)
        self.log = []
        self.down = False
        ep.add("rd", self.register)
        for i in range(1, 4):
            ep.add("rd/%d" % i, self.update)

    def register(self, req):
        self.log.append(("reg", req.query))
        q = dict(x.split("=", 1) for x in req.query)
        for i, v in self.regs.items():
            if v[0]["ep"] == q["ep"]:
                break
        else:
            i = len(self.regs) + 1
        self.regs[i] = (q, req.payload, req.ct)
        return (codec.CREATED, b"", None, [[codec.LOCATION_PATH, "rd"], [codec.LOCATION_PATH, str(i)]])

    def update(self, req):
        i = int(req.path.split("/")[1])
        self.log.append(("upd" if req.method == codec.POST else "del", i))
        if i not in self.regs:
            return (codec.NOT_FOUND, b"", None)
        if req.method == codec.DELETE:
            del self.regs[i]
            return (codec.DELETED, b"", None)
        return (codec.CHANGED, b"", None)


async def test_register_update_reregister_on_404_and_deregister():
    gw, port = server()
    rdir = FakeRD(gw)
    asyncio.create_task(gw.run())
    dev = Server(params=FAST)
    dev.add("state", lambda r: (codec.CONTENT, b"", None), obs=True, attrs=b'rt="eclor.lamp.state";ct=112')
    asyncio.create_task(dev.run())
    reg = rd.Registration(dev, ("127.0.0.1", port), "lamp-1", "eclor.lamp", lt=120)
    assert await reg.ensure() is True
    assert reg.registered and reg.location == "rd/1"
    q, payload, ct = rdir.regs[1]
    assert q == {"ep": "lamp-1", "lt": "120", "et": "eclor.lamp"} and ct == codec.CT_LINK
    assert parse(payload) == [("/state", {"rt": "eclor.lamp.state", "ct": "112", "obs": True})]
    # not due: nothing sent
    n = len(rdir.log)
    assert await reg.ensure() is True and len(rdir.log) == n
    # update when due (lt*3/4 or lt-30 s, whichever is sooner)
    assert 85000 <= reg.due_ms() <= 90000, reg.due_ms()
    reg.kick()
    assert await reg.ensure() is True and rdir.log[-1] == ("upd", 1)
    # the gateway forgot us: 4.04 on update -> register again at once
    del rdir.regs[1]
    reg.kick()
    assert await reg.ensure() is True
    assert rdir.log[-2:] == [("upd", 1), ("reg", ["ep=lamp-1", "lt=120", "et=eclor.lamp"])]
    assert reg.location == "rd/1"
    assert await reg.deregister() is True and rdir.regs == {} and not reg.registered
    dev.close()
    gw.close()


async def test_queue_mode_flag_and_explicit_links():
    gw, port = server()
    rdir = FakeRD(gw)
    asyncio.create_task(gw.run())
    dev = Endpoint(params=FAST)
    asyncio.create_task(dev.run())
    reg = rd.Registration(dev, ("127.0.0.1", port), "bin-7", "eclor.bin", lt=7200, links=b"</dp>", queue=True)
    assert await reg.ensure()
    q, payload, _ = rdir.regs[1]
    assert q["b"] == "UQ" and q["lt"] == "7200" and payload == b"</dp>"
    dev.close()
    gw.close()


async def test_backoff_with_jitter_while_unreachable_then_recovers():
    rd.BACKOFF_MIN_MS = 200
    dev = Endpoint(params={"ACK_TIMEOUT": 20, "MAX_RETRANSMIT": 1})
    asyncio.create_task(dev.run())
    gw, port = server()  # bound but not running: requests go unanswered
    reg = rd.Registration(dev, ("127.0.0.1", port), "lamp-2", "eclor.lamp", lt=60)
    dues = []
    for i in range(4):
        reg.kick() if i == 0 else None
        t0 = time.ticks_ms()
        ok = await reg.ensure()  # never raises
        assert ok is False and reg.fails == i + 1
        dues.append(reg.due_ms())
        assert await reg.ensure() is False and reg.fails == i + 1  # backing off: no new attempt
        reg._due = time.ticks_ms()  # skip the wait
    # exponential: [100..200], [200..400], [400..800], [800..1600] ms (50-100 % jitter)
    for i, d in enumerate(dues):
        hi = 200 << i
        assert hi // 2 - 50 <= d <= hi, (i, dues)
    # the gateway comes back
    rdir = FakeRD(gw)
    asyncio.create_task(gw.run())
    assert await reg.ensure() is True and reg.fails == 0 and reg.location == "rd/1"
    dev.close()
    gw.close()


async def test_run_task_never_blocks_the_application():
    rd.BACKOFF_MIN_MS = 100
    dev = Endpoint(params={"ACK_TIMEOUT": 30, "MAX_RETRANSMIT": 1})
    asyncio.create_task(dev.run())
    gw, port = server()
    reg = rd.Registration(dev, ("127.0.0.1", port), "lamp-3", "eclor.lamp", lt=60)
    task = reg.start()
    ticks = 0
    for _ in range(20):  # the application keeps its own pace meanwhile
        await asyncio.sleep_ms(10)
        ticks += 1
    assert ticks == 20 and not reg.registered and reg.fails >= 1
    FakeRD(gw)
    asyncio.create_task(gw.run())
    for _ in range(100):
        if reg.registered:
            break
        await asyncio.sleep_ms(20)
    assert reg.registered and reg.location == "rd/1"
    task.cancel()
    dev.close()
    gw.close()


async def test_concurrent_ensure_calls_register_once():
    gw, port = server()
    rdir = FakeRD(gw)
    asyncio.create_task(gw.run())
    dev = Endpoint(params=FAST)
    asyncio.create_task(dev.run())
    reg = rd.Registration(dev, ("127.0.0.1", port), "lamp-4", "eclor.lamp", lt=300)
    t = asyncio.create_task(reg.ensure())  # e.g. the run() task ...
    await asyncio.sleep_ms(0)
    second = await reg.ensure()  # ... and the application at the same moment
    assert second is False  # the first one is still at it: no second POST
    assert await t is True
    assert [x[0] for x in rdir.log] == ["reg"], rdir.log
    dev.close()
    gw.close()


async def test_memory_error_is_retried_soon_without_backoff():
    # A MemoryError on our side (a full heap) is not the gateway's fault: no
    # back-off from it, another try 200 ms later, and ensure() still never
    # raises.
    rd.BACKOFF_MIN_MS = 5000
    gw, port = server()
    rdir = FakeRD(gw)
    asyncio.create_task(gw.run())
    dev = Endpoint(params=FAST)
    asyncio.create_task(dev.run())
    reg = rd.Registration(dev, ("127.0.0.1", port), "lamp-5", "eclor.lamp", lt=60)
    real = dev.request

    def starved(*a, **k):
        raise MemoryError("memory allocation failed, allocating 224 bytes")
    dev.request = starved
    assert await reg.ensure() is False
    assert reg.last_code == "MemoryError" and reg.fails == 0, (reg.last_code, reg.fails)
    assert 100 <= reg.due_ms() <= 200, reg.due_ms()
    assert not rdir.log
    dev.request = real
    await asyncio.sleep_ms(reg.due_ms() + 5)
    assert await reg.ensure() is True and reg.location == "rd/1"
    dev.close()
    gw.close()
