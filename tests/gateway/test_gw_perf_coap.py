"""Hot-path shortcuts of the CoAP side (gateway/coapserver.py) give the same
answers as the aiocoap code they stand in for."""
import asyncio
import socket
import time

import cbor2
from aiocoap import protocol
from aiocoap.numbers.codes import Code
from aiocoap.transports import udp6
from hypothesis import given, strategies as S

from eclor.gateway import coapserver
from gw_core_harness import Device, running, senml_cbor


class _Iface:
    pass


_IFACE = _Iface()


def _both(addr16, ifindex=1):
    coapserver.fast_local_multicast_check()
    prop = udp6.UDP6EndpointAddress.__dict__["is_multicast_locally"]
    assert getattr(prop.fget, "_eclor", False)
    a = udp6.UDP6EndpointAddress(("::ffff:127.0.0.1", 40000, 0, 0), _IFACE,
                                 pktinfo=udp6._in6_pktinfo.pack(addr16, ifindex))
    return a.is_multicast_locally, prop.fget.original(a)


def test_local_multicast_check_known_addresses():
    for text, want in (("::ffff:127.0.0.1", False), ("::ffff:224.0.1.187", True),
                       ("::ffff:239.255.255.255", True), ("::ffff:240.0.0.1", False),
                       ("::ffff:223.255.255.255", False), ("::1", False), ("fe80::1", False),
                       ("ff02::fd", True), ("ff05::fd", True), ("::", False), ("::e000:1", False)):
        fast, orig = _both(socket.inet_pton(socket.AF_INET6, text))
        assert fast == orig == want, text


@given(S.binary(min_size=16, max_size=16), S.integers(0, 2 ** 32 - 1))
def test_local_multicast_check_any_address(addr16, ifindex):
    fast, orig = _both(addr16, ifindex)
    assert fast == orig


@given(S.integers(0, 255), S.binary(min_size=3, max_size=3))
def test_local_multicast_check_v4mapped(first, rest):
    fast, orig = _both(b"\0" * 10 + b"\xff\xff" + bytes([first]) + rest)
    assert fast == orig


def test_patch_is_applied_once():
    coapserver.fast_local_multicast_check()
    assert coapserver.fast_local_multicast_check() is False


def test_plain_requests_skip_aiocoap_render_path_block_requests_keep_it(tmp_path, monkeypatch):
    calls = []
    orig = protocol.Context.render_to_pipe

    def counting(self, pipe):
        calls.append(self)
        return orig(self, pipe)

    monkeypatch.setattr(protocol.Context, "render_to_pipe", counting)

    async def scenario():
        async with running(tmp_path) as gw, Device("lamp-p", links=b"</cmd>") as dev:
            ctx = gw.gw.coap.context
            assert (await dev.register(gw)).code == Code.CREATED
            t = int(time.time())
            for i in range(5):
                r = await dev.post_readings(gw, senml_cbor("lamp-p", t + i, power=1.0 + i))
                assert r.code == Code.CHANGED
            r = await dev.req(gw, Code.POST, "/dp", b"\xff", 112)
            assert r.code == Code.BAD_REQUEST and b"invalid CBOR" in r.payload
            assert not [c for c in calls if c is ctx]  # the lean path served all of them
            big = cbor2.dumps([{0: "x%d" % i, 2: i, 6: 0} for i in range(600)])
            r = await dev.req(gw, Code.POST, "/dp", big, 112)  # Block1: aiocoap's path
            assert r.code == Code.REQUEST_ENTITY_TOO_LARGE
            assert [c for c in calls if c is ctx]
            body = await gw.get("/api/devices/lamp-p/readings?name=power")
            assert sorted(x["v"] for x in body["readings"]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    asyncio.run(scenario())


def test_a_site_wrapped_around_root_is_never_bypassed(tmp_path):
    seen = []

    class Wrapper:  # stands for e.g. aiocoap's OSCORE site wrapper
        def __init__(self, inner):
            self.inner = inner

        async def render_to_pipe(self, pipe):
            seen.append(pipe.request.opt.uri_path)
            await self.inner.render_to_pipe(pipe)

    async def scenario():
        async with running(tmp_path) as gw, Device("lamp-w", links=b"</cmd>") as dev:
            ctx = gw.gw.coap.context
            ctx.serversite = Wrapper(ctx.serversite)
            assert (await dev.register(gw)).code == Code.CREATED
            r = await dev.post_readings(gw, senml_cbor("lamp-w", int(time.time()), power=2.0))
            assert r.code == Code.CHANGED
            assert seen == [("rd",), ("dp",)]
    asyncio.run(scenario())
