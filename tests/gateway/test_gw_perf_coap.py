"""Hot-path shortcuts of the CoAP side (gateway/coapserver.py) give the same
answers as the aiocoap code they stand in for."""
import socket

from hypothesis import given, strategies as S

from aiocoap.transports import udp6
from eclor.gateway import coapserver


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
