# CoAP endpoint messaging layer, inside unix MicroPython on real UDP sockets.
import asyncio
import time

from coap import codec
from coap.codec import Msg, CON, NON, ACK, RST
from coap.endpoint import Endpoint, Timeout, addr
from test_coap_util import server, Raw, FAST

TIMEOUT = 30


async def test_get_put_post_delete_and_not_found():
    s, port = server()
    store = {"v": b"0"}

    def res(req):
        if req.method == codec.GET:
            return (codec.CONTENT, store["v"], codec.CT_TEXT)
        if req.method in (codec.PUT, codec.POST):
            store["v"] = req.payload
            return (codec.CHANGED, b"", None)
        return (codec.DELETED, b"", None, [[codec.LOCATION_PATH, "gone"]])
    s.add("/v", res)
    c = Endpoint(params=FAST)
    asyncio.create_task(s.run())
    asyncio.create_task(c.run())
    a = ("127.0.0.1", port)
    assert (await c.request(codec.PUT, a, "v", b"42")).code == codec.CHANGED
    r = await c.request(codec.GET, a, "/v")
    assert (r.code, r.payload, r.ct) == (codec.CONTENT, b"42", 0)
    r = await c.request(codec.POST, a, "v", b"7", con=False)
    assert r.code == codec.CHANGED and r.mtype == NON and store["v"] == b"7"
    r = await c.request(codec.DELETE, a, "v")
    assert r.code == codec.DELETED and r.opts(codec.LOCATION_PATH) == ["gone"]
    assert (await c.request(codec.GET, a, "nothing/here")).code == codec.NOT_FOUND
    c.close()
    s.close()


async def test_duplicate_con_gets_cached_answer_without_rerunning_handler():
    s, port = server()
    calls = []
    s.add("n", lambda req: calls.append(1) or (codec.CHANGED, b"%d" % len(calls), 0))
    asyncio.create_task(s.run())
    raw = Raw()
    req = Msg(CON, codec.POST, 0x1111, b"tk", [[codec.URI_PATH, "n"]], b"x")
    raw.sendm(req, port)
    a1 = await raw.recv()
    raw.sendm(req, port)  # retransmission: same mid
    a2 = await raw.recv()
    assert a1 == a2 and len(calls) == 1, (a1, a2, calls)
    req.mid = 0x1112  # a new request runs the handler again
    raw.sendm(req, port)
    a3 = codec.decode(await raw.recv())
    assert a3.payload == b"2" and a3.mid == 0x1112 and a3.mtype == ACK
    # NON duplicates are dropped silently
    req.mtype, req.mid = NON, 0x2000
    raw.sendm(req, port)
    assert (await raw.recvm()).payload == b"3"
    raw.sendm(req, port)
    assert await raw.recv(200) is None and len(calls) == 3
    raw.close()
    s.close()


async def test_ping_and_malformed_con_get_rst_others_dropped():
    s, port = server()
    s.add("x", lambda r: (codec.CONTENT, b"", None))
    asyncio.create_task(s.run())
    raw = Raw()
    raw.send(b"\x40\x00\xab\xcd", port)  # empty CON = ping
    assert await raw.recv() == b"\x70\x00\xab\xcd"
    raw.send(b"\x40\x01\x12\x34\xf1", port)  # CON with reserved nibble 15
    assert await raw.recv() == b"\x70\x00\x12\x34"
    raw.send(b"\x49\x01\x12\x35" + b"\x00" * 9, port)  # CON with token length 9
    assert await raw.recv() == b"\x70\x00\x12\x35"
    raw.send(b"\x50\x01\x12\x36\xff", port)  # malformed NON: dropped
    raw.send(b"\x01", port)
    assert await raw.recv(200) is None
    assert s.bad == 4
    # a CON longer than MAX_MSG (1152): recvfrom cuts it, so it is treated as
    # malformed (RST) rather than served with a truncated payload
    raw.send(b"\x40\x02\x12\x37\xb1x\xff" + bytes(1200), port)
    assert await raw.recv() == b"\x70\x00\x12\x37" and s.bad == 5
    # the endpoint still serves after the junk
    raw.sendm(Msg(CON, codec.GET, 9, b"", [[codec.URI_PATH, "x"]]), port)
    assert (await raw.recvm()).code == codec.CONTENT
    raw.close()
    s.close()


