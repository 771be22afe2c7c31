"""The bin firmware over many wakes: each wake is a fresh unix-MicroPython
process running the shipped .mpy files through main.py, in one flash
directory whose state (data/, .sim_rtc.json) carries over like flash and RTC
across deep sleep. A small aiocoap server on 127.0.0.1 plays the gateway
(bench/bin_energy.py: BinGateway), so every exchange is real CoAP over UDP.
"""
import asyncio
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import bin_energy as be  # noqa: E402

EP = "bin-test-0001"
FAST = {"ack_timeout_ms": 100, "max_retransmit": 1}   # a dead gateway costs 0.4 s of host time


@pytest.fixture(scope="module")
def fw():
    d = be.firmware_tree("mpy")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def dist_for(fill, depth=1.0, offset=0.30):
    return offset + depth * (1 - fill / 100.0)


async def wake_ok(board, **inputs):
    rc, out = await board.wake(**inputs)
    assert rc == be.EXIT_DEEPSLEEP, (rc, out)
    assert "Traceback" not in out and "MemoryError" not in out, out
    return out


def test_week_of_wakes_fill_curve_events_and_heartbeats(fw, tmp_path):
    """A week at one measurement an hour with noisy echoes and false ones:
    the gateway gets the right levels, full once per cycle, emptied at each
    collection, heartbeats with the energy figures, and no more
    transmissions than the rules call for."""
    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw, settings=dict(FAST, measure_s=3600, heartbeat_s=6 * 3600))
        truth = []
        fill = 2.0
        for k in range(7 * 24):
            fill += 2.5 if 7 <= (k % 24) < 21 else 0.0
            if k in (60, 130):          # collections
                fill = 3.0
            fill = min(fill, 100.0)
            truth.append((b.sim_time(), fill))
            await wake_ok(b, dist=dist_for(fill), temp=14.0, noise_m=0.006, false_p=0.1, timeout_p=0.05)
        await gp.down()
        return gp.gw, b, truth

    gw, b, truth = asyncio.run(main())
    st = b.state()
    assert st["tot_wakes"] == 168 and b.outbox_len() == 0
    fills = gw.series("fill")
    assert len(fills) >= 20
    # every reported level matches the true level at that time (+-2 %)
    for t, v in fills:
        true = min(truth, key=lambda x: abs(x[0] - t))[1]
        assert abs(v - true) <= 2, (t, v, true)
    ev = [(n, v) for ep, n, t, v in gw.rows if n.startswith("ev:")]
    assert ev.count(("ev:emptied", True)) == 2, ev
    assert ev.count(("ev:full", True)) >= 2 and ev.count(("ev:full", False)) == 2, ev
    # a transmission only on event/change/heartbeat: far fewer than wakes
    assert 20 <= st["tot_tx"] <= 90, st["tot_tx"]
    hb = gw.series("awake_ms")
    assert len(hb) >= 7 * 4 - 1, len(hb)
    # heartbeats carry the firmware's accounting: > boot time per wake, radio only when sending
    wakes = [v for t, v in gw.series("wakes")]
    for (t, awake), w in list(zip(hb, wakes))[1:]:
        assert w >= 1 and awake >= w * 270, (awake, w)
    assert all(v == 0 for t, v in gw.series("dropped"))
    # registered once in queue mode, then updates only
    assert len(gw.regs) == 1 and gw.regs[0]["b"] == "UQ" and gw.regs[0]["et"] == "eclor.bin"
    assert gw.updates >= st["tot_tx"] - 2
    # no reading delivered twice
    keys = [(n, t) for ep, n, t, v in gw.rows]
    assert len(keys) == len(set(keys))


