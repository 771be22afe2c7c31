"""End to end: the real lamp firmware (main.py -> app.py -> lamp.app, from
the .mpy files that ship, in unix MicroPython on an ESP32-sized heap) and the
real gateway (`eclor gateway` subprocess, aiocoap + SQLite + HTTP API) on
127.0.0.1. The lamp powers on without time (fail-safe), gets the time from
the gateway's /time, registers, reports; the gateway observes its state; a
command sent through the HTTP API changes its level.
"""
import asyncio
import json
import subprocess
import time

import aiocoap
import cbor2
import pytest

from eclor.tools import mpy
from eclor.tools.fleet import gwproc

pytestmark = pytest.mark.slow
EP = "lamp-villerupt-e2e1"
# The whole firmware (boot frame, CoAP stack, dev services, lamp) does not fit
# the 100 KB ESP32 heap on the 64-bit host (pointers and object headers are
# twice an ESP32's): bench/lamp_footprint.py measures the real minimum.
HEAP = 192 * 1024


def _wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def system(tmp_path):
    fw = tmp_path / "fw"
    mpy.compile_tree(fw)
    gw = gwproc.Gateway(tmp_path / "gw").start()
    flash = tmp_path / "flash"
    flash.mkdir()
    lamp_port = gwproc.free_port()
    cfg = {"ep": EP, "role": "lamp", "gateway": {"host": "127.0.0.1", "port": gw.coap_port},
           "commune": "Villerupt", "lat": 49.47, "lon": 5.93, "report_s": 10, "lt": 120, "ntp": "",
           "lamp": {"port": lamp_port, "tick_ms": 200, "wattage": 60}}
    (flash / "config.json").write_text(json.dumps(cfg))
    log = open(tmp_path / "lamp.log", "w")
    proc = subprocess.Popen(
        mpy.micropython_cmd([str(fw / "main.py")], heapsize=HEAP), cwd=flash, stdout=log, stderr=subprocess.STDOUT,
        env=mpy.micropython_env([fw], {"ECLOR_SIM_SPEED": "1", "ECLOR_SIM_TIME": str(time.time())}),
        preexec_fn=gwproc.child_setup)
    try:
        yield gw, proc, lamp_port, tmp_path / "lamp.log"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        gw.stop()


async def _lamp_state(port):
    ctx = await aiocoap.Context.create_client_context()
    try:
        r = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri="coap://127.0.0.1:%d/lamp/state" % port)).response
        assert r.code == aiocoap.CONTENT and r.opt.content_format == 112, r
        return cbor2.loads(r.payload)
    finally:
        await ctx.shutdown()


def _state(port):
    """{name: value} of the lamp's SenML state (names without the base name)."""
    return {rec[0]: rec.get(2, rec.get(3, rec.get(4))) for rec in asyncio.run(_lamp_state(port))}


def test_lamp_registers_reports_and_obeys_a_command(system):
    gw, proc, lamp_port, logf = system
    api = gw.api

    def registered():
        if proc.poll() is not None:
            raise AssertionError("lamp exited %s:\n%s" % (proc.returncode, logf.read_text()))
        devs = gwproc.items(api.get("/api/devices"), "devices")
        return [d for d in devs if d["ep"] == EP and d.get("online")]
    dev = _wait(registered, 40, "the lamp's registration")[0]
    assert dev["type"] == "lamp"

    def readings(name):
        r = api.get("/api/devices/%s/readings" % EP, name=name)
        return gwproc.items(r, "readings")
    # periodic reports (report_s 10, jittered) reach the gateway's store
    rows = _wait(lambda: readings("energy") and readings("level"), 40, "reports")
    assert rows
    # the lamp got the time from the gateway (/time): its report times are now-ish
    lv = readings("level")
    assert abs(lv[0]["t"] - time.time()) < 120, lv[0]

    # a command through the HTTP API changes the level
    c = api.post("/api/devices/%s/commands" % EP, {"action": "level", "params": {"level": 42}, "ttl": 60, "wait": 30})
    assert c["state"] == "done", c
    assert c["result"]["s"] == "done" and c["result"]["r"] == {"target": 42}, c
    st = _state(lamp_port)
    assert st["target"] == 42 and st["relay"] is True, st

    # the gateway also stores what the lamp reports after the change
    _wait(lambda: any(r["v"] == 42 for r in readings("target")), 40, "target 42 at the gateway")

    # invalid command params: refused by the lamp with the reason, level unchanged
    c = api.post("/api/devices/%s/commands" % EP,
                 {"action": "calendar", "params": {"calendar": {"programs": {}}}, "ttl": 60, "wait": 30})
    assert c["state"] == "failed", c
    assert "programs" in json.dumps(c["result"]), c
    assert _state(lamp_port)["target"] == 42

    c = api.post("/api/devices/%s/commands" % EP, {"action": "resume", "ttl": 60, "wait": 30})
    assert c["state"] == "done", c
    assert proc.poll() is None, logf.read_text()
