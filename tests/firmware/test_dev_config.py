# dev.config: schema validation with reasons, apply keeps the old config on
# error (in RAM and on flash), load falls back to the last good file.
from dev import config, store

GOOD = {"ep": "lamp-villerupt-0001", "role": "lamp", "gateway": {"host": "192.0.2.10", "port": 5683},
        "zone": "centre", "commune": "Villerupt", "lat": 49.47, "lon": 5.93, "report_s": 900, "lt": 3600,
        "lamp": {"min_level": 10}}


def _refused(cur, changes, reason):
    before = store.read("config.json")
    try:
        config.apply(cur, changes)
    except ValueError as e:
        assert reason in str(e), (str(e), reason)
        assert store.read("config.json") == before
        return
    assert False, "accepted %r" % (changes,)


def test_load_validates_and_fills_defaults():
    store.save_json("config.json", {"ep": "b1", "role": "bin", "gateway": {"host": "h", "port": 1}})
    c = config.load()
    assert c["report_s"] == 900 and c["lt"] == 3600 and c["wdt_ms"] == 60000 and c["role"] == "bin"


def test_apply_validates_merges_and_persists():
    store.save_json("config.json", GOOD)
    c = config.load()
    c2 = config.apply(c, {"report_s": 300, "gateway": {"port": 5684}, "lamp": {"min_level": 5}})
    assert c2["report_s"] == 300 and c2["gateway"] == {"host": "192.0.2.10", "port": 5684}
    assert c["report_s"] == 900 and c["gateway"]["port"] == 5683  # the old object untouched
    assert config.load() == c2
    c3 = config.apply(c2, {"zone": None})  # None deletes an optional key
    assert "zone" not in c3


def test_invalid_changes_rejected_with_reason_old_kept():
    store.save_json("config.json", GOOD)
    c = config.load()
    _refused(c, {"report_s": 5}, "report_s: value out of range 10..86400")
    _refused(c, {"report_s": "900"}, "report_s: must be an integer")
    _refused(c, {"report_s": True}, "report_s: must be an integer")
    _refused(c, {"lat": 91.0}, "lat: value out of range")
    _refused(c, {"role": "toaster"}, "role: must be one of lamp, bin")
    _refused(c, {"gateway": {"port": 0}}, "gateway.port: value out of range")
    _refused(c, {"gateway": {"hots": "x"}}, "gateway.hots: unknown key")
    _refused(c, {"gateway": "x"}, "gateway: must be a map")
    _refused(c, {"ep": ""}, "ep: length out of range")
    _refused(c, {"ep": None}, "ep: missing")
    _refused(c, {"reportS": 10}, "reportS: unknown key")
    _refused(c, [1, 2], "must be a map")
    assert config.load() == c


def test_role_section_schema():
    store.save_json("config.json", GOOD)
    c = config.load()
    config.SCHEMA["lamp"] = {"min_level": (int, 0, 100), "curve": ["linear", "log"], "dali": (bool,)}
    try:
        _refused(c, {"lamp": {"min_level": 101}}, "lamp.min_level: value out of range")
        _refused(c, {"lamp": {"curve": "cubic"}}, "lamp.curve: must be one of linear, log")
        _refused(c, {"lamp": {"dali": 1}}, "lamp.dali: must be true or false")
        assert config.apply(c, {"lamp": {"curve": "log"}})["lamp"] == {"min_level": 10, "curve": "log"}
    finally:
        config.SCHEMA["lamp"] = (dict,)


