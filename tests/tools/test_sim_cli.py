"""`eclor sim` (CPython load mode) against a real gateway subprocess, and
its refusal of bad arguments."""
import json
import subprocess
import sys

import pytest

from eclor.tools import territory
from eclor.tools.fleet import gwproc


def eclor(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "eclor.tools.cli"] + list(args),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, why", [
    (["--loss", "1.5"], "--loss must be in [0, 1)"),
    (["--lamps", "0", "--bins", "0"], "need at least one device"),
    (["--gateway", "http://127.0.0.1:5683"], "must be a coap:// URL"),
])
def test_bad_arguments_are_refused_with_the_reason(args, why):
    p = eclor("sim", *args)
    assert p.returncode == 2
    assert why in p.stderr


def test_sim_cpython_mode_against_the_gateway(tmp_path):
    with gwproc.Gateway(tmp_path / "gw") as gw:
        p = eclor("sim", "--lamps", "30", "--bins", "20", "--gateway", "coap://127.0.0.1:%d" % gw.coap_port,
                  "--loss", "0.05", "--ack-timeout", "0.3", "--report-s", "2", "--duration", "6", "--seed", "4")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["devices"] == 50 and out["registered"] == 50
        assert out["readings_acked"] >= 50 * 5
        assert out["dropped_in"] + out["dropped_out"] > 0    # loss was really injected
        devs = {d["ep"]: d for d in gwproc.items(gw.api.get("/api/devices"), "devices")}
        want = {s["ep"]: s["role"] for s in territory.fleet(30, 20, seed=4)}
        assert {ep: d["type"] for ep, d in devs.items()} == want
        # every bin registered in queue mode and its readings are stored
        b = next(ep for ep, r in want.items() if r == "bin")
        assert gwproc.items(gw.api.get("/api/devices/%s/readings" % b, name="fill"), "readings")


def test_sim_firmware_mode_runs_real_bins(tmp_path):
    """--mode firmware: the real bin firmware, one process per wake, x120,
    through the lossy NAT (--loss)."""
    with gwproc.Gateway(tmp_path / "gw") as gw:
        p = eclor("sim", "--mode", "firmware", "--lamps", "0", "--bins", "2", "--speed", "120",
                  "--gateway", "coap://127.0.0.1:%d" % gw.coap_port, "--duration", "12", "--loss", "0.05",
                  "--dir", str(tmp_path / "fleet"), timeout=90)
        assert p.returncode == 0, p.stdout + p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["crashes"] == 0 and out["reboots"] == 0
        assert out["wakes"] >= 2          # each wake ends in deep sleep (exit 3) and the next one starts
        devs = gwproc.items(gw.api.get("/api/devices"), "devices")
        assert sorted(d["ep"] for d in devs) == sorted(s["ep"] for s in territory.fleet(0, 2))
        for d in devs:
            assert gwproc.items(gw.api.get("/api/devices/%s/readings" % d["ep"], name="fill"), "readings")
        # each device has its own flash directory with its config
        cfg = json.loads((tmp_path / "fleet" / "devices" / devs[0]["ep"] / "config.json").read_text())
        assert cfg["ep"] == devs[0]["ep"] and cfg["gateway"]["host"] == "127.0.0.1"
        # --loss: the devices talk through the lossy NAT, one binding per wake's socket
        assert cfg["gateway"]["port"] != gw.coap_port
        assert out["bindings"] >= 2 and out["up"] > 0 and out["down"] > 0