def test_gateway_down_two_days_then_every_reading_once(fw, tmp_path):
    """Gateway away for two days: readings are queued in flash, retried with
    back-off (not at every wake), and when it is back every queued reading
    arrives exactly once, in few messages."""
    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw,
                        settings=dict(FAST, measure_s=1800, heartbeat_s=3 * 3600, step_pct=5))
        fill = 10.0
        for k in range(4):
            await wake_ok(b, dist=dist_for(fill))
        posts_before = gp.gw.posts
        rows_before = len(gp.gw.rows)
        await gp.down()
        tx0 = b.state()["tot_tx"]
        for k in range(2 * 48):
            fill = min(95.0, fill + 1.0)
            await wake_ok(b, dist=dist_for(fill))
        st_down = b.state()
        queued = b.outbox_len()
        await gp.up()
        for k in range(3):
            await wake_ok(b, dist=dist_for(fill))
        await gp.down()
        return gp.gw, b, st_down, queued, tx0, posts_before, rows_before

    gw, b, st_down, queued, tx0, posts_before, rows_before = asyncio.run(main())
    attempts = st_down["tot_tx"] - tx0
    assert st_down["fails"] >= 5 and st_down["next_try"] > 0
    # back-off: far fewer attempts than the 96 wakes (events may still try at once)
    assert 4 <= attempts <= 25, attempts
    assert queued >= 17, queued            # step 5 % over ~85 % plus heartbeats and events
    st = b.state()
    assert b.outbox_len() == 0 and st["fails"] == 0
    new = gw.rows[rows_before:]
    times = sorted(set(t for ep, n, t, v in new if n == "status"))
    assert len(times) >= queued            # every queued pack arrived (plus the later ones)
    keys = [(n, t) for ep, n, t, v in gw.rows]
    assert len(keys) == len(set(keys)), "a reading was delivered twice"
    # oldest first and in few messages: about 1 KB per POST
    assert gw.posts - posts_before <= 3 + queued // 4, (gw.posts - posts_before, queued)
    fills = [v for t, v in sorted((t, v) for ep, n, t, v in new if n == "fill")]
    assert fills == sorted(fills)           # the bin only filled: order kept
    assert all(v == 0 for t, v in gw.series("dropped"))


def test_outbox_bound_drops_oldest_and_reports_it(fw, tmp_path):
    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw,
                        settings=dict(FAST, measure_s=900, heartbeat_s=900, outbox=8, backoff_s=86400,
                                      backoff_max_s=86400))
        await wake_ok(b, dist=dist_for(10))
        await gp.down()
        for k in range(12):                   # every wake queues a heartbeat
            await wake_ok(b, dist=dist_for(10))
        assert b.outbox_len() == 8
        await gp.up()
        gp.gw.pending[EP] = [{"id": "r1", "a": "report"}]
        b.inputs["bin"]["tilt_wake"] = 1      # an event: sends at once despite the back-off
        await wake_ok(b, dist=dist_for(10))
        await gp.down()
        return gp.gw, b

    gw, b = asyncio.run(main())
    dropped = [v for t, v in gw.series("dropped")]
    assert max(dropped) >= 4, dropped
    assert b.outbox_len() == 0
    assert any(r["id"] == "r1" and r["s"] == "done" for r in gw.results)


def test_commands_applied_in_next_wake_invalid_refused_old_kept(fw, tmp_path):
    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw, settings=dict(FAST, measure_s=900))
        await wake_ok(b, dist=dist_for(50))
        # operator commands wait at the gateway while the bin sleeps
        gp.gw.pending[EP] = [
            {"id": "c1", "a": "thresholds", "p": {"full_pct": 70}},
            {"id": "c2", "a": "geometry", "p": {"depth_m": 0}},
            {"id": "c3", "a": "intervals", "p": {"bogus": 1}},
            {"id": "c4", "a": "intervals", "p": {"measure_s": 1200, "step_pct": 5}},
            {"id": "c5", "a": "selfdestruct"},
        ]
        t1 = b.sim_time()
        await wake_ok(b, dist=dist_for(72), tilt_wake=1)   # 72 %: not full at the default 80 %
        res = {r["id"]: r for r in gp.gw.results}
        cfg1 = b.config()
        t2 = b.sim_time()
        await wake_ok(b, dist=dist_for(72), tilt_wake=0)
        # the same command id again (lost answer): answered, not applied twice
        gp.gw.pending[EP] = [{"id": "c6", "a": "thresholds", "p": {"full_pct": 75}},
                             {"id": "c1", "a": "thresholds", "p": {"full_pct": 70}}]
        await wake_ok(b, dist=dist_for(40))
        await gp.down()
        return gp.gw, b, res, cfg1, t1, t2

    gw, b, res, cfg1, t1, t2 = asyncio.run(main())
    assert res["c1"]["s"] == "done"
    assert res["c2"]["s"] == "failed" and "depth_m" in res["c2"]["r"], res["c2"]
    assert res["c3"]["s"] == "failed" and "bogus" in res["c3"]["r"], res["c3"]
    assert res["c4"]["s"] == "done"
    assert res["c5"]["s"] == "failed" and "unknown action" in res["c5"]["r"]
    assert cfg1["bin"]["full_pct"] == 70 and cfg1["bin"]["measure_s"] == 1200
    assert "depth_m" not in cfg1["bin"] and "bogus" not in cfg1["bin"]   # previous settings kept
    # the new interval is the sleep of the next wake
    assert 1195 <= t2 - t1 <= 1201, (t1, t2)
    # full at 72 % now that the threshold is 70 %: reported by the same wake
    assert ("ev:full", True) in [(n, v) for ep, n, t, v in gw.rows]
    later = gw.results[5:]
    assert [r["id"] for r in later] == ["c6", "c1"] and later[1]["s"] == "done"
    assert b.config()["bin"]["full_pct"] == 75     # c1 was not applied again


