# Observe (RFC 7641) and block-wise (RFC 7959) inside unix MicroPython.
import asyncio

from coap import codec
from coap.codec import Msg, CON, NON, ACK, RST
from coap.observe import Server
from coap.block import parse
from test_coap_util import server, state_server as _state_server, Raw, FAST

TIMEOUT = 30


async def test_observe_register_notify_seq_and_periodic_con():
    s, port, st = _state_server({"OBS_CON_N": 3})
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"ob", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    r = await raw.recvm()
    assert r.code == codec.CONTENT and r.uopt(codec.OBSERVE) is not None and s.observers("state") == 1
    seqs = [r.uopt(codec.OBSERVE)]
    types = []
    for i in range(1, 7):
        st["n"] = i
        s.notify("state")
        m = await raw.recvm()
        assert m.token == b"ob" and m.payload == b"n=%d" % i, m
        seqs.append(m.uopt(codec.OBSERVE))
        types.append(m.mtype)
        if m.mtype == CON:
            raw.ack(m)
    assert seqs == sorted(seqs) and len(set(seqs)) == 7, seqs
    assert types == [NON, NON, CON, NON, NON, CON], types
    # deregister with Observe=1
    raw.sendm(Msg(CON, codec.GET, 2, b"ob", [[codec.OBSERVE, 1], [codec.URI_PATH, "state"]]), port)
    r = await raw.recvm()
    assert r.code == codec.CONTENT and r.opt(codec.OBSERVE) is None and s.observers() == 0
    s.notify("state")
    assert await raw.recv(150) is None
    raw.close()
    s.close()


async def test_observer_dropped_when_con_notification_unacked_or_rst():
    s, port, st = _state_server({"OBS_CON_N": 1, "ACK_TIMEOUT": 30, "MAX_RETRANSMIT": 2})
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"o1", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    await raw.recvm()
    s.notify("state")  # CON, never acknowledged
    got = 0
    while await raw.recv(400) is not None:
        got += 1
    assert got == 3 and s.observers() == 0, (got, s.observers())
    # RST to a NON notification ends the observation too
    s.p["OBS_CON_N"] = 100
    raw.sendm(Msg(CON, codec.GET, 3, b"o2", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    await raw.recvm()
    assert s.observers() == 1
    s.notify("state")
    m = await raw.recvm()
    assert m.mtype == NON
    raw.send(bytes((0x70, 0, m.mid >> 8, m.mid & 255)), port)
    await asyncio.sleep_ms(50)
    assert s.observers() == 0
    raw.close()
    s.close()


async def test_observer_limit_and_error_ends_observation():
    s, port, st = _state_server({"OBS_MAX": 1})
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"a", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    assert (await raw.recvm()).opt(codec.OBSERVE) is not None
    raw.sendm(Msg(CON, codec.GET, 2, b"b", [[codec.OBSERVE, 0], [codec.URI_PATH, "state"]]), port)
    r = await raw.recvm()
    assert r.code == codec.CONTENT and r.opt(codec.OBSERVE) is None  # served, not registered
    s._res["state"][0] = lambda req: (codec.SERVICE_UNAVAILABLE, b"", None)
    s.notify("state")
    m = await raw.recvm()
    assert m.code == codec.SERVICE_UNAVAILABLE and m.mtype == CON and m.opt(codec.OBSERVE) is None
    raw.ack(m)
    await asyncio.sleep_ms(50)
    assert s.observers() == 0
    raw.close()
    s.close()


async def test_block2_fetch_whole_and_szx_negotiation():
    s, port = server()
    big = bytes(i * 7 & 255 for i in range(3000))
    s.add("big", lambda r: (codec.CONTENT, big, codec.CT_OCTET))
    asyncio.create_task(s.run())
    for szx in (6, 4, 2):
        c = Server(params=dict(FAST, SZX=szx))
        sent = []
        c.wrap = lambda m, peer: sent.append(m.opt(codec.BLOCK2)) or m  # the OSCORE seam as a tap
        asyncio.create_task(c.run())
        r = await c.request(codec.GET, ("127.0.0.1", port), "big")
        assert r.code == codec.CONTENT and r.payload == big and r.opt(codec.BLOCK2) is None
        want = (3000 + (16 << szx) - 1) // (16 << szx)
        assert len(sent) == want and all(parse(b)[2] == szx for b in sent if b is not None), (szx, sent)
        c.close()
    # a raw block request beyond the end is a 4.02
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 5, b"", [[codec.URI_PATH, "big"], [codec.BLOCK2, (100 << 4) | 6]]), port)
    assert (await raw.recvm()).code == codec.BAD_OPTION
    raw.close()
    s.close()


