"""End to end with the real gateway: `eclor gateway` as a subprocess (real
aiocoap, SQLite, HTTP API) and the bin firmware as fresh unix-MicroPython
processes, one per wake, sharing one flash directory.

The bin registers in queue mode, reports, and a command sent through the
HTTP API (POST /api/devices/{ep}/commands) reaches it on its next wake; its
result comes back through /cr and the command is "done" at the gateway. An
invalid one is refused by the bin with the reason, the settings unchanged.
"""
import asyncio
import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import bin_energy as be  # noqa: E402

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("eclor.gateway.daemon") is None or importlib.util.find_spec("eclor.tools.fleet.gwproc") is None,
    reason="the gateway daemon (eclor.gateway.daemon) is not in this tree")

EP = "bin-audun-0042"


@pytest.fixture(scope="module")
def fw():
    d = be.firmware_tree("mpy")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def gateway(tmp_path):
    from eclor.tools.fleet import gwproc
    g = gwproc.Gateway(tmp_path / "gw")
    g.start()
    yield g
    g.stop()


def _readings(g, ep):
    from eclor.tools.fleet import gwproc
    return gwproc.items(g.api.get("/api/devices/%s/readings" % ep, limit=1000), "readings")


def test_bin_registers_reports_and_gets_a_command_on_its_next_wake(fw, gateway, tmp_path):
    g = gateway
    b = be.BinBoard(tmp_path / "flash", g.coap_port, fw, ep=EP, t0=int(time.time()),
                    settings={"ack_timeout_ms": 300, "max_retransmit": 2, "measure_s": 900})

    def wake(**kw):
        rc, out = asyncio.run(b.wake(**kw))
        assert rc == be.EXIT_DEEPSLEEP, (rc, out)
        assert "Traceback" not in out, out
        return out

    wake(dist=0.8, temp=16.0)                    # power-on: registers, reports
    dev = g.api.get("/api/devices/%s" % EP)
    dev = dev.get("device", dev)
    assert dev["queue_mode"] is True and dev["type"] == "bin" and dev["online"], dev
    rows = _readings(g, EP)
    names = {r["name"] for r in rows}
    assert {"fill", "distance", "temp", "battery", "status"} <= names, names
    fill = [r for r in rows if r["name"] == "fill"][0]
    assert abs(fill.get("v", fill.get("value")) - 50) <= 1, fill

    # the operator raises the collection threshold while the bin sleeps
    good = g.api.post("/api/devices/%s/commands" % EP, {"action": "thresholds", "params": {"full_pct": 60},
                                                      "ttl": 3600})
    bad = g.api.post("/api/devices/%s/commands" % EP, {"action": "geometry", "params": {"depth_m": 9.5},
                                                     "ttl": 3600})
    cid, bid = good["id"], bad["id"]
    assert g.api.get("/api/commands/%s" % cid)["state"] not in ("done", "failed")

    wake(dist=0.62, temp=16.0)                   # 68 %: a change -> transmits, gets the commands
    c = g.api.get("/api/commands/%s" % cid)
    assert c["state"] == "done", c
    x = g.api.get("/api/commands/%s" % bid)
    assert x["state"] == "failed" and "depth_m" in str(x.get("result", x)), x
    cfg = b.config()
    assert cfg["bin"]["full_pct"] == 60 and "depth_m" not in cfg["bin"]
    # the new threshold holds from the next measurement: 68 % >= 60 % is full
    assert not any(r["name"] == "ev:full" for r in _readings(g, EP))
    wake(dist=0.62, temp=16.0)
    rows = _readings(g, EP)
    assert any(r["name"] == "ev:full" and r.get("vb", r.get("value")) in (True, 1) for r in rows), rows
    st = b.state()
    assert st["fails"] == 0 and b.outbox_len() == 0
