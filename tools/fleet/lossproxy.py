"""A lossy NAT between devices and the gateway, for fleets that cannot drop
packets themselves (the real firmware).

Devices are configured with the proxy's address as their gateway. For each
device address the proxy opens its own upstream socket to the gateway, like
a home router's NAT binding, so the gateway sees one address per device and
its requests to that address (commands to lamps) come back to the right
device. Each datagram, either way, is dropped with probability `loss`
(seeded). `rebind()` forgets every binding: the next datagram of a device
leaves from a new port, as after a NAT timeout or a router reboot, and the
gateway's requests to the old address go nowhere until the device updates
its registration.

Only for 127.0.0.1 / ::1 tests and simulations.
"""
import asyncio
import random
import socket


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, proxy, device_addr):
        self.proxy, self.device_addr = proxy, device_addr
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        p = self.proxy
        if p.lose():
            p.stats["dropped_down"] += 1
            return
        p.stats["down"] += 1
        p.transport.sendto(data, self.device_addr)


class LossProxy(asyncio.DatagramProtocol):
    def __init__(self, gateway, loss=0.0, seed=1, host="127.0.0.1"):
        if not 0 <= loss < 1:
            raise ValueError("loss must be in [0, 1)")
        self.gateway, self.loss, self.host = gateway, loss, host
        self.rng = random.Random(seed)
        self.bindings = {}     # device addr -> _Upstream
        self.transport = None
        self.stats = {"up": 0, "down": 0, "dropped_up": 0, "dropped_down": 0, "bindings": 0}

    @property
    def addr(self):
        return self.transport.get_extra_info("sockname")[:2]

    def lose(self):
        return self.loss > 0 and self.rng.random() < self.loss

    async def start(self, port=0):
        loop = asyncio.get_running_loop()
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, port), family=fam)
        return self

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.lose():
            self.stats["dropped_up"] += 1
            return
        up = self.bindings.get(addr)
        if up is None:
            up = _Upstream(self, addr)
            self.bindings[addr] = up
            self.stats["bindings"] += 1
            asyncio.ensure_future(self._open(up, data))
            return
        if up.transport is None:   # still opening: keep order simple, drop like a busy NAT
            self.stats["dropped_up"] += 1
            return
        self.stats["up"] += 1
        up.transport.sendto(data, self.gateway)

    async def _open(self, up, first):
        loop = asyncio.get_running_loop()
        fam = socket.AF_INET6 if ":" in self.gateway[0] else socket.AF_INET
        await loop.create_datagram_endpoint(lambda: up, local_addr=(self.host, 0), family=fam)
        self.stats["up"] += 1
        up.transport.sendto(first, self.gateway)

    def rebind(self):
        """Forget every binding (NAT timeout): devices get new outside ports."""
        for up in self.bindings.values():
            if up.transport:
                up.transport.close()
        self.bindings.clear()

    def close(self):
        self.rebind()
        if self.transport:
            self.transport.close()
