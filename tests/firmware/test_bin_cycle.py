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


def test_dp_flush_reads_and_acks_the_outbox_and_counts_refused_packs():
    # waste/dp.py reads and deletes the outbox's items itself (dev.outbox
    # dropped through the POSTs): 2.04 acks exactly the items it carried,
    # a 4.xx drops them and counts them in the (re-opened) Outbox
    import asyncio
    import os
    _setup()
    hal.set_time(1780000000)
    from dev import config
    from dev.outbox import Outbox
    from waste.cycle import Cycle
    from waste import dp
    ob = Outbox("data/outbox", 64)
    for i in range(3):   # one pack per POST: 600 B each (a 1,024-byte body)
        ob.push(bytes([0x81, i]) + bytes(598))
    ob = None
    c = Cycle(config.load(), {})
    sent = []
    codes = [128, 68, 68]   # 4.00, then 2.04 twice

    class R:
        payload = b""
        ct = None

    async def answer(code):
        r = R()
        r.code = code
        return r

    def post(c, path, body, ct):
        sent.append((path, bytes(body[:2]), len(body)))
        return answer(codes.pop(0))

    old = dp.post
    dp.post = post
    try:
        cmds = asyncio.run(dp.flush(c))
    finally:
        dp.post = old
    assert cmds == [] and c.sent == 2 and c.error == "refused 128", (cmds, c.sent, c.error)
    assert sent == [("dp", b"\x81\x00", 600), ("dp", b"\x81\x01", 600), ("dp", b"\x81\x02", 600)], sent
    assert c.ob.dropped == 1 and len(c.ob) == 0
    assert [n for n in os.listdir("data/outbox") if n.isdigit()] == []
