# Helpers for the firmware CoAP tests (run inside unix MicroPython); named
# test_coap_* to sit in the CoAP area, it holds no test functions itself.
import asyncio
import random
import socket

from coap.endpoint import addr
from coap import codec
from coap.codec import Msg

FAST = {"ACK_TIMEOUT": 60, "MAX_RETRANSMIT": 3, "RESPONSE_TIMEOUT": 2000}


def server(params=None, cls=None, **kw):
    """A Server (coap.observe), or cls, bound to a free port on 127.0.0.1 -> (ep, port)."""
    if cls is None:
        from coap.observe import Server as cls  # imported here: a client test loads no serving code
    p = dict(FAST)
    if params:
        p.update(params)
    for _ in range(50):
        port = 20000 + random.getrandbits(15)
        try:
            return cls(port=port, params=p, host="127.0.0.1", **kw), port
        except OSError:
            pass
    raise OSError("no free port")


class Raw:
    """A bare UDP peer to see and forge exact datagrams."""

    def __init__(self):
        for _ in range(50):
            self.port = 20000 + random.getrandbits(15)
            self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.s.bind(addr("127.0.0.1", self.port))
                break
            except OSError:
                self.s.close()
        self.s.setblocking(False)
        self.addr = addr("127.0.0.1", self.port)

    def send(self, data, port):
        self.s.sendto(data, addr("127.0.0.1", port))

    def sendm(self, m, port=None):
        buf = bytearray(1200)
        data = bytes(buf[:codec.encode(m, buf)])
        if port is None:
            self.s.sendto(data, self.last)  # answer whoever spoke last
        else:
            self.send(data, port)

    def ack(self, m):
        self.s.sendto(bytes((0x60, 0, m.mid >> 8, m.mid & 255)), self.last)

    async def recv(self, ms=1000):
        """Next datagram within ms, or None."""
        for _ in range(ms // 5 + 1):
            try:
                d, self.last = self.s.recvfrom(1500)
                return d
            except OSError:
                await asyncio.sleep_ms(5)
        return None

    async def recvm(self, ms=1000):
        d = await self.recv(ms)
        return None if d is None else codec.decode(d)

    def close(self):
        self.s.close()


def state_server(params=None):
    """A Server with an observable "state" resource: its payload is
    b"n=<st['n']>".  Returns (server, port, st)."""
    s, port = server(params)
    st = {"n": 0}
    s.add("state", lambda r: (codec.CONTENT, b"n=%d" % st["n"], 0), obs=True)
    asyncio.create_task(s.run())
    return s, port, st