def test_role_section_change_alone():
    # a change of role sections only checks them (dev.check alone, dev.schema
    # not loaded), refuses as the whole check does, and shares the rest
    import sys
    store.save_json("config.json", GOOD)
    c = config.load()
    config.SCHEMA["lamp"] = {"min_level": (int, 0, 100), "x": {"y": (int, 0, 9)}}
    try:
        _refused(c, {"lamp": 5}, "lamp: must be a map")
        _refused(c, {"lamp": {"x": {"y": 10}}}, "lamp.x.y: value out of range")
        _refused(c, {"lamp": {"x": {"z": 1}}}, "lamp.x.z: unknown key")
        _refused(c, {"lamp": {"w": float("nan")}}, "lamp.w: unknown key")
        _refused(c, {"lamp": {"min_level": 5}, "zone": 3}, "zone: must be text")
        c2 = config.apply(c, {"lamp": {"x": {"y": 3}}})
        assert "dev.schema" not in sys.modules and "dev.check" not in sys.modules
        assert c2["lamp"] == {"min_level": 10, "x": {"y": 3}} and c2["gateway"] is c["gateway"]
        assert config.load() == c2
        config.SCHEMA["lamp"] = (dict,)
        _refused(c2, {"lamp": {"w": float("nan")}}, "values must be JSON")
    finally:
        config.SCHEMA["lamp"] = (dict,)


def test_callable_rule():
    def even(v):
        if v % 2:
            raise ValueError("odd")
    config.SCHEMA["x_even"] = even
    try:
        store.save_json("config.json", GOOD)
        c = config.load()
        try:
            config.apply(c, {"x_even": 3})
            assert False
        except ValueError as e:
            assert "odd" in str(e)
        assert config.apply(c, {"x_even": 4})["x_even"] == 4
    finally:
        del config.SCHEMA["x_even"]


def test_load_falls_back_to_previous_good_config():
    store.save_json("config.json", GOOD)
    store.save_json("config.json", dict(GOOD, report_s=120))
    with open("config.json", "w") as f:  # corrupted outside store.write
        f.write("{not json")
    assert config.load()["report_s"] == 900
    store.save_json("config.json", GOOD)
    store.save_json("config.json", dict(GOOD, report_s=1))  # parses but invalid (written by hand)
    assert config.load()["report_s"] == 900


def test_no_valid_config_is_a_clear_error():
    try:
        config.load()
        assert False
    except ValueError as e:
        assert "no config" in str(e)
    store.save_json("config.json", {"ep": "x"})
    try:
        config.load()
        assert False
    except ValueError as e:
        assert "missing" in str(e), str(e)


def test_secrets_kept_apart():
    assert config.secrets() == {}
    store.save_json("secrets.json", {"ssid": "s", "psk": "p"})
    assert config.secrets()["psk"] == "p"


def test_values_that_json_cannot_keep_are_refused():
    store.save_json("config.json", GOOD)
    c = config.load()
    _refused(c, {"lamp": {"k": b"raw"}}, "must be JSON")
    _refused(c, {"lamp": {1: 2}}, "must be JSON")
    _refused(c, {"lamp": {"x": float("nan")}}, "must be JSON")
    _refused(c, {"ip": ["10.0.0.9", "255.255.255.0", "10.0.0.1"]}, "ip: must be [ip, netmask, gateway, dns]")
    _refused(c, {"ip": ["10.0.0.9", "255.255.255.0", "10.0.0.1", b"1.1.1.1"]}, "not an IPv4 address")
    ip = ["10.0.0.9", "255.255.255.0", "10.0.0.1", "1.1.1.1"]
    assert config.apply(c, {"ip": ip})["ip"] == ip and config.load()["ip"] == ip


def test_json_check_keeps_what_json_keeps():
    # apply() checks the values itself (no JSON text built and parsed back)
    store.save_json("config.json", GOOD)
    c = config.load()
    _refused(c, {"lamp": {"x": float("inf")}}, "must be JSON")
    _refused(c, {"lamp": {"x": (1, 2)}}, "must be JSON")  # a tuple would load back as a list
    lamp = {"on": True, "off": False, "f": [1.5, 0.1, -3, "t", None], "m": {"a": {"b": 2.25}}}
    c2 = config.apply(c, {"lamp": lamp})
    assert c2["lamp"] == dict(lamp, min_level=10) and config.load() == c2