async def test_block1_upload_server_asks_smaller_blocks():
    s, port = server({"SZX": 4, "MAX_BODY": 4096})
    got = []
    s.add("up", lambda r: got.append(r.payload) or (codec.CHANGED, b"ok", 0))
    asyncio.create_task(s.run())
    c = Server(params=FAST)  # SZX 6: starts with 1024-byte blocks
    sizes = []
    c.wrap = lambda m, peer: sizes.append((parse(m.opt(codec.BLOCK1))[2], len(m.payload))) or m
    asyncio.create_task(c.run())
    body = bytes(i * 13 & 255 for i in range(3000))
    r = await c.request(codec.PUT, ("127.0.0.1", port), "up", body)
    assert r.code == codec.CHANGED and r.payload == b"ok" and got == [body]
    assert sizes[0] == (6, 1024) and all(x == (4, 256) for x in sizes[1:-1]), sizes
    assert len(sizes) == 1 + (3000 - 1024 + 255) // 256
    c.close()
    s.close()


async def test_block1_too_large_is_413_with_size1_and_gap_is_408():
    s, port = server({"MAX_BODY": 2048})
    s.add("up", lambda r: (codec.CHANGED, b"", None))
    asyncio.create_task(s.run())
    c = Server(params=FAST)
    asyncio.create_task(c.run())
    r = await c.request(codec.POST, ("127.0.0.1", port), "up", bytes(3000))
    assert r.code == codec.REQUEST_ENTITY_TOO_LARGE and r.uopt(codec.SIZE1) == 2048
    raw = Raw()  # block 1 without block 0
    raw.sendm(Msg(CON, codec.POST, 9, b"", [[codec.URI_PATH, "up"], [codec.BLOCK1, (1 << 4) | 8 | 6]], bytes(1024)), port)
    assert (await raw.recvm()).code == codec.REQUEST_ENTITY_INCOMPLETE
    raw.close()
    c.close()
    s.close()


async def test_client_observe_orders_notifications_and_unobserve_resets():
    s, port, st = _state_server({"OBS_CON_N": 2})
    c = Server(params=FAST)
    asyncio.create_task(c.run())
    got = []
    r = await c.observe(("127.0.0.1", port), "state", lambda m: got.append(m.payload))
    assert r.payload == b"n=0" and s.observers() == 1
    for i in range(1, 5):
        st["n"] = i
        s.notify("state")
        await asyncio.sleep_ms(30)
    assert got == [b"n=1", b"n=2", b"n=3", b"n=4"], got
    # a stale notification (older sequence number) is acknowledged, not delivered
    o = c._cobs[0]
    old = Msg(NON, codec.CONTENT, 4242, o[1], [[codec.OBSERVE, o[3] - 1]], b"stale")
    buf = bytearray(64)
    n = codec.encode(old, buf)
    c._rx(bytes(buf[:n]), o[0])
    assert got[-1] == b"n=4"
    c.unobserve(r)
    st["n"] = 5
    s.notify("state")  # the client answers RST -> the server drops the observer
    await asyncio.sleep_ms(100)
    assert s.observers() == 0 and got[-1] == b"n=4"
    c.close()
    s.close()


async def test_async_obs_handler_separate_response_and_failure_ends_observation():
    s, port = server()
    st = {"n": 0}

    async def h(req):
        await asyncio.sleep_ms(5)
        if st["n"] == 2:
            raise ValueError("sensor gone")
        return (codec.CONTENT, b"%d" % st["n"], 0)
    s.add("slow", h, obs=True)
    asyncio.create_task(s.run())
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"ob", [[codec.OBSERVE, 0], [codec.URI_PATH, "slow"]]), port)
    ack = await raw.recvm()
    assert (ack.mtype, ack.code) == (ACK, 0)  # coroutine handler: empty ACK first
    r = await raw.recvm()  # separate CON response registers the observer
    assert (r.mtype, r.payload) == (CON, b"0") and r.opt(codec.OBSERVE) is not None
    raw.ack(r)
    await asyncio.sleep_ms(20)
    assert s.observers() == 1
    st["n"] = 1
    s.notify("slow")
    m = await raw.recvm()
    assert m.payload == b"1"
    if m.mtype == CON:
        raw.ack(m)
    st["n"] = 2
    s.notify("slow")  # the handler raises: 5.00 (CON), observation over
    m = await raw.recvm()
    assert m.code == codec.INTERNAL_SERVER_ERROR and m.mtype == CON and m.opt(codec.OBSERVE) is None
    raw.ack(m)
    await asyncio.sleep_ms(30)
    assert s.observers() == 0
    raw.close()
    s.close()