async def test_max_msg_bounds_the_datagrams_taken_in():
    # MAX_MSG sizes the receive buffer, held all the time (a bin sets 384 B):
    # a datagram of MAX_MSG bytes is served, one byte more is malformed (RST)
    s, port = server({"MAX_MSG": 384})
    s.add("x", lambda r: (codec.CHANGED, b"%d" % len(r.payload), None))
    asyncio.create_task(s.run())
    raw = Raw()
    raw.send(b"\x40\x02\x12\x40\xb1x\xff" + bytes(384 - 7), port)
    m = await raw.recvm()
    assert m.code == codec.CHANGED and m.payload == b"377", m.payload
    raw.send(b"\x40\x02\x12\x41\xb1x\xff" + bytes(385 - 7), port)
    assert await raw.recv() == b"\x70\x00\x12\x41" and s.bad == 1
    assert len(s._hole) == 385
    raw.close()
    s.close()


async def test_retransmission_backoff_then_timeout():
    raw = Raw()
    c = Endpoint(params={"ACK_TIMEOUT": 40, "ACK_RANDOM_FACTOR": 1.5, "MAX_RETRANSMIT": 3})
    asyncio.create_task(c.run())
    t0 = time.ticks_ms()
    try:
        await c.request(codec.GET, ("127.0.0.1", raw.port), "x")
        assert False, "no Timeout"
    except Timeout:
        pass
    took = time.ticks_diff(time.ticks_ms(), t0)
    got = []
    while True:
        m = await raw.recvm(50)
        if m is None:
            break
        got.append(m.mid)
    assert len(got) == 4 and len(set(got)) == 1 and c.retx == 3, got
    # exponential back-off: 40+80+160+320 ms at least (constant spacing would be 160)
    assert took >= 600, took
    c.close()
    raw.close()


async def test_nstart_one_outstanding_con_per_peer():
    raw = Raw()
    c = Endpoint(params={"ACK_TIMEOUT": 300, "MAX_RETRANSMIT": 2, "RESPONSE_TIMEOUT": 2000})
    asyncio.create_task(c.run())
    t1 = asyncio.create_task(c.request(codec.GET, ("127.0.0.1", raw.port), "a"))
    t2 = asyncio.create_task(c.request(codec.GET, ("127.0.0.1", raw.port), "b"))
    m1 = await raw.recvm()
    assert m1.path in ("a", "b")
    assert await raw.recv(150) is None  # the second waits for the first ACK
    raw.ack(m1)
    m2 = await raw.recvm()
    assert m2 is not None and m2.path != m1.path and m2.mid != m1.mid
    # separate responses (CON) for both; the endpoint ACKs them
    for m in (m1, m2):
        raw.sendm(Msg(CON, codec.CONTENT, 0x500 + m.mid % 7, m.token, [], m.path.encode()))
        ack = await raw.recvm()
        assert ack.mtype == ACK and ack.code == 0
    # m2 never got its empty ACK: the separate response completes it anyway
    r1 = await t1
    r2 = await t2
    assert (r1.payload, r2.payload) == (b"a", b"b")
    c.close()
    raw.close()


async def test_nstart_waiting_con_is_not_starved_by_back_to_back_cons():
    # NSTART in turn (FIFO per peer): a CON that waits goes next, even while
    # another task sends CON after CON to the same peer -- a lamp's CON
    # notification between its report POSTs to the gateway.  Before, the
    # waiter polled and lost every race to the next POST.
    s, port = server()
    s.add("x", lambda r: (codec.CHANGED, b"", None))
    c = Endpoint(params=FAST)
    asyncio.create_task(s.run())
    asyncio.create_task(c.run())
    a = ("127.0.0.1", port)
    done = []

    async def posts():
        for i in range(40):
            assert (await c.request(codec.POST, a, "x")).code == codec.CHANGED
            done.append(i)
    t = asyncio.create_task(posts())
    while len(done) < 3:
        await asyncio.sleep_ms(1)
    n = len(done)
    assert (await c.request(codec.POST, a, "x")).code == codec.CHANGED
    assert len(done) <= n + 2, (n, len(done))  # the one in flight, not the 40
    await t
    assert len(done) == 40 and not c._ex
    c.close()
    s.close()


