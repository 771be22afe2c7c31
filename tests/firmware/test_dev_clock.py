# dev.clock: NTP first, else the gateway's GET /time over real CoAP/UDP on
# 127.0.0.1 (firmware Endpoint serving and requesting), else the RTC.
import asyncio
import random
import hal
from hal import sim
from dev import clock
from fmt import cbor

T = 1790000000


def test_parse_time_formats():
    assert clock.parse_time(cbor.dumps(T), 60) == T
    assert clock.parse_time(cbor.dumps({"t": T + 0.5}), 60) == T + 0.5
    assert clock.parse_time(b"1790000000", 0) == T
    assert clock.parse_time(b'{"t": 1790000000}', 50) == T
    assert clock.parse_time(cbor.dumps(T), None) == T
    for bad, ct in ((b"", 60), (b"abc", 0), (cbor.dumps(5), 60), (cbor.dumps(True), 60), (b"\xff", None)):
        try:
            clock.parse_time(bad, ct)
            assert False, bad
        except ValueError:
            pass


def test_iso():
    assert clock.iso(0) == "1970-01-01T00:00:00Z"
    assert clock.iso(951782400) == "2000-02-29T00:00:00Z"
    assert clock.iso(1798761599) == "2026-12-31T23:59:59Z"


async def test_ntp_first():
    sim.set_true_time(T)
    hal.wifi_connect("s", "p")
    assert not clock.time_known()
    assert await clock.sync(None, None) == "ntp" and clock.source == "ntp"
    assert abs(clock.now() - sim.true_time()) < 0.01 and clock.now() > T


async def test_gateway_time_over_coap_when_no_ntp():
    from coap.endpoint import Endpoint, addr
    from coap.observe import Server
    sim.set_inputs(ntp=False)
    port = 20000 + random.getrandbits(12)
    gw = Server(port=port, host="127.0.0.1")
    gw.add("time", lambda req: (69, cbor.dumps(T + 0.25), 60))
    dev = Endpoint(port=0, params={"ACK_TIMEOUT": 200})
    tasks = [asyncio.create_task(gw.run()), asyncio.create_task(dev.run())]
    try:
        hal.wifi_connect("s", "p")
        assert await clock.sync(dev, addr("127.0.0.1", port)) == "gateway"
        assert abs(hal.time() - (T + 0.25)) < 0.5 and clock.time_known()
    finally:
        for t in tasks:
            t.cancel()
        gw.close()
        dev.close()


async def test_rtc_when_nothing_answers_and_unknown_stays_unknown():
    from coap.endpoint import Endpoint, addr
    dev = Endpoint(port=0, params={"ACK_TIMEOUT": 20, "MAX_RETRANSMIT": 1})
    task = asyncio.create_task(dev.run())
    try:
        dead = addr("127.0.0.1", 9)  # nothing listens: timeout, never an exception
        assert await clock.sync(dev, dead, online=False) is None and not clock.time_known()
        hal.set_time(T)  # e.g. the RTC kept through deep sleep
        assert await clock.sync(dev, dead, online=False) == "rtc"
    finally:
        task.cancel()
        dev.close()


async def test_sync_never_raises_on_a_broken_endpoint():
    class Broken:
        async def request(self, *a, **k):
            raise OSError(113)
    assert await clock.sync(Broken(), ("x", 1), ntp_host=None) is None
