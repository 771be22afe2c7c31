"""Power cuts at random moments of the bin's wakes (SIGKILL of the
MicroPython process, whose flash directory is then used by the next wake):
the flash state stays readable, every pack that reached the outbox is
delivered, and a pack is delivered twice only when a cut fell between the
gateway's 2.04 and the deletion of the pack (at most once per cut)."""
import asyncio
import random
import shutil
import sys
from pathlib import Path

import cbor2
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import bin_energy as be  # noqa: E402


@pytest.fixture(scope="module")
def fw():
    d = be.firmware_tree("mpy")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _outbox_packs(board):
    d = board.flash / "data" / "outbox"
    out = set()
    if d.exists():
        for p in d.iterdir():
            if p.name.isdigit():
                recs = cbor2.loads(p.read_bytes())
                out.add((recs[0][-3], tuple(r[0] for r in recs)))
    return out


def test_power_cuts_lose_nothing_queued(fw, tmp_path):
    rng = random.Random(11)

    async def main():
        gp = be.GatewayProcess()
        await gp.up()
        b = be.BinBoard(tmp_path, gp.port, fw,
                        settings={"ack_timeout_ms": 100, "max_retransmit": 1, "measure_s": 900,
                                  "heartbeat_s": 900, "backoff_s": 60, "backoff_max_s": 60})
        seen = set()
        cuts = 0
        fill = 5
        for k in range(30):
            fill = (fill + 7) % 100
            before = b.sim_time()
            rc, out = await b.wake(kill_after_ms=rng.uniform(5, 120), dist=0.3 + (1 - fill / 100.0))
            seen |= _outbox_packs(b)
            if rc != be.EXIT_DEEPSLEEP:
                cuts += 1
                # the board was off for a while; its RTC is lost, the world's clock is not
                b.t0 = int(before) + 900
            else:
                assert "Traceback" not in out, out
        for k in range(4):                      # power stays on: the backlog drains
            rc, out = await b.wake(dist=0.5)
            assert rc == be.EXIT_DEEPSLEEP and "Traceback" not in out, out
        await gp.down()
        return gp.gw, b, seen, cuts

    gw, b, seen, cuts = asyncio.run(main())
    assert cuts >= 5, cuts                      # the random cuts really hit
    assert b.outbox_len() == 0
    st = b.state()
    assert st["tot_wakes"] >= 4
    got = {}
    for ep, n, t, v in gw.rows:
        got[(n, t)] = got.get((n, t), 0) + 1
    for bt, names in seen:
        for n in names:
            assert (n, bt) in got, ("queued pack never delivered", bt, n)
    dup_packs = {t for (n, t), c in got.items() if c > 1}
    assert len(dup_packs) <= cuts, (dup_packs, cuts)