def test_json_commands_and_report_without_duplicates(fw, tmp_path):
    """Commands in JSON (ct 50) are accepted too; a `report` while this
    wake's pack is already queued sends it once, not twice."""
    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw, settings=dict(FAST, measure_s=900))
        await wake_ok(b, dist=dist_for(30))
        gp.gw.pending_ct = 50
        gp.gw.pending[EP] = [{"id": "j1", "a": "report"}, {"id": "j2", "a": "intervals", "p": {"step_pct": 20}}]
        await wake_ok(b, dist=dist_for(45))          # a change: queued, then the report
        await gp.down()
        return gp.gw, b

    gw, b = asyncio.run(main())
    res = {r["id"]: r for r in gw.results}
    assert res["j1"]["s"] == "done" and res["j2"]["s"] == "done", res
    assert b.config()["bin"]["step_pct"] == 20
    keys = [(n, t) for ep, n, t, v in gw.rows]
    assert len(keys) == len(set(keys)), keys


def test_gateway_busy_503_keeps_readings_for_later(fw, tmp_path):
    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw, settings=dict(FAST, measure_s=900, backoff_s=600))
        await wake_ok(b, dist=dist_for(20))
        gp.gw.unavailable = 1
        await wake_ok(b, dist=dist_for(40))          # a change, answered 5.03 Max-Age 60
        st_busy = b.state()
        queued = b.outbox_len()
        await wake_ok(b, dist=dist_for(40))          # retry on the next wake
        await gp.down()
        return gp.gw, b, st_busy, queued

    gw, b, st_busy, queued = asyncio.run(main())
    assert st_busy["fails"] == 1 and st_busy["err"] == "max-age 60" and queued == 1, st_busy
    assert b.outbox_len() == 0 and b.state()["fails"] == 0
    fills = [v for t, v in gw.series("fill")]
    assert fills == [20, 40], fills


class ForgetfulGateway(be.BinGateway):
    """Answers the next `forget` /dp with 4.04 after dropping the sender's
    registration, as a gateway whose data was reset or which sees the bin
    behind a new NAT binding does."""

    def __init__(self):
        super().__init__()
        self.forget = 0
        self.nf = 0

    async def render(self, request):
        if request.opt.uri_path == ("dp",) and self.forget:
            ep = self._sender(request)
            if ep is not None:
                self.forget -= 1
                self.nf += 1
                rid = self.eps.pop(ep)[0]
                self.by_id.pop(rid, None)
                return be.aiocoap.Message(code=be.aiocoap.NOT_FOUND)
        return await super().render(request)


def test_dp_not_found_reregisters_and_resends_in_the_same_wake(fw, tmp_path):
    """A 4.04 to /dp (the gateway has no registration for this address) is
    not a refusal: the bin registers again and resends the same packs in the
    same wake; nothing dropped, nothing left queued."""
    async def main():
        gp = be.GatewayProcess(ForgetfulGateway())
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw, settings=dict(FAST, measure_s=900))
        await wake_ok(b, dist=dist_for(20))
        regs = len(gp.gw.regs)
        gp.gw.forget = 1
        await wake_ok(b, dist=dist_for(50))          # a change: transmitted, 4.04 once
        await gp.down()
        return gp.gw, b, regs

    gw, b, regs = asyncio.run(main())
    st = b.state()
    assert gw.nf == 1
    assert len(gw.regs) == regs + 1, gw.regs          # registered again in that wake
    assert b.outbox_len() == 0 and st["fails"] == 0, st
    assert "refused" not in str(st.get("err")), st
    assert [v for t, v in gw.series("dropped")] in ([], [0]), gw.rows
    fills = [v for t, v in gw.series("fill")]
    assert fills == [20, 50], fills
