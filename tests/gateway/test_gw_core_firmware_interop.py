"""The gateway against the project's own firmware CoAP stack (firmware/coap,
fmt/senml, dev/commands) running in unix MicroPython with an ESP32-sized heap:
register with coap.rd, push a SenML CBOR pack built by fmt.senml, receive a
command on /cmd from the gateway (same socket it registered from) and answer
it through dev.commands -- the command reaches `done` at the gateway."""
import asyncio
import time

import pytest

from eclor.tools import mpy
from gw_core_harness import running

DEVICE = r'''
import sys, asyncio, time
from coap.endpoint import addr
from coap.observe import Server
from coap import codec
from coap.rd import Registration
from fmt import senml, cbor
from dev.commands import Commands

GW = addr("127.0.0.1", int(sys.argv[1]))

async def main():
    ep = Server(port=0, params={"ACK_TIMEOUT": 500})
    applied = []
    def level(p):
        applied.append(p["level"])
        return {"level": p["level"]}
    cmds = Commands({"level": level}, path="cmds.json", now=lambda: time.time())
    def on_cmd(req):
        res = cmds.apply_payload(req.payload, req.ct)
        return (codec.CHANGED, cbor.dumps(res[0]), 60)
    ep.add("cmd", on_cmd)
    asyncio.create_task(ep.run())
    reg = Registration(ep, GW, "lamp-fw", "eclor.lamp", lt=300)
    ok = await reg.ensure()
    print("REG", ok, reg.location)
    t = int(time.time())
    pack = senml.encode([("power", "W", 42.5, None), ("level", "%", 80, None),
                         ("relay", None, True, None), ("energy", "Wh", 1234, t - 5)],
                        bn="urn:dev:ep:lamp-fw:", bt=t)
    r = await ep.request(codec.POST, GW, "dp", bytes(pack), ct=112)
    print("DP", r.code, len(r.payload))
    r = await ep.request(codec.GET, GW, "time")
    print("TIME", r.payload.decode())
    for i in range(200):
        if applied:
            break
        await asyncio.sleep_ms(50)
    print("APPLIED", applied)
    await asyncio.sleep_ms(500)  # let a retransmitted command be answered from memory
    ep.close()

asyncio.run(main())
'''


def test_firmware_stack_registers_posts_and_executes_command(tmp_path):
    try:
        mp = mpy.micropython_path()
    except Exception as e:  # pragma: no cover
        pytest.skip("no micropython: %s" % e)
    script = tmp_path / "device.py"
    script.write_text(DEVICE)
    devdir = tmp_path / "board"  # not "dev": the script dir is on sys.path
    devdir.mkdir()

    async def scenario():
        async with running(tmp_path / "gw") as gw:
            proc = await asyncio.create_subprocess_exec(
                *mpy.micropython_cmd([str(script), str(gw.gw.coap_port)]), cwd=str(devdir),
                env=mpy.micropython_env([mpy.firmware_dir()]),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                for _ in range(200):
                    d = gw.gw.registry.devices.get("lamp-fw")
                    if d and d.get("online") and gw.gw.registry.latest.get("lamp-fw", {}).get("power"):
                        break
                    await asyncio.sleep(0.05)
                else:
                    if proc.returncode is None:
                        proc.kill()
                    out, err = await proc.communicate()
                    raise AssertionError("device did not register: %s %s" % (out, err))
                st, c = await gw.http("POST", "/api/devices/lamp-fw/commands",
                                      {"action": "level", "params": {"level": 35}, "ttl": 60, "wait": 10})
                assert st == 201 and c["state"] == "done", c
                assert c["answer"] == {"s": "done", "r": {"level": 35}}
                out, err = await asyncio.wait_for(proc.communicate(), 30)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            text = out.decode()
            assert proc.returncode == 0, (text, err.decode())
            assert "REG True rd/" in text and "DP 68 0" in text and "APPLIED [35]" in text, text
            tline = [ln for ln in text.splitlines() if ln.startswith("TIME")][0]
            assert abs(int(tline.split()[1]) - time.time()) < 10
            rows = (await gw.get("/api/devices/lamp-fw/readings"))["readings"]
            got = {r["name"]: (r["v"], r["vb"], r["unit"]) for r in rows}
            assert got == {"power": (42.5, None, "W"), "level": (80.0, None, "%"), "relay": (None, True, None),
                           "energy": (1234.0, None, "Wh")}
            t = {r["name"]: r["t"] for r in rows}
            assert t["energy"] == t["power"] - 5
    asyncio.run(scenario())
