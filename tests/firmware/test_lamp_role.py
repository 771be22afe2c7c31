# The lamp role object as the technician shell and app.py see it: self-test,
# presence boost (rate-limited), safe mode, outbox bound with the dropped
# counter, and `import eclor` on a provisioned lamp -- from .mpy at 100 KB.
import json
import hal
from lamp import tz
from lamp.control import Controller
from fmt import senml

MODES = ("mpy", "rom")  # rom: the same .mpy imported in place from ROMFS
DAY = tz.days_from_civil(2026, 12, 21)
NIGHT = DAY * 86400 + 21 * 3600  # 22:00 CET
CFG = {"ep": "lamp-r", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": 5683},
       "lat": 49.47, "lon": 5.93, "report_s": 900, "lamp": {"wattage": 60, "outbox": 8}}
PRES = {"id": "pres", "default": "p", "presence": {"level": 90, "hold_s": 60, "gap_s": 30},
        "programs": {"p": [{"at": "sunset", "level": 100}, {"at": "21:00", "level": 20},
                           {"at": "sunrise", "level": 0}]}}


def _at(t):
    hal.set_true_time(t)
    hal.set_time(t)


def _run(c, n, ms=1000):
    for _ in range(n):
        hal.advance(ms)
        c.step()


def test_selftest_healthy_and_broken_lamp():
    _at(NIGHT)
    c = Controller(CFG)
    _run(c, 5)
    r = c.selftest(wait_ms=30)
    assert r["relay"] == "ok" and r["power"].startswith("ok"), r
    assert r["clock"] != "FAIL time unknown"
    assert r["gateway"].startswith("FAIL")  # no registration in this test
    assert c.hw.relay == c.dim.relay and c.hw.duty == int(c.dim.frac() * 65535 + 0.5)  # output restored
    hal.set_inputs(lamp="broken")
    r = c.selftest(wait_ms=30)
    assert r["relay"].startswith("FAIL") and r["power"].startswith("FAIL"), r
    hal.set_inputs(lamp="high")
    r = c.selftest(wait_ms=30)
    assert r["relay"] == "ok" and r["power"].startswith("FAIL"), r
    hal.set_time(hal.RTC_EPOCH_2000)
    assert c.selftest(wait_ms=30)["clock"] == "FAIL time unknown"


def test_switch_lamp_is_full_on_for_any_level():
    _at(NIGHT)
    c = Controller(CFG)
    c.set_type({"control": "switch"})
    c.set_override(40)
    _run(c, 5)
    assert c.dim.target == 100 and c.hw.duty == 65535
    c.set_type({"control": "PWM"})
    c.set_override(40)
    _run(c, 5)
    assert c.dim.target == 40
    try:
        c.set_type({"control": "gas"})
        assert False
    except ValueError as e:
        assert "control" in str(e)


def test_lamp_type_and_config_rules():
    # lamp/settings.py's rule table (one string) as dev.config sees it
    _at(NIGHT)
    with open("config.json", "w") as f:
        json.dump(CFG, f)
    c = Controller(CFG)
    bad = [({"wattage": 0}, "lamp.wattage: value out of range 1..2000"),
           ({"tolerance": 0.001}, "lamp.tolerance: value out of range 0.01..1"),
           ({"warmup_s": 1.5}, "lamp.warmup_s: must be an integer"),
           ({"control": "DMX"}, "lamp.control: must be one of"), ({"curve": [1, 2]}, "curve must be"),
           ({"f": 1}, "lamp type: unknown key f")]
    for p, why in bad:
        try:
            c.set_type(p)
            raise AssertionError("accepted %r" % (p,))
        except ValueError as e:
            assert str(e).startswith(why), (p, str(e))
    for p, why in [({"lamp": {"dst": 1}}, "lamp.dst: must be true or false"),
                   ({"lamp": {"pins": 3}}, "lamp.pins: must be a map"),
                   ({"lamp": {"tz_std": -50000}}, "lamp.tz_std: value out of range -43200..50400"),
                   ({"lamp": 5}, "lamp: must be a map"), ({"lamp": {"f": 1}}, "lamp.f: unknown key"),
                   ({"lamp": {"wattage f": 1}}, "lamp.wattage f: unknown key")]:
        try:
            c.set_config(p)
            raise AssertionError("accepted %r" % (p,))
        except ValueError as e:
            assert str(e).startswith(why), (p, str(e))
    assert c.p["wattage"] == 60  # refused changes left the lamp as it was
    c.set_type({"wattage": 45, "tolerance": 0.15, "control": "DALI", "current_max": 0.5})
    c.set_config({"lamp": {"dst": False, "link_s": 60, "pins": {"pwm": 4}}})
    assert c.lamp_type()["wattage"] == 45 and c.p["dst"] is False and c.faults.p["tolerance"] == 0.15


