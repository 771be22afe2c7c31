# dev.commands: idempotent by id (persisted last 8), expiry, refusals with the
# reason and the previous settings kept, bad input never raises.
import json
from dev import commands, config, store
from dev.commands import Commands
from fmt import cbor

NOW = 1790000000


class Lamp:
    def __init__(self):
        self.level = 0
        self.applied = 0

    def set_level(self, p):
        lv = p.get("level")
        if not isinstance(lv, int) or not 0 <= lv <= 100:
            raise ValueError("level must be 0..100")
        self.level = lv
        self.applied += 1
        return {"level": lv}


def _cm(lamp, **kw):
    return Commands({"level": lamp.set_level, "boom": lambda p: 1 // 0}, now=lambda: NOW, **kw)


def test_apply_and_idempotent_by_id_across_reboot():
    lamp = Lamp()
    cm = _cm(lamp)
    r = cm.apply({"id": "c-1", "a": "level", "p": {"level": 40}, "exp": NOW + 60})
    assert r == {"id": "c-1", "s": "done", "r": {"level": 40}}
    assert cm.apply({"id": "c-1", "a": "level", "p": {"level": 40}, "exp": NOW + 60}) == r
    assert lamp.applied == 1
    cm2 = _cm(lamp)  # after a reboot: the stored answer, not a second application
    assert cm2.apply({"id": "c-1", "a": "level", "p": {"level": 99}}) == r
    assert lamp.applied == 1 and lamp.level == 40


def test_remembers_last_8_only():
    lamp = Lamp()
    cm = _cm(lamp)
    for i in range(9):
        cm.apply({"id": "c%d" % i, "a": "level", "p": {"level": i}})
    assert len(store.load_json("data/cmds.json")) == 8
    assert not hasattr(cm, "recent")  # read from flash per command, not held in RAM
    cm.apply({"id": "c0", "a": "level", "p": {"level": 0}})  # forgotten -> applied again
    assert lamp.applied == 10
    cm.apply({"id": "c5", "a": "level", "p": {"level": 77}})
    assert lamp.applied == 10 and lamp.level == 0


def test_expired_not_applied():
    lamp = Lamp()
    r = _cm(lamp).apply({"id": "old", "a": "level", "p": {"level": 50}, "exp": NOW - 1})
    assert r == {"id": "old", "s": "failed", "r": "expired"} and lamp.applied == 0


def test_unknown_time_does_not_expire():
    lamp = Lamp()
    cm = Commands({"level": lamp.set_level}, now=lambda: None)
    assert cm.apply({"id": "x", "a": "level", "p": {"level": 5}, "exp": 1})["s"] == "done"


def test_default_clock_is_the_rtc():
    import hal
    lamp = Lamp()
    cm = Commands({"level": lamp.set_level})
    hal.set_time(NOW)
    assert cm.apply({"id": "e", "a": "level", "p": {"level": 5}, "exp": NOW - 10})["r"] == "expired"


def test_refusals_carry_the_reason_and_keep_state():
    lamp = Lamp()
    cm = _cm(lamp)
    cm.apply({"id": "ok", "a": "level", "p": {"level": 30}})
    cases = [
        ({"id": "b1", "a": "level", "p": {"level": 300}}, "level must be 0..100"),
        ({"id": "b2", "a": "dance"}, "unknown action dance"),
        ({"id": "b3", "a": "level", "p": [1]}, "p must be a map"),
        ({"id": "b4", "a": "level", "p": {}, "exp": "soon"}, "exp must be a number"),
        ({"id": "b5", "a": "boom"}, "error: ZeroDivisionError"),
        ({"a": "level"}, "missing id"),
        ({"id": "", "a": "level"}, "missing id"),
        ("level 30", "not a map"),
        (None, "not a map"),
    ]
    for cmd, why in cases:
        r = cm.apply(cmd)
        assert r["s"] == "failed" and why in r["r"], (cmd, r)
    assert lamp.level == 30 and lamp.applied == 1


def test_config_action_uses_validated_apply():
    store.save_json("config.json", {"ep": "l1", "role": "lamp", "gateway": {"host": "h", "port": 5683}})
    state = {"cfg": config.load()}

    def do_config(p):
        state["cfg"] = config.apply(state["cfg"], p)
        return None

    cm = Commands({"config": do_config}, now=lambda: NOW)
    r = cm.apply({"id": "k1", "a": "config", "p": {"report_s": 2}})
    assert r["s"] == "failed" and "report_s" in r["r"] and config.load()["report_s"] == 900
    assert cm.apply({"id": "k2", "a": "config", "p": {"report_s": 60}})["s"] == "done"
    assert config.load()["report_s"] == 60


def test_payloads_cbor_json_and_garbage():
    lamp = Lamp()
    cm = _cm(lamp)
    arr = cbor.dumps([{"id": "p1", "a": "level", "p": {"level": 1}}, {"id": "p2", "a": "level", "p": {"level": 2}}])
    res = cm.apply_payload(arr, 60)
    assert [r["id"] for r in res] == ["p1", "p2"] and lamp.level == 2
    res = cm.apply_payload(json.dumps({"id": "p3", "a": "level", "p": {"level": 3}}).encode(), 50)
    assert res[0]["s"] == "done"
    back = cbor.loads(commands.encode(res))
    assert back == [{"id": "p3", "s": "done", "r": {"level": 3}}]
    assert json.loads(commands.encode(res, 50)) == back
    for data, ct in ((b"\xff\x00", 60), (b"{", 50), (cbor.dumps(5), 60), (b"x", 42)):
        try:
            cm.apply_payload(data, ct)
            assert False, data
        except ValueError:
            pass
    assert cm.apply_payload(cbor.dumps([1, {"id": "z"}]), 60)[0]["r"] == "bad command: not a map"


def test_command_that_resets_the_device_is_not_applied_again():
    n = []

    def hang(p):
        n.append(1)
        raise SystemExit(4)  # what the simulated watchdog / reset does inside a handler

    cm = Commands({"hang": hang}, now=lambda: NOW)
    try:
        cm.apply({"id": "poison", "a": "hang"})
    except SystemExit:
        pass
    cm = Commands({"hang": hang}, now=lambda: NOW)  # after the reboot
    r = cm.apply({"id": "poison", "a": "hang"})
    assert r == {"id": "poison", "s": "failed", "r": "interrupted by a restart"} and len(n) == 1
    assert len(store.load_json("data/cmds.json")) == 1
