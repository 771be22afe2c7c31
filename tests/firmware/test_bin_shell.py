# The bin role's shell object and its SenML packs, inside unix MicroPython.
import json
import hal


def _setup(**bin_inputs):
    cfg = {"ep": "bin-shell-1", "role": "bin", "gateway": {"host": "127.0.0.1", "port": 5683},
           "bin": {"depth_m": 1.2, "offset_m": 0.3}}
    with open("config.json", "w") as f:
        json.dump(cfg, f)
    s = {"dist": 0.9, "temp": 18.0, "batt": 3.95, "tilt": 0}
    s.update(bin_inputs)
    hal.set_inputs(bin=s)
    from dev import config
    from waste import app
    return app.make(config.load())


def test_measure_status_selftest():
    b = _setup()
    r = b.measure()
    assert r["fill"] == 50 and r["why"] == "ok" and r["status"] == "ok", r   # (0.3+1.2-0.9)/1.2
    assert abs(r["distance"] - 0.9) < 0.003 and r["temp"] == 18.0
    st = b.status()
    assert st["queued"] == 0 and st["events"] == [] and st["config_error"] is None, st
    # measure() from the shell changes no persisted state
    assert st["fill"] is None
    t = b.selftest()
    assert set(t) == {"ranger", "temperature", "tilt", "battery", "config"}
    assert all(ok for ok, detail in t.values()), t


def test_selftest_reports_faults():
    b = _setup(tilt=1, temp=None, batt=3.1, pings=[-1, -1, -1, 0.9, -1, -1, -1])
    t = b.selftest()
    assert not t["ranger"][0] and "few" in t["ranger"][1]
    assert not t["temperature"][0] and not t["tilt"][0] and not t["battery"][0]
    assert t["config"][0]


def test_shell_config_change_validated_old_kept():
    b = _setup()
    try:
        b.config({"bin": {"depth_m": 0}})
    except ValueError as e:
        assert "depth_m" in str(e)
    else:
        raise AssertionError("accepted depth 0")
    assert b.config()["bin"]["depth_m"] == 1.2
    with open("config.json") as f:
        assert json.load(f)["bin"]["depth_m"] == 1.2
    b.config({"bin": {"depth_m": 1.5}})
    with open("config.json") as f:
        assert json.load(f)["bin"]["depth_m"] == 1.5
    assert b.cycle.s["depth_m"] == 1.5


def test_pack_is_senml_the_project_decoder_reads():
    # the wake writes packs with fmt.cbor directly: check them with fmt.senml
    from waste.sense import senml_pack
    from fmt import senml
    p, at = senml_pack([("fill", "%", 42), ("distance", "m", 0.875), ("status", None, "ok"),
                        ("ev:full", None, True), ("awake_ms", "ms", 123456)], "urn:dev:ep:b1:", 1780000000)
    # the base time is a uint32 at `at`, the shortest form: the wake sets it in place
    assert p[at - 1] == 0x1a and int.from_bytes(p[at:at + 4], "big") == 1780000000
    recs = senml.decode(p, senml.CT_CBOR)
    assert recs[0] == ("urn:dev:ep:b1:fill", "%", 42, 1780000000), recs[0]
    assert recs[1][0] == "urn:dev:ep:b1:distance" and abs(recs[1][2] - 0.875) < 1e-6
    assert recs[2][2] == "ok" and recs[3][2] is True and recs[4][2] == 123456
    assert all(r[3] == 1780000000 for r in recs)