def test_presence_boost_rate_limited_night_only():
    _at(NIGHT)
    c = Controller(CFG)
    c.set_calendar(PRES)
    _run(c, 3)
    assert c.dim.target == 20 and c.src == "schedule"
    hal.set_inputs(presence=True)
    _run(c, 1)
    assert c.dim.target == 90 and c.src == "presence"
    t_motion = c.mono[4]  # the last accepted motion (lamp/control.py _PRES)
    hal.set_inputs(presence=False)
    _run(c, 20)
    hal.set_inputs(presence=True)  # 21 s later: inside gap_s, not a new trigger
    _run(c, 1)
    assert c.mono[4] == t_motion
    hal.set_inputs(presence=False)
    _run(c, 45)  # 60 s hold from the first motion is over
    assert c.dim.target == 20
    hal.set_inputs(presence=True)
    _run(c, 1)
    assert c.dim.target == 90 and c.mono[4] > t_motion
    hal.set_inputs(presence=False)
    # daytime: motion does not light the lamp
    _at(DAY * 86400 + 11 * 3600)
    hal.set_inputs(presence=True)
    _run(c, 2)
    assert c.dim.target == 0
    hal.set_inputs(presence=False)


def test_safe_mode_ignores_presence_and_says_so():
    _at(NIGHT)
    c = Controller(CFG, safe=True)
    c.set_calendar(PRES)
    hal.set_inputs(presence=True)
    _run(c, 2)
    assert c.dim.target == 20
    hal.set_inputs(presence=False)
    c.report()
    recs = senml.decode(c.outbox.peek(8)[-1][1])
    mode = [r for r in recs if r[0].endswith(":mode")]
    assert mode and mode[0][2] == "safe"


def test_outbox_bound_drops_oldest_and_reports_the_count():
    _at(NIGHT)
    c = Controller(CFG)
    for _ in range(12):
        c.report()
    assert len(c.outbox) == 8 and c.outbox.dropped == 4
    recs = senml.decode(c.outbox.peek(8)[-1][1])
    dropped = [r for r in recs if r[0].endswith(":dropped")]
    assert dropped and dropped[0][2] >= 3


def test_eclor_shell_on_a_lamp():
    _at(NIGHT)
    with open("config.json", "w") as f:
        json.dump(CFG, f)
    import eclor
    import app
    eclor.status()
    st = app.current.status()
    assert st["target"] == 0  # made, not yet stepped
    eclor.level(35)
    assert app.current.dim.target == 35 and app.current.src == "override"
    st = app.current.status()
    assert st["source"] == "override" and st["calendar"] == "default"
    eclor.level(None)
    assert app.current.dim.target == 100
    assert any("override 35%" in line for line in app.current.log())


async def _stand_alone(breaker):
    import asyncio
    import gc
    from lamp import app as lamp_app
    _at(DAY * 86400 + 15 * 3600)  # 16:00 CET, before dusk
    cfg = dict(CFG)
    cfg["lamp"] = {"wattage": 60, "tick_ms": 5, "port": 0}
    undo = breaker()
    task = asyncio.create_task(lamp_app.main(cfg))
    await asyncio.sleep_ms(30)
    undo()
    gc.collect()
    ctl = lamp_app.current
    assert ctl is not None and ctl.reg is None
    assert any("network unavailable" in line for line in ctl.log()), ctl.log()
    for _ in range(150):  # 150 simulated minutes: dusk comes, the lamp lights
        hal.advance(60000)
        await asyncio.sleep_ms(6)
    assert ctl.dim.target == 100 and ctl.hw.relay and ctl.src == "schedule"
    task.cancel()
    await asyncio.sleep_ms(10)


async def test_network_module_missing_lamp_runs_stand_alone():
    import sys
    import coap  # noqa: F401

    def breaker():  # a half-done update left coap/rd without its class
        sys.modules["coap.rd"] = 1

        def undo():
            del sys.modules["coap.rd"]
        return undo
    await _stand_alone(breaker)


async def test_no_heap_for_the_network_lamp_runs_stand_alone():
    import gc
    from lamp import app as lamp_app

    def breaker():
        # Leave too little heap for the CoAP stack when the network set-up
        # starts (lamp.app's use("setup", "network", ...)), in pieces: a
        # fragmented heap has no one big block. Filled there, not before
        # main(): the controller's boot then has its heap, and what fails is
        # the network, whatever the boot's own allocations happen to need
        # (from ROMFS a 272-byte block of the boot could fail first).
        real = lamp_app.use
        ballast = []

        def use(name, fn, *args):
            if fn == "network":
                gc.collect()
                while gc.mem_free() > 8000 + 2048:
                    ballast.append(bytearray(2048))
            return real(name, fn, *args)
        lamp_app.use = use

        def undo():
            lamp_app.use = real
            ballast.clear()
        return undo
    await _stand_alone(breaker)


def test_a_step_inside_a_command_leaves_the_due_report_to_the_next_step():
    # lamp/control.py step(report=False): an override applies its level at
    # once; a report due then is queued by the loop's next step, so that the
    # report's code is not loaded on top of the command's (the night's peak)
    _at(NIGHT)
    c = Controller(CFG)
    _run(c, 2)
    c.mono[3] = int(hal.time())  # the next report (lamp/control.py _NEXT) is due
    n = len(c.outbox)
    c.set_override(30)
    assert c.dim.target == 30 and len(c.outbox) == n
    _run(c, 1)
    assert len(c.outbox) == n + 1 and c.mono[3] > hal.time()


