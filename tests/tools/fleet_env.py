"""What the fleet tests share: a real gateway subprocess and a FirmwareFleet
(real firmware under unix MicroPython) run from a background thread's event
loop, optionally through a lossy NAT, with the API queries and the
diagnostics a failing wait prints."""
import asyncio
import json
import threading
import time

import pytest

from eclor.tools.fleet import firmware, gwproc
from eclor.tools.fleet.lossproxy import LossProxy


# Bins that wake every 2 simulated minutes (4 s at x30), so a test sees
# several wakes, with short back-offs and CoAP timeouts.
QUICK_BINS = dict(measure_s=120, heartbeat_s=600, step_pct=5, backoff_s=60, backoff_max_s=240,
                  ack_timeout_ms=1000)


def wait_for(what, fn, timeout, every=0.5, why=None):
    """Poll fn() until it returns something truthy; fail with `what` (and
    why(), e.g. the devices' consoles) after timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
        except (OSError, gwproc.ApiError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail("timed out after %ss waiting for %s (last: %r)\n%s" % (timeout, what, last, why() if why else ""))


class FleetEnv:
    """specs (eclor.tools.territory.fleet) against a gateway in tmp/gw.
    loss: a LossProxy between them (seed 3); fleet_kw go to FirmwareFleet."""

    def __init__(self, tmp, specs, loss=0.0, gw_args=(), **fleet_kw):
        self.specs = specs
        self.lamps = [s["ep"] for s in specs if s["role"] == "lamp"]
        self.bins = [s["ep"] for s in specs if s["role"] == "bin"]
        self.gw = gwproc.Gateway(tmp / "gw", extra_args=["--max-future-s", "2592000"] + list(gw_args))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = None
        if loss:
            async def proxy():
                return await LossProxy(self.gw.coap, loss, seed=3).start()
            self.proxy = self.call(proxy())
        self.fleet = firmware.FirmwareFleet(specs, self.proxy.addr if self.proxy else self.gw.coap,
                                            tmp / "fleet", **fleet_kw)

    def call(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, bin_conf=None, stagger_s=0.1):
        """Gateway up, devices declared, flash dirs written (bin_conf: merged
        into every bin's "bin" config), fleet started."""
        self.gw.start()
        self.gw.api.post("/api/devices", {"devices": [
            {"ep": s["ep"], "type": s["role"], "zone": s["zone"], "commune": s["commune"],
             "lat": s["lat"], "lon": s["lon"]} for s in self.specs]})
        self.fleet.prepare()
        for ep in self.bins if bin_conf else ():
            p = self.fleet.devices[ep].path / "config.json"
            cfg = json.loads(p.read_text())
            cfg["bin"].update(bin_conf)
            p.write_text(json.dumps(cfg))
        self.call(self.fleet.start(stagger_s=stagger_s))

    def stop(self):
        try:
            self.call(self.fleet.stop(), 30)
        finally:
            if self.proxy:
                self.loop.call_soon_threadsafe(self.proxy.close)
            self.gw.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    # -- the gateway's API ----------------------------------------------------
    def devices(self, **q):
        return {d["ep"]: d for d in gwproc.items(self.gw.api.get("/api/devices", **q), "devices")}

    def readings(self, ep, **q):
        q.setdefault("limit", 10000)
        return gwproc.items(self.gw.api.get("/api/devices/%s/readings" % ep, **q), "readings")

    def events(self, ep):
        return gwproc.items(self.gw.api.get("/api/events", device=ep, limit=1000), "events")

    def command_outcome(self, cid):
        """The command once it ended (done, failed, expired), else None."""
        c = self.gw.api.get("/api/commands/" + cid)
        return c if c["state"] in ("done", "failed", "expired") else None

    # -- diagnostics ----------------------------------------------------------
    def consoles(self):
        """The hosts' logs and the end of every device's console that crashed,
        rebooted or never started."""
        out = []
        for h in self.fleet.hosts:
            if h.log_file.exists():
                out.append("host %d:\n%s" % (h.k, h.log_file.read_text()[-1500:]))
        for d in self.fleet.devices.values():
            if d.crashes or d.reboots or not (d.wakes or d.starts):
                tail = d.log_file.read_text()[-800:] if d.log_file.exists() else ""
                out.append("%s: %d starts %d wakes %d crashes %d reboots, last exit %s:\n%s" % (
                    d.ep, d.starts, d.wakes, d.crashes, d.reboots, d.last_rc, tail))
        return "\n".join(out)
