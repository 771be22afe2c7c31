# Observe (server side) when the heap runs short, inside unix MicroPython:
# a module of its own, so that the big-payload tests of
# test_coap_observe_block.py keep their margin at the ESP32-sized heap (each
# test's process compiles its whole module).
import asyncio

from coap import codec
from coap.codec import Msg, CON
from test_coap_util import state_server as _state_server, Raw

TIMEOUT = 30


async def test_observer_kept_when_a_notification_finds_no_heap():
    # A MemoryError while notifying is our heap, not the client: the
    # observer stays and gets the newest state a moment later (it was
    # dropped silently, and the client never heard from us again).
    s, port, st = _state_server()
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"ob", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    assert (await raw.recvm()).opt(codec.OBSERVE) is not None
    fails = [2]
    pack = s._pack

    def short_of_heap(m, peer):
        if m.token == b"ob" and fails[0]:
            fails[0] -= 1
            raise MemoryError("test")
        return pack(m, peer)
    s._pack = short_of_heap
    st["n"] = 1
    s.notify("state")
    await asyncio.sleep_ms(20)
    assert s.observers("state") == 1 and fails[0] < 2
    st["n"] = 2  # changed meanwhile: the retry sends the newest state
    m = await raw.recvm(2000)
    assert m is not None and m.token == b"ob" and m.payload == b"n=2", m
    assert fails[0] == 0 and s.observers("state") == 1
    # a handler short of heap: kept too, notified once the heap is back
    s._pack = pack
    h = s._res["state"][0]
    calls = [0]

    def handler(req):
        calls[0] += 1
        if calls[0] == 1:
            raise MemoryError("test")
        return h(req)
    s._res["state"][0] = handler
    st["n"] = 3
    s.notify("state")
    m = await raw.recvm(2000)
    assert m is not None and m.code == codec.CONTENT and m.payload == b"n=3", m
    assert calls[0] == 2 and s.observers("state") == 1
    raw.close()
    s.close()


async def test_notify_without_heap_for_its_task_skips_the_state_not_the_caller():
    # notify() that cannot make its task (the heap is full) must not raise
    # into the application (a lamp's report loop): the state is skipped and
    # counted, the observer kept, and the next notify() sends the newest.
    s, port, st = _state_server()
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"ob", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    assert (await raw.recvm()).opt(codec.OBSERVE) is not None
    make = asyncio.create_task

    def no_heap(coro):
        raise MemoryError("test")
    asyncio.create_task = no_heap
    try:
        st["n"] = 1
        s.notify("state")  # does not raise
    finally:
        asyncio.create_task = make
    assert s.oom == 1 and s.observers("state") == 1
    assert await raw.recv(100) is None
    st["n"] = 2
    s.notify("state")
    m = await raw.recvm(2000)
    assert m is not None and m.token == b"ob" and m.payload == b"n=2", m
    raw.close()
    s.close()
