"""Many bins in ONE MicroPython process (tools/fleet/binhost.py), real firmware.

20 bins, bins_per_process=20: a single unix MicroPython process (ESP32-sized
heap per wake plus the host's bookkeeping) runs every bin's wake in turn --
the real `app.main()` from each bin's own flash dir, its own UDP socket,
identity and saved state, the deep sleep returning to the host through the
hal.sim.on_deepsleep hook -- against a real gateway subprocess. Checks: one
MicroPython process for all, every bin registered in queue mode, a fill
reading from each in the API, several wakes each, no crash, and a command
queued for one bin reaches that bin and no other.
"""
import asyncio
import json
import threading
import time

import pytest

from eclor.tools import territory
from eclor.tools.fleet import firmware, gwproc

pytestmark = pytest.mark.slow

BINS = 20
SPEED = 30.0


def wait_for(what, fn, timeout, every=0.5, why=None):
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


class Host:
    def __init__(self, tmp):
        self.specs = territory.fleet(0, BINS, seed=11)
        for s in self.specs:
            s["bin"]["full_pct"] = 80
        self.bins = [s["ep"] for s in self.specs]
        self.gw = gwproc.Gateway(tmp / "gw", extra_args=["--max-future-s", "2592000"])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fleet = firmware.FirmwareFleet(self.specs, self.gw.coap, tmp / "fleet", speed=SPEED,
                                            start_utc=time.time() - 86400, report_s=60, lt=600,
                                            bins_per_process=BINS)

    def call(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self):
        self.gw.start()
        self.gw.api.post("/api/devices", {"devices": [
            {"ep": s["ep"], "type": "bin", "zone": s["zone"], "commune": s["commune"],
             "lat": s["lat"], "lon": s["lon"]} for s in self.specs]})
        self.fleet.prepare()
        for ep in self.bins:   # a wake every 2 simulated minutes (4 s here)
            p = self.fleet.devices[ep].path / "config.json"
            cfg = json.loads(p.read_text())
            cfg["bin"].update(measure_s=120, heartbeat_s=600, step_pct=5, backoff_s=60, backoff_max_s=240,
                              ack_timeout_ms=1000)
            p.write_text(json.dumps(cfg))
        self.call(self.fleet.start(stagger_s=0.1))

    def stop(self):
        try:
            self.call(self.fleet.stop(), 30)
        finally:
            self.gw.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def devices(self, **q):
        return {d["ep"]: d for d in gwproc.items(self.gw.api.get("/api/devices", **q), "devices")}

    def readings(self, ep, **q):
        return gwproc.items(self.gw.api.get("/api/devices/%s/readings" % ep, **q), "readings")

    def consoles(self):
        out = []
        for h in self.fleet.hosts:
            if h.log_file.exists():
                out.append("host %d:\n%s" % (h.k, h.log_file.read_text()[-1500:]))
        for d in self.fleet.devices.values():
            if d.crashes or d.reboots or not d.wakes:
                tail = d.log_file.read_text()[-800:] if d.log_file.exists() else ""
                out.append("%s: %d starts %d wakes %d crashes %d reboots:\n%s" % (
                    d.ep, d.starts, d.wakes, d.crashes, d.reboots, tail))
        return "\n".join(out)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = Host(tmp_path_factory.mktemp("binhost"))
    h.start()
    yield h
    h.stop()


def test_one_micropython_process_for_all_bins(host):
    assert len(host.fleet.hosts) == 1
    wait_for("the binhost running", lambda: host.fleet.pids(), 10)
    assert len(host.fleet.pids()) == 1
    assert all(d.hosted for d in host.fleet.devices.values())


def test_all_bins_register_in_queue_mode(host):
    wait_for("%d bins online" % BINS, lambda: len(host.devices(online="true")) == BINS, 90, why=host.consoles)
    devs = host.devices()
    assert all(devs[ep]["queue_mode"] for ep in host.bins), devs


def test_readings_of_every_bin_reach_the_api(host):
    def missing():
        m = [ep for ep in host.bins if not host.readings(ep, name="fill")]
        return not m or None
    wait_for("a fill reading from every bin", missing, 90, why=host.consoles)
    f = host.readings(host.bins[0], name="fill")[0]
    assert 0 <= f["v"] <= 100 and f["unit"] == "%"


def test_every_bin_wakes_again_and_none_crashes(host):
    wait_for("two wakes of every bin", lambda: all(d.wakes >= 2 for d in host.fleet.devices.values()), 90,
             why=host.consoles)
    assert not [d.ep for d in host.fleet.devices.values() if d.crashes or d.reboots], host.consoles()


def test_a_command_reaches_exactly_its_bin(host):
    ep = host.bins[5]
    c = host.gw.api.post("/api/devices/%s/commands" % ep, {"action": "thresholds", "params": {"full_pct": 70}})
    assert c["state"] in ("queued", "sent"), c
    got = wait_for("the bin to take its command at a wake",
                   lambda: (lambda x: x if x["state"] in ("done", "failed", "expired") else None)(
                       host.gw.api.get("/api/commands/" + c["id"])), 60, why=host.consoles)
    assert got["state"] == "done", got
    full = {e: json.loads((host.fleet.devices[e].path / "config.json").read_text())["bin"]["full_pct"]
            for e in host.bins}
    assert full[ep] == 70
    assert all(v == 80 for e, v in full.items() if e != ep), full
