"""The operator CLI (`eclor devices|readings|send|commands|events`) against a
running gateway subprocess, with an always-on lamp that is a real aiocoap
server (it executes the command the CLI sends) and a sleepy bin.
"""
import asyncio
import json
import os
import sys

import pytest

from test_gw_blackbox_daemon import AiocoapDevice, pytestmark  # noqa: F401  (same skip rule)
from test_gw_blackbox_daemon import gateways  # noqa: F401  (fixture)

LAMP, BIN = "lamp-cli-0001", "bin-cli-0001"


async def eclor(gw, *argv, timeout=40):
    """The real entry point in a subprocess, as an operator types it."""
    env = dict(os.environ, ECLOR_API=gw.api.base)
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eclor.tools.cli", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), timeout)
    return p.returncode, out.decode(), err.decode()


class Lamp:
    """Always-on device: one aiocoap server context (one socket) that both
    registers and serves POST /cmd, answering like the firmware does."""

    def __init__(self, gw):
        self.gw = gw
        self.received = []

    async def open(self):
        import aiocoap
        import aiocoap.resource as resource
        import cbor2

        lamp = self

        class Cmd(resource.Resource):
            async def render_post(self, request):
                cmd = cbor2.loads(request.payload)
                lamp.received.append(cmd)
                res = {"id": cmd["id"], "s": "done", "r": {"level": cmd["p"].get("level")}}
                return aiocoap.Message(code=aiocoap.CHANGED, payload=cbor2.dumps(res), content_format=60)

        site = resource.Site()
        site.add_resource(["cmd"], Cmd())
        self.ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0))
        return self

    async def req(self, path, payload, ct, query=()):
        import aiocoap

        m = aiocoap.Message(code=aiocoap.POST, uri="coap://127.0.0.1:%d/%s" % (self.gw.coap_port, path),
                            payload=payload, content_format=ct)
        if query:
            m.opt.uri_query = tuple(query)
        return await asyncio.wait_for(self.ctx.request(m).response, 20)

    async def close(self):
        await self.ctx.shutdown()


def test_cli_against_running_gateway(gateways):
    import cbor2

    gw = gateways().start()

    async def scenario():
        lamp = await Lamp(gw).open()
        bin_ = await AiocoapDevice(gw, BIN).open()
        try:
            r = await lamp.req("rd", b"</cmd>;ct=60", 40, ["ep=" + LAMP, "lt=3600", "et=eclor.lamp"])
            assert str(r.code).startswith("2.01"), r
            await bin_.register()
            t0 = 1764300000
            recs = [{-2: "urn:dev:ep:%s:" % LAMP, -3: t0, 0: "power", 1: "W", 2: 41.5},
                    {0: "level", 1: "%", 2: 80.0}, {0: "power", 1: "W", 2: 12.25, 6: 60}]
            r = await lamp.req("dp", cbor2.dumps(recs), 112)
            assert str(r.code).startswith("2.04"), (r.code, r.payload)

            rc, out, err = await eclor(gw, "devices")
            assert rc == 0, err
            lines = out.splitlines()
            assert lines[0].split()[:2] == ["EP", "TYPE"]
            rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
            assert rows[LAMP][1] == "lamp" and rows[BIN][1] == "bin"

            rc, out, err = await eclor(gw, "devices", "--type", "bin", "--json")
            assert rc == 0, err
            assert [d["ep"] for d in json.loads(out)["devices"]] == [BIN]

            rc, out, err = await eclor(gw, "readings", LAMP, "--name", "power")
            assert rc == 0, err
            lines = out.splitlines()
            assert lines[0].split() == ["T", "NAME", "VALUE", "UNIT"]
            assert lines[1].split() == ["2025-11-28", "03:21:00", "power", "12.25", "W"]
            assert lines[2].split() == ["2025-11-28", "03:20:00", "power", "41.5", "W"]
            assert len(lines) == 3

            rc, out, err = await eclor(gw, "readings", LAMP, "--since", str(t0 + 30), "--json")
            assert rc == 0, err
            assert [(x["name"], x["v"]) for x in json.loads(out)["readings"]] == [("power", 12.25)]

            # a command executed by the lamp, end to end
            rc, out, err = await eclor(gw, "send", LAMP, "level", "level=30", "duration=600",
                                       "--ttl", "120", "--wait", "20")
            assert rc == 0, (out, err)
            assert lamp.received and lamp.received[-1]["a"] == "level"
            assert lamp.received[-1]["p"] == {"level": 30, "duration": 600}
            cid = lamp.received[-1]["id"]
            assert cid in out and "done" in out.split()

            rc, out, err = await eclor(gw, "commands", "--device", LAMP, "--json")
            assert rc == 0, err
            cmds = json.loads(out)["commands"]
            assert [(c["id"], c["state"]) for c in cmds] == [(cid, "done")]
            res = cmds[0]["result"]  # the device's answer ({"s", "r"}) or just its r
            assert (res.get("r", res) if isinstance(res, dict) else res) == {"level": 30}

            # queued for the sleepy bin: id and state on one line
            rc, out, err = await eclor(gw, "send", BIN, "thresholds", "full_pct=85")
            assert rc == 0, err
            bid, state = out.split()
            assert state == "queued"
            rc, out, err = await eclor(gw, "commands", "--state", "queued")
            assert rc == 0 and [ln.split()[0] for ln in out.splitlines()[1:]] == [bid]

            # API errors: one line, exit 1
            rc, out, err = await eclor(gw, "send", BIN, "level", "level=3")
            assert rc == 1 and out == "" and len(err.splitlines()) == 1
            assert err.startswith("eclor send: 400 ")
            rc, out, err = await eclor(gw, "readings", "no-such-device")
            assert rc == 1 and err.startswith("eclor readings: 404 ") and len(err.splitlines()) == 1

            rc, out, err = await eclor(gw, "events", "--kind", "registered", "--since", "1h", "--json")
            assert rc == 0, err
            evs = json.loads(out)["events"]
            assert {e["ep"] for e in evs} == {LAMP, BIN} and {e["kind"] for e in evs} == {"registered"}
        finally:
            await lamp.close()
            await bin_.close()

    asyncio.run(scenario())


def test_cli_unreachable_after_stop(gateways):
    gw = gateways().start()
    gw.stop()
    rc, out, err = asyncio.run(eclor(gw, "devices"))
    assert rc == 2 and out == ""
    assert err.startswith("eclor devices: cannot reach the gateway at " + gw.api.base)