def _rep(n):
    return bytes((i * 7 + n) & 255 for i in range(3000))


async def test_client_observe_multiblock_notifications_fetched_whole():
    # RFC 7959 §2.6: a 3 KB representation comes as its first block; the
    # client GETs Block2 num 1, 2 (no Observe) and delivers it whole.  A
    # short dedup ring: each entry keeps a cached 1 KB block answer, and the
    # test's 3 KB states share the 100 KB heap with both endpoints
    s, port = server({"OBS_CON_N": 2, "DEDUP": 3})
    st = {"n": 0, "rep": _rep(0)}
    seen = []

    def h(req):
        seen.append((req.uopt(codec.BLOCK2), req.opt(codec.OBSERVE) is not None))
        return (codec.CONTENT, st["rep"], 42, [[codec.ETAG, bytes((st["n"],))]])
    s.add("big", h, obs=True)
    asyncio.create_task(s.run())
    c = Server(params=FAST)
    asyncio.create_task(c.run())
    got = []

    def cb(m):
        got.append((m.uopt(codec.OBSERVE), len(m.payload), m.payload == st["rep"], m.opt(codec.BLOCK2)))
    r = await c.observe(("127.0.0.1", port), "big", cb)
    assert r.code == codec.CONTENT and r.payload == st["rep"] and r.opt(codec.BLOCK2) is None
    assert r.opt(codec.OBSERVE) is not None and s.observers("big") == 1
    for i in range(1, 4):
        st["n"] = i
        st["rep"] = None
        st["rep"] = _rep(i)
        s.notify("big")
        for _ in range(100):
            if len(got) == i:
                break
            await asyncio.sleep_ms(10)
    assert [g[1:] for g in got] == [(3000, True, None)] * 3, got
    assert [g[0] for g in got] == sorted(g[0] for g in got)
    # the rest of each was asked from block 1 on, without Observe
    later = [b for b, o in seen if b]
    assert later and all(b >> 4 in (1, 2) for b in later), seen
    assert all(not o for b, o in seen if b), seen
    c.close()
    s.close()


async def test_block2_fetch_rejects_a_changed_etag():
    # the representation changes between blocks: the client does not glue
    # blocks of two different states together
    s, port = server()
    n = [0]

    def h(req):
        n[0] += 1
        return (codec.CONTENT, bytes(3000), 42, [[codec.ETAG, bytes((n[0],))]])
    s.add("moving", h)
    asyncio.create_task(s.run())
    c = Server(params=FAST)
    asyncio.create_task(c.run())
    try:
        await c.request(codec.GET, ("127.0.0.1", port), "moving")
        assert False, "no error"
    except ValueError as e:
        assert "ETag" in str(e)
    c.close()
    s.close()


async def test_client_observe_first_answer_changing_between_blocks_comes_whole():
    # the state changes while the client fetches the blocks of the
    # registration's answer (ETag changed at block 1): RFC 7959 §2.4, the
    # client starts again with a plain GET, and observe() returns the current
    # state whole; the observation itself stands
    s, port = server({"DEDUP": 3})
    st = {"n": 0, "rep": _rep(0)}
    seen = []

    def h(req):
        b = req.uopt(codec.BLOCK2)
        seen.append((b, req.opt(codec.OBSERVE) is not None))
        if b and st["n"] == 0:  # the first block 1 asked: the state moves on
            st["n"] = 1
            st["rep"] = None
            st["rep"] = _rep(1)
        return (codec.CONTENT, st["rep"], 42, [[codec.ETAG, bytes((st["n"],))]])
    s.add("big", h, obs=True)
    asyncio.create_task(s.run())
    c = Server(params=FAST)
    asyncio.create_task(c.run())
    r = await c.observe(("127.0.0.1", port), "big", lambda m: None)
    assert r.code == codec.CONTENT and r.opt(codec.OBSERVE) is not None
    assert r.payload == _rep(1) and r.opt(codec.BLOCK2) is None, (len(r.payload), r.opt(codec.BLOCK2))
    assert s.observers("big") == 1
    # registration, block 1 (changed), the plain GET again, then its blocks 1, 2
    assert seen[0] == (None, True) and (None, False) in seen[2:], seen
    c.close()
    s.close()
