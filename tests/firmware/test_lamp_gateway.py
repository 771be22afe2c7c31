# The lamp role as it runs on the board (lamp.app.main: endpoint, registration,
# sender, control loop) against a small gateway made of the firmware's own
# CoAP endpoint on 127.0.0.1, in one unix MicroPython process: hours without
# the gateway lose no light and no report; commands, calendar PUT (Block1),
# invalid calendar (4.00 + reason, old kept) and idempotent command ids.
import asyncio
import random
import hal
from coap import codec
from coap.observe import Server
from fmt import senml, cbor
from lamp import tz, schedule
from lamp import app as lamp_app

TIMEOUT = 90
# the lamp and a gateway in one process (see docs/lamp.md, footprint): more than one board
HEAPSIZE = 327680
FAST = {"ACK_TIMEOUT": 60, "MAX_RETRANSMIT": 1, "ACK_RANDOM_FACTOR": 1.0}
DAY = tz.days_from_civil(2026, 12, 21)


class Gateway:
    def __init__(self, port):
        self.ep = ep = Server(port=port, host="127.0.0.1", params=FAST)
        self.dp = 0  # packs received; keep only what the checks need (heap)
        self.levels = []  # times of the "level" records
        self.events = []  # (name, value)
        self.peer = None
        ep.add("rd", self.rd)
        ep.add("rd/7", lambda r: (codec.CHANGED, b"", None))
        ep.add("dp", self.data)
        self.task = asyncio.create_task(ep.run())

    def rd(self, req):
        self.peer = req.peer
        assert "et=eclor.lamp" in req.query and "ep=lamp-gw" in req.query, req.query
        assert b"</lamp/state>" in req.payload
        return codec.CREATED, b"", None, [[codec.LOCATION_PATH, b"rd"], [codec.LOCATION_PATH, b"7"]]

    def data(self, req):
        assert req.ct == 112
        self.dp += 1
        for n, u, v, t in senml.decode(req.payload):
            if n.endswith(":level"):
                self.levels.append(t)
            elif ":ev:" in n:
                self.events.append((n.split(":ev:")[1], v))
        return codec.CHANGED, b"", None

    def close(self):
        self.ep.close()


def _open_gateway():
    for _ in range(20):
        port = 20000 + random.getrandbits(14)
        try:
            return Gateway(port), port
        except OSError:
            pass
    raise OSError("no free port")


def _cfg(port):
    return {"ep": "lamp-gw", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": port},
            "lat": 49.47, "lon": 5.93, "report_s": 900, "lt": 3600, "ntp": "",
            "lamp": {"port": 0, "tick_ms": 5, "coap": FAST, "outbox": 64, "debounce_s": 5}}