async def test_separate_response_for_coroutine_handler():
    s, port = server()

    async def slow(req):
        await asyncio.sleep_ms(30)
        return (codec.CONTENT, b"late", 0)
    s.add("slow", slow)
    asyncio.create_task(s.run())
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 77, b"T1", [[codec.URI_PATH, "slow"]]), port)
    ack = await raw.recvm()
    assert (ack.mtype, ack.code, ack.mid) == (ACK, 0, 77)
    raw.sendm(Msg(CON, codec.GET, 77, b"T1", [[codec.URI_PATH, "slow"]]), port)  # dup: ACK again
    assert (await raw.recvm()).mid == 77
    resp = await raw.recvm()
    assert (resp.mtype, resp.code, resp.token, resp.payload) == (CON, codec.CONTENT, b"T1", b"late")
    resp2 = await raw.recvm(200)  # not acked yet: retransmitted
    assert resp2 is not None and resp2.mid == resp.mid
    raw.send(bytes((0x60, 0, resp.mid >> 8, resp.mid & 255)), port)
    await asyncio.sleep_ms(300)
    assert not s._ex
    raw.close()
    s.close()


async def test_handler_exception_is_500_and_server_survives():
    s, port = server()
    s.add("boom", lambda r: 1 // 0)
    s.add("ok", lambda r: (codec.CONTENT, b"fine", 0))
    c = Endpoint(params=FAST)
    asyncio.create_task(s.run())
    asyncio.create_task(c.run())
    assert (await c.request(codec.GET, ("127.0.0.1", port), "boom")).code == codec.INTERNAL_SERVER_ERROR
    assert (await c.request(codec.GET, ("127.0.0.1", port), "ok")).payload == b"fine"
    c.close()
    s.close()


async def test_well_known_core_and_filter():
    s, port = server()
    s.add("state", lambda r: (codec.CONTENT, b"", None), obs=True, attrs=b'rt="eclor.lamp.state";ct=112')
    s.add("cmd", lambda r: (codec.CHANGED, b"", None), attrs=b'rt="eclor.cmd";ct=60')
    c = Endpoint(params=FAST)
    asyncio.create_task(s.run())
    asyncio.create_task(c.run())
    r = await c.request(codec.GET, ("127.0.0.1", port), ".well-known/core")
    assert r.ct == codec.CT_LINK
    from coap import linkformat
    links = dict(linkformat.parse(r.payload))
    assert links["/state"] == {"rt": "eclor.lamp.state", "ct": "112", "obs": True}, links
    assert links["/cmd"]["rt"] == "eclor.cmd"
    r = await c.request(codec.GET, ("127.0.0.1", port), ".well-known/core", query=["rt=eclor.lamp*"])
    assert [t for t, _ in linkformat.parse(r.payload)] == ["/state"], r.payload
    c.close()
    s.close()


async def test_dedup_cache_is_bounded_and_expires():
    s, port = server({"DEDUP": 2, "EXCHANGE_LIFETIME": 200})
    calls = []
    s.add("n", lambda req: calls.append(req.mid) or (codec.CHANGED, b"", None))
    asyncio.create_task(s.run())
    raw = Raw()

    async def post(mid):
        raw.sendm(Msg(CON, codec.POST, mid, b"", [[codec.URI_PATH, "n"]]), port)
        a = await raw.recvm()
        assert a.mid == mid and a.mtype == ACK
    await post(1)
    await post(2)
    await post(1)  # still cached: answered, not re-run
    assert calls == [1, 2]
    await post(3)  # ring of 2: evicts mid 1
    await post(1)
    assert calls == [1, 2, 3, 1], calls
    await asyncio.sleep_ms(250)  # past EXCHANGE_LIFETIME: mid 3 is forgotten
    await post(3)
    assert calls == [1, 2, 3, 1, 3] and len(s._seen) <= 2 * 4, (calls, s._seen)
    raw.close()
    s.close()


async def test_request_on_closed_endpoint_is_oserror_and_pending_ones_end():
    raw = Raw()
    c = Endpoint(params={"ACK_TIMEOUT": 50, "MAX_RETRANSMIT": 2})
    asyncio.create_task(c.run())
    t = asyncio.create_task(c.request(codec.GET, ("127.0.0.1", raw.port), "x"))
    await raw.recvm()
    c.close()
    try:
        await t  # its retransmission finds the socket closed
        assert False
    except OSError as e:
        assert "closed" in str(e)
    try:
        await c.request(codec.GET, ("127.0.0.1", raw.port), "x")
        assert False
    except OSError:
        pass
    assert not c._ex
    raw.close()


async def test_junk_traffic_never_stops_the_server():
    import random
    s, port = server()
    s.add("a/b", lambda r: (codec.CONTENT, b"ok", 0))
    asyncio.create_task(s.run())
    raw = Raw()
    # Uri-Path that is not UTF-8: 4.00, not an exception
    raw.send(b"\x40\x01\x00\x07\xb2\xff\xfe", port)
    r = await raw.recvm()
    assert r.code == codec.BAD_REQUEST and r.mid == 7
    buf = bytearray(64)
    good = bytes(buf[:codec.encode(Msg(CON, codec.GET, 1, b"tk", [[codec.URI_PATH, "a"], [codec.URI_PATH, "b"], [codec.BLOCK2, 0x16]]), buf)])
    random.seed(5)
    for i in range(400):
        if i % 2:
            d = bytes(random.getrandbits(8) for _ in range(random.getrandbits(5)))
        else:
            d = bytearray(good)
            for _ in range(1 + random.getrandbits(2)):
                d[random.getrandbits(8) % len(d)] = random.getrandbits(8)
            d = bytes(d)
        raw.send(d, port)
        if i % 20 == 0:
            await asyncio.sleep_ms(1)
            while await raw.recv(0) is not None:
                pass
    await asyncio.sleep_ms(50)
    while await raw.recv(20) is not None:
        pass
    raw.sendm(Msg(CON, codec.GET, 0x7777, b"z", [[codec.URI_PATH, "a"], [codec.URI_PATH, "b"]]), port)
    r = await raw.recvm()
    assert r is not None and r.code == codec.CONTENT and r.payload == b"ok" and r.mid == 0x7777
    assert s.bad > 50, s.bad
    raw.close()
    s.close()


async def test_client_only_endpoint_answers_404_without_loading_the_server_side():
    import sys
    c, port = server(cls=Endpoint)  # a client: no coap.observe.Server
    asyncio.create_task(c.run())
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 0x4242, b"q", [[codec.URI_PATH, "cmd"]]), port)
    r = await raw.recvm()
    assert (r.mtype, r.code, r.mid, r.token) == (ACK, codec.NOT_FOUND, 0x4242, b"q")
    raw.sendm(Msg(NON, codec.GET, 0x4243, b"n", [[codec.URI_PATH, ".well-known"], [codec.URI_PATH, "core"]]), port)
    r = await raw.recvm()
    assert (r.mtype, r.code, r.token) == (NON, codec.NOT_FOUND, b"n")
    assert "coap.observe" not in sys.modules and "coap.block" not in sys.modules
    raw.close()
    c.close()


