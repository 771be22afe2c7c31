"""Many lamps in ONE MicroPython process (tools/fleet/lamphost.py), real firmware.

6 lamps, lamps_per_process=3: two unix MicroPython processes, each running
three lamps side by side -- each its own copy of the firmware modules (its
state), its own UDP socket and flash dir -- against a real gateway
subprocess. Checks: two processes for six lamps, every lamp registered and
reporting under its own name, a level command to one lamp reaches that lamp
and no other, a broken lamp raises ev:lampFailure for itself alone, and a
power cycle of one lamp boots it again (fresh copy, energy counter kept)
while its neighbours in the same process keep running.
"""
import time

import pytest
from fleet_env import FleetEnv, wait_for

from eclor.tools import territory
from eclor.tools.demo import world_start

pytestmark = pytest.mark.slow

LAMPS = 6
PER = 3
SPEED = 30.0


class Host(FleetEnv):
    def __init__(self, tmp):
        # an hour after yesterday's sunset: the lamps are on from boot
        super().__init__(tmp, territory.fleet(LAMPS, 0, seed=5), speed=SPEED,
                         start_utc=world_start(days_back=1) + 600 + 3600, report_s=60, lt=600,
                         lamps_per_process=PER)

    def consoles(self):
        return super().consoles() + "\n" + "\n".join(
            "%s:\n%s" % (d.ep, d.log_file.read_text()[-800:]) for d in self.fleet.devices.values()
            if d.log_file.exists())


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = Host(tmp_path_factory.mktemp("lamphost"))
    h.start()
    yield h
    h.stop()


def test_two_micropython_processes_for_six_lamps(host):
    assert len(host.fleet.hosts) == LAMPS // PER
    wait_for("the lamphosts running", lambda: len(host.fleet.pids()) == LAMPS // PER, 10)
    assert all(d.hosted for d in host.fleet.devices.values())


def test_every_lamp_registers_and_reports_under_its_own_name(host):
    wait_for("%d lamps online" % LAMPS, lambda: len(host.devices(online="true")) == LAMPS, 90, why=host.consoles)
    for ep in host.lamps:
        r = wait_for("a power reading from %s" % ep, lambda: host.readings(ep, name="power", limit=5), 60,
                     why=host.consoles)
        assert r[0]["unit"] == "W" and r[0]["v"] > 0, r
    addrs = {d["address"] for d in host.devices().values()}
    assert len(addrs) == LAMPS                     # a socket each
    for d in host.fleet.devices.values():          # its own flash dir, its own files
        assert (d.path / "data").is_dir() and any((d.path / "data").iterdir()), d.ep
    assert all(d.starts == 1 and not d.crashes for d in host.fleet.devices.values()), host.consoles()


def test_a_command_reaches_one_lamp_and_no_other(host):
    ep, other = host.lamps[1], host.lamps[2]     # same process
    c = host.gw.api.post("/api/devices/%s/commands" % ep,
                         {"action": "level", "params": {"level": 37, "duration": 3600}, "wait": 30})
    assert c["state"] == "done", c
    wait_for("target 37 reported by %s" % ep,
             lambda: any(abs(r["v"] - 37) < 0.5 for r in host.readings(ep, name="target", limit=20)), 40)
    time.sleep(2)
    assert not any(abs(r["v"] - 37) < 0.5 for r in host.readings(other, name="target", limit=50))


def test_a_broken_lamp_raises_its_own_fault(host):
    ep = host.lamps[0]
    host.fleet.set_inputs(ep, lamp="broken")
    ev = wait_for("ev:lampFailure from %s" % ep,
                  lambda: [e for e in host.events(ep) if e["kind"] == "ev:lampFailure"], 60, why=host.consoles)
    assert ev[0]["detail"]["active"] is True
    for other in host.lamps[1:PER]:
        assert not [e for e in host.events(other) if e["kind"] == "ev:lampFailure"], other


def test_power_cycle_of_one_lamp_leaves_its_neighbours_running(host):
    ep = host.lamps[4]
    d = host.fleet.devices[ep]
    energy_file = d.path / "data" / "energy.json"
    wait_for("%s saved its energy counter" % ep, energy_file.exists, 60)
    before = {x.ep: x.starts for x in host.fleet.devices.values()}
    pids = host.fleet.pids()
    host.call(host.fleet.restart_device(ep))
    wait_for("%s booted again" % ep, lambda: d.starts == 2, 30, why=host.consoles)
    assert d.reboots == 1 and not d.crashes
    assert host.fleet.pids() == pids                  # the same processes: nothing else restarted
    assert {x.ep: x.starts for x in host.fleet.devices.values() if x.ep != ep} == \
        {k: v for k, v in before.items() if k != ep}
    log = d.log_file.read_text()
    assert log.count("boot role=lamp") == 2 and "cause=power_on" in log.split("@start")[-1], log[-1500:]
    # it reports again, and its energy counter went on from where it was
    n = len(host.readings(ep, name="energy", limit=1000))
    wait_for("%s reporting after its power cycle" % ep,
             lambda: len(host.readings(ep, name="energy", limit=1000)) > n, 60, why=host.consoles)
    e = [r["v"] for r in host.readings(ep, name="energy", limit=1000)]
    assert e == sorted(e, reverse=True), e               # newest first: never going down
