# A whole bin wake inside unix MicroPython (no gateway: Wi-Fi absent).
# Run from .mpy only: compiling the whole wake path from source on a
# 100 KB heap measures the compiler, not the firmware that ships.
import json
import hal

MODES = ("mpy", "rom")  # rom: the same .mpy imported in place from ROMFS


def _setup(**bin_inputs):
    cfg = {"ep": "bin-cycle-1", "role": "bin", "gateway": {"host": "127.0.0.1", "port": 5683},
           "bin": {"depth_m": 1.2, "offset_m": 0.3}}
    with open("config.json", "w") as f:
        json.dump(cfg, f)
    s = {"dist": 0.9, "temp": 18.0, "batt": 3.95, "tilt": 0}
    s.update(bin_inputs)
    hal.set_inputs(bin=s)


def test_safe_mode_pack_says_so_and_wake_state_persists():
    # a whole wake without a gateway reachable (Wi-Fi absent): the pack is
    # queued in flash with mode "safe", the back-off is set, nothing raised
    import asyncio
    _setup()
    hal.set_inputs(wifi=False)
    hal.set_time(1780000000)
    from dev import config
    from waste.cycle import Cycle
    c = Cycle(config.load(), {})
    c.safe = True
    ms = asyncio.run(c.wake())
    assert 800000 <= ms <= 900000, ms
    assert c.error == "wifi" and c.st["fails"] == 1 and c.st["next_try"] > 1780000000
    assert len(c.outbox()) == 1
    from fmt import senml
    recs = senml.decode(c.outbox().peek(1)[0][1])
    names = [r[0].split(":")[-1] for r in recs]
    assert "mode" in names and recs[names.index("mode")][2] == "safe", recs
    # the Wi-Fi attempt and the failure are on the simulated clock: 5 s
    assert c.st["last_radio"] >= 5000 and c.st["last_awake"] >= 5000 + 270
    with open("data/bin.json") as f:
        assert json.load(f)["fails"] == 1