def test_a_report_command_queues_its_report_after_the_command_modules():
    # lamp/cmd.py: the report of a `report` command is queued once the
    # command's result is stored and encoded, with dev.commands and fmt.cbor
    # dropped (from .mpy) first, so that lamp/state.py, fmt.senml and the
    # CBOR Writer do not load on top of them; still before the answer
    import sys
    from fmt import cbor
    from lamp.resources import Server
    _at(NIGHT)
    c = Controller(CFG)
    _run(c, 2)
    srv = Server(c)
    seen = []
    real = c.report

    def report():
        seen.append("dev.commands" in sys.modules)
        real()
    c.report = report
    n = len(c.outbox)
    req = type("R", (), {"path": "cmd", "method": 2, "ct": 60,
                         "payload": cbor.dumps({"id": "rep-1", "a": "report"})})()
    code, out, ct = srv(req)
    assert code == 68 and ct == 60, code
    assert cbor.loads(out) == {"id": "rep-1", "s": "done", "r": None}
    assert len(c.outbox) == n + 1 and len(seen) == 1
    assert seen == [False] or not sys.modules["lamp.control"].__file__.endswith(".mpy")
    code, out, ct = srv(req)  # sent again: answered from data/cmds.json, no second report
    assert cbor.loads(out)["s"] == "done" and len(c.outbox) == n + 1 and len(seen) == 1


def test_a_calendar_command_logs_the_installation_after_the_answer_is_made():
    # lamp/cmd.py writes the "installed" line once the command is answered
    # (dev.log not loaded on top of dev.commands and lamp/calcheck.py)
    from fmt import cbor
    from lamp.resources import Server
    _at(NIGHT)
    c = Controller(CFG)
    _run(c, 2)
    srv = Server(c)
    req = type("R", (), {"path": "cmd", "method": 2, "ct": 60, "payload": cbor.dumps(
        [{"id": "cal-1", "a": "calendar", "p": {"calendar": PRES}},
         {"id": "cal-2", "a": "calendar", "p": {"calendar": {"id": "bad"}}}])})()
    code, out, ct = srv(req)
    res = cbor.loads(out)
    assert code == 68 and res[0] == {"id": "cal-1", "s": "done", "r": {"calendar": "pres"}}, res
    assert res[1]["s"] == "failed" and "programs" in res[1]["r"], res
    assert c.cal[0] == "pres"
    log = open("data/log.txt").read()
    assert log.count("calendar pres installed") == 1 and "calendar bad" not in log, log


def test_a_command_action_runs_without_fmt_cbor():
    # lamp/cmd.py drops fmt.cbor (from .mpy) while the action runs: the
    # calendar comes encoded already (stored as received), the validation
    # and the install do not load it again; the answer is still CBOR
    import sys
    from fmt import cbor
    from lamp.resources import Server
    _at(NIGHT)
    c = Controller(CFG)
    _run(c, 2)
    srv = Server(c)
    seen = []
    real = c.set_calendar

    def set_calendar(raw, data=None, quiet=False):
        seen.append(("fmt.cbor" in sys.modules, data))
        return real(raw, data, quiet)
    c.set_calendar = set_calendar
    req = type("R", (), {"path": "cmd", "method": 2, "ct": 60, "payload": cbor.dumps(
        {"id": "cal-3", "a": "calendar", "p": {"calendar": PRES}})})()
    code, out, ct = srv(req)
    assert code == 68 and ct == 60 and cbor.loads(out) == {"id": "cal-3", "s": "done", "r": {"calendar": "pres"}}
    assert len(seen) == 1 and cbor.loads(seen[0][1]) == PRES, seen
    assert seen[0][0] is False or not sys.modules["lamp.control"].__file__.endswith(".mpy")
    assert open("data/calendar.cbor", "rb").read() == seen[0][1] and c.cal[0] == "pres"
    # as JSON: the answer in JSON, the calendar stored as CBOR all the same
    import json
    req.ct, req.payload = 50, json.dumps({"id": "cal-4", "a": "calendar", "p": {"calendar": PRES}}).encode()
    code, out, ct = srv(req)
    assert code == 68 and ct == 50 and json.loads(out)["s"] == "done", out
    assert cbor.loads(open("data/calendar.cbor", "rb").read()) == PRES


def test_use_drops_what_a_failed_import_loaded():
    # lamp.use(): an import that fails partway (here after loading fmt.senml;
    # on the board, for want of heap) must still drop the services it
    # loaded, or they stay and every later call meets a fuller heap
    import sys
    import lamp
    for n in ("fmt.senml", "fmt.cbor", "fmt"):
        sys.modules.pop(n, None)
    try:
        lamp.use("usefail.mod", "f")
        assert False, "no MemoryError"
    except MemoryError:
        pass
    m = sys.modules.get("fmt.senml")
    assert m is None or not m.__file__.endswith(".mpy"), m  # .mpy services are dropped