async def test_unknown_critical_option_is_402_elective_ignored():
    s, port = server()
    s.add("x", lambda r: (codec.CONTENT, b"x", 0))
    asyncio.create_task(s.run())
    raw = Raw()
    raw.sendm(Msg(CON, codec.GET, 1, b"", [[codec.URI_PATH, "x"], [9, b"\x01"]]), port)  # OSCORE, no unwrap hook
    r = await raw.recvm()
    assert r.code == codec.BAD_OPTION and r.payload == b"critical option 9"
    raw.sendm(Msg(CON, codec.GET, 2, b"", [[codec.URI_PATH, "x"], [2048, b"e"], [3, "h"]]), port)  # 3: Uri-Host
    r = await raw.recvm()
    assert r.code == codec.CONTENT  # elective option ignored, Uri-Host understood
    raw.close()
    s.close()


async def test_a_new_endpoint_can_continue_the_message_ids_of_the_last():
    # a bin's second CoAP session of a wake binds the same port: its IDs must
    # not restart where the gateway's dedup cache would take them for repeats
    s, port = server()
    s.add("/v", lambda req: (codec.CHANGED, b"", None))
    asyncio.create_task(s.run())
    a = ("127.0.0.1", port)
    seen = []
    c = Endpoint(params=FAST, mid=0xFFFE)
    asyncio.create_task(c.run())
    seen.append((await c.request(codec.POST, a, "v", b"1")).mid)
    seen.append((await c.request(codec.POST, a, "v", b"2")).mid)
    last = c._mid
    c.close()
    c = Endpoint(params=FAST, mid=last)
    asyncio.create_task(c.run())
    seen.append((await c.request(codec.POST, a, "v", b"3")).mid)
    c.close()
    s.close()
    assert seen == [0xFFFF, 0, 1], seen