async def _until(cond, ms=8000):
    for _ in range(ms // 20):
        if cond():
            return True
        await asyncio.sleep_ms(20)
    return cond()


async def test_gateway_down_for_hours_no_light_lost_backlog_delivered():
    t0 = DAY * 86400 + 15 * 3600  # 16:00 CET, just before dusk
    hal.set_true_time(t0)
    hal.set_time(t0)
    gw, port = _open_gateway()
    gw.close()  # the gateway is down
    await asyncio.sleep_ms(10)
    task = asyncio.create_task(lamp_app.main(_cfg(port)))
    await asyncio.sleep_ms(30)
    ctl = lamp_app.current
    # 7 hours without the gateway: a control step per simulated minute
    for i in range(420):
        hal.advance(60000)
        await asyncio.sleep_ms(6)
        want = schedule.level_at(ctl.cal, int(hal.time()) - 60, None, None)
        want2 = schedule.level_at(ctl.cal, int(hal.time()), None, None)
        assert ctl.dim.target in (want, want2), (i, ctl.dim.target, want)
        assert ctl.hw.relay == (ctl.dim.level > 0)
    assert ctl.dim.target == 100 and ctl.energy.on_s > 6 * 3600  # lit since dusk
    queued = len(ctl.outbox)
    assert 20 <= queued <= 40, queued
    assert not ctl.reg.registered and gw.dp == 0
    # the gateway comes back (and Wi-Fi tells the registration to try now)
    gw = Gateway(port)
    ctl.reg.kick()
    assert await _until(lambda: ctl.reg.registered and len(ctl.outbox) == 0)
    times = gw.levels
    assert len(times) == queued, (len(times), queued)
    assert times == sorted(times) and times[-1] - times[0] > 5 * 3600
    # an event is sent at once
    hal.set_inputs(lamp="broken")
    for _ in range(40):
        hal.advance(1000)
        await asyncio.sleep_ms(6)
    assert await _until(lambda: ("lampFailure", True) in gw.events), gw.events
    hal.set_inputs(lamp="ok")
    task.cancel()
    gw.close()
    await asyncio.sleep_ms(10)


def big_calendar():
    # built before the lamp starts and kept only as bytes: the test's own
    # dicts would otherwise fragment the shared heap
    progs = {}
    for i in range(8):
        progs["prog%d" % i] = [{"at": "sunset", "offset": i, "level": 100}, {"at": "22:%02d" % i, "level": 50},
                               {"at": "23:30", "level": 45}, {"at": "01:00", "level": 0},
                               {"at": "04:00", "level": 20}, {"at": "05:00", "level": 60},
                               {"at": "sunrise", "offset": -i, "level": 30}, {"at": "sunrise", "offset": 20, "level": 0}]
    big = {"id": "big", "default": "prog3", "programs": progs,
           "rules": [{"from": "12-24", "to": "12-26", "program": "prog1"}]}
    body = cbor.dumps(big)
    bad = cbor.dumps({"id": "bad", "default": "nope", "programs": progs})
    return body, bad


async def test_commands_calendar_and_rejection_over_coap():
    body, bad = big_calendar()
    assert len(body) > 1024  # more than one block
    t0 = DAY * 86400 + 20 * 3600
    hal.set_true_time(t0)
    hal.set_time(t0)
    gw, port = _open_gateway()
    task = asyncio.create_task(lamp_app.main(_cfg(port)))
    ctl = None
    assert await _until(lambda: gw.peer is not None)
    ctl = lamp_app.current
    peer = gw.peer
    ep = gw.ep

    async def cmd(obj):
        r = await ep.request(codec.POST, peer, "cmd", cbor.dumps(obj), ct=60)
        assert r.code == codec.CHANGED, r.code
        return cbor.loads(r.payload)

    r = await cmd({"id": "c-1", "a": "level", "p": {"level": 42}, "exp": t0 + 600})
    assert r == {"id": "c-1", "s": "done", "r": {"target": 42}}, r
    assert ctl.dim.target == 42
    r = await cmd({"id": "c-2", "a": "resume"})
    assert r["s"] == "done" and ctl.dim.target == 100
    r = await cmd({"id": "c-1", "a": "level", "p": {"level": 42}})  # re-sent: answered, not re-applied
    assert r["s"] == "done" and ctl.dim.target == 100
    r = await cmd({"id": "c-3", "a": "level", "p": {"level": 140}})
    assert r["s"] == "failed" and "0..100" in r["r"], r
    r = await cmd({"id": "c-4", "a": "dance"})
    assert r["s"] == "failed" and "unknown action" in r["r"]
    r = await cmd({"id": "c-5", "a": "level", "p": {"level": 10}, "exp": t0 - 5})
    assert r["s"] == "failed" and r["r"] == "expired" and ctl.dim.target == 100
    r = await ep.request(codec.PUT, peer, "lamp/calendar", body, ct=60)
    assert r.code == codec.CHANGED, (r.code, r.payload)
    assert ctl.cal[0] == "big" and ctl.dim.target == 100  # 21:00 CET: after dusk, before 22:03
    r = await ep.request(codec.GET, peer, "lamp/calendar")
    assert r.code == codec.CONTENT and cbor.loads(r.payload) == cbor.loads(body)
    # invalid: 4.00 with the reason, old calendar kept
    r = await ep.request(codec.PUT, peer, "lamp/calendar", bad, ct=60)
    assert r.code == codec.BAD_REQUEST and b"default must name a program" in r.payload, r.payload
    r = await ep.request(codec.PUT, peer, "lamp/calendar", b"\xff\x00garbage", ct=60)
    assert r.code == codec.BAD_REQUEST, r.code
    r = await ep.request(codec.PUT, peer, "lamp/calendar", b"{not json", ct=50)
    assert r.code == codec.BAD_REQUEST and b"invalid JSON" in r.payload
    assert ctl.cal[0] == "big"
    # override resource, state, info, lamp type
    r = await ep.request(codec.PUT, peer, "lamp/override", b"30", ct=0)
    assert r.code == codec.CHANGED and ctl.dim.target == 30
    r = await ep.request(codec.GET, peer, "lamp/state")
    st = {x[0].split(":")[-1]: x[2] for x in senml.decode(r.payload)}
    assert st["target"] == 30 and st["relay"] is True and st["mode"] == "normal", st
    r = await ep.request(codec.DELETE, peer, "lamp/override")
    assert r.code == codec.DELETED and ctl.dim.target != 30
    r = await ep.request(codec.PUT, peer, "lamp/type", cbor.dumps({"wattage": 35, "tolerance": 0.1}), ct=60)
    assert r.code == codec.CHANGED and ctl.faults.p["wattage"] == 35
    r = await ep.request(codec.PUT, peer, "lamp/type", cbor.dumps({"wattage": -3}), ct=60)
    assert r.code == codec.BAD_REQUEST and b"wattage" in r.payload
    r = await ep.request(codec.GET, peer, "lamp/type")
    assert cbor.loads(r.payload)["wattage"] == 35
    r = await ep.request(codec.GET, peer, "dev/info")
    info = cbor.loads(r.payload)
    assert info["fw"] and info["heap"] > 0 and info["mode"] == "normal"
    r = await ep.request(codec.GET, peer, ".well-known/core")
    assert b"</lamp/calendar>" in r.payload and b"</cmd>" in r.payload
    task.cancel()
    gw.close()
    await asyncio.sleep_ms(10)


async def test_wifi_outage_at_boot_light_first_then_reassociates():
    import json
    t0 = DAY * 86400 + 20 * 3600
    hal.set_true_time(t0)
    hal.set_time(t0)
    with open("secrets.json", "w") as f:
        json.dump({"ssid": "ccphva-lamps", "psk": "x"}, f)
    hal.set_inputs(wifi=False)  # the access point is down at power-on
    gw, port = _open_gateway()
    cfg = _cfg(port)
    cfg["lamp"]["link_s"] = 1
    task = asyncio.create_task(lamp_app.main(cfg))
    await asyncio.sleep_ms(50)
    ctl = lamp_app.current
    assert ctl.dim.target == 100 and ctl.hw.relay  # lit before any network
    assert not hal.radio_on()
    await asyncio.sleep_ms(1500)
    assert not hal.radio_on()  # retried, still down: the lamp keeps its schedule
    assert ctl.dim.target == 100
    hal.set_inputs(wifi=True)  # the access point is back
    assert await _until(lambda: hal.radio_on(), 4000)
    assert any("wifi is back" in line for line in ctl.log())
    assert await _until(lambda: ctl.reg.registered)
    task.cancel()
    gw.close()
    await asyncio.sleep_ms(10)


async def test_junk_to_every_resource_gets_4xx_and_the_lamp_keeps_going():
    t0 = DAY * 86400 + 20 * 3600
    hal.set_true_time(t0)
    hal.set_time(t0)
    gw, port = _open_gateway()
    task = asyncio.create_task(lamp_app.main(_cfg(port)))
    assert await _until(lambda: gw.peer is not None)
    ctl = lamp_app.current
    ep = gw.ep
    random.seed(7)
    junk = [b"", b"\xff", b"\xa1\x61", b"{", b"[1,2", b"null", b"\"x\"", b"-5", b"101",
            cbor.dumps([1, 2]), cbor.dumps({"level": "x"}), cbor.dumps({"id": 3}), b"\x9f\x9f\x9f\x9f"]
    junk += [bytes(random.getrandbits(8) for _ in range(random.getrandbits(6))) for _ in range(12)]
    codes = {}
    for path in ("lamp/override", "lamp/calendar", "lamp/type", "dev/config", "cmd"):
        for i, body in enumerate(junk):
            ct = (60, 50, 0, None, 42)[i % 5]
            meth = codec.POST if path in ("cmd", "dev/config") else codec.PUT
            r = await ep.request(meth, gw.peer, path, body, ct=ct)
            codes[r.code] = codes.get(r.code, 0) + 1
            assert r.code in (codec.BAD_REQUEST, codec.CHANGED), (path, body, ct, r.code, r.payload)
            if r.code == codec.BAD_REQUEST:
                assert r.payload, (path, body)  # always a reason
    assert codes.get(codec.BAD_REQUEST, 0) > 50, codes
    r = await ep.request(codec.DELETE, gw.peer, "lamp/override")  # undo any junk that was a valid level
    r = await ep.request(codec.GET, gw.peer, "lamp/state")
    assert r.code == codec.CONTENT
    assert ctl.cal[0] == "default" and ctl.dim.target == 100  # nothing junk changed the schedule
    assert ctl.cfg["ep"] == "lamp-gw"
    task.cancel()
    gw.close()
    await asyncio.sleep_ms(10)


async def test_unreadable_pack_is_skipped_not_blocking_the_queue():
    import os
    t0 = DAY * 86400 + 20 * 3600
    hal.set_true_time(t0)
    hal.set_time(t0)
    gw, port = _open_gateway()
    gw.close()
    task = asyncio.create_task(lamp_app.main(_cfg(port)))
    await asyncio.sleep_ms(30)
    ctl = lamp_app.current
    for _ in range(6):
        ctl.report()
    n = len(ctl.outbox)
    for seq in ctl.outbox.seqs[:4]:  # a flash error ate the 4 oldest packs (a whole batch)
        os.remove(ctl.outbox._file(seq))
    gw = Gateway(port)
    ctl.reg.kick()
    assert await _until(lambda: ctl.reg.registered and len(ctl.outbox) == 0)
    assert len(gw.levels) == n - 4, (len(gw.levels), n)
    task.cancel()
    gw.close()
    await asyncio.sleep_ms(10)
