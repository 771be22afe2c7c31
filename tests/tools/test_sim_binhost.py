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
import json
import time

import pytest
from fleet_env import QUICK_BINS, FleetEnv, wait_for

from eclor.tools import territory

pytestmark = pytest.mark.slow

BINS = 20
SPEED = 30.0


class Host(FleetEnv):
    def __init__(self, tmp):
        specs = territory.fleet(0, BINS, seed=11)
        for s in specs:
            s["bin"]["full_pct"] = 80
        super().__init__(tmp, specs, speed=SPEED, start_utc=time.time() - 86400, report_s=60, lt=600,
                         bins_per_process=BINS)

    def start(self):
        # a wake every 2 simulated minutes (4 s here)
        super().start(bin_conf=QUICK_BINS)


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
                   lambda: host.command_outcome(c["id"]), 60, why=host.consoles)
    assert got["state"] == "done", got
    full = {e: json.loads((host.fleet.devices[e].path / "config.json").read_text())["bin"]["full_pct"]
            for e in host.bins}
    assert full[ep] == 70
    assert all(v == 80 for e, v in full.items() if e != ep), full
