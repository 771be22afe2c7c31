"""Energy of a waste-bin sensor over a simulated month.

Runs the real bin firmware (.mpy, -march=xtensawin, ESP32-sized heap), one
unix-MicroPython process per wake, in one flash directory whose state
(data/, .sim_rtc.json) carries over from wake to wake exactly as flash and
RTC do across deep sleep. A small aiocoap server on 127.0.0.1 plays the
gateway (RD, /dp, /cr). The bin's sensor inputs follow a realistic fill
pattern: waste comes in during the day at a rate that varies from day to
day, collection on Mondays and Thursdays at 07:00 when the bin is 40 % full
or more, echo noise, false echoes and timeouts, a daily temperature swing.

The figures come from the firmware's own accounting (data/bin.json:
tot_awake, tot_radio, tot_wakes, tot_tx, tot_bytes), i.e. the simulated
clock advanced by documented durations (docs/bin.md), not host time.

Power model (docs/bin.md): deep sleep 10 uA; awake CPU 40 mA; radio on
110 mA average (on top of nothing: the radio figure includes the CPU); an
18650 cell of 3000 mAh derated to 70 % (self-discharge, cold, cut-off).

    python bench/bin_energy.py [--days 30] [--per-hour 4]
    python bench/bin_energy.py --heap-only          # only the two min heaps (seconds)
    python bench/bin_energy.py --scan 47104 51200   # pass/fail per 256 B: compare trees side by side

Last line: JSON with wakes_per_day, tx_per_day, awake_ms_per_day,
radio_ms_per_day, bytes_per_day, battery_years, min_heap_bytes (and
min_heap_bytes_romfs: the same wake with the .mpy files in a ROMFS image,
imported in place as on a ROMFS-enabled firmware, tools/romfs.py).
"""
import argparse
import asyncio
import errno
import json
import math
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiocoap
import aiocoap.resource
import cbor2

from eclor.tools import mpy

SLEEP_UA = 10.0
AWAKE_MA = 40.0
RADIO_MA = 110.0
CELL_MAH = 3000.0
DERATE = 0.70
T0 = 1780000000  # 2026-05-28, a Thursday; any fixed start keeps runs comparable
# Heap of the simulated wakes: the ESP32-sized heap of the test harness.
# min_heap() measures how close a transmitting wake comes to it.
WAKE_HEAP = mpy.ESP32_HEAP
EXIT_DEEPSLEEP = 3
EXIT_REBOOT = 4


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BinGateway(aiocoap.resource.Resource):
    """The gateway side of the wire contract for queue-mode bins: RD, /dp
    (commands handed over in the answer), /cr. Keeps every SenML record it
    acknowledged, resolved to (ep, name, time, value)."""

    def __init__(self):
        super().__init__()
        self.eps = {}          # ep -> (rd id, remote hostinfo, query dict)
        self.by_id = {}
        self.rows = []         # (ep, name, t, value), in arrival order
        self.posts = 0         # /dp requests acknowledged
        self.regs = []         # query dicts of every POST /rd
        self.updates = 0
        self.pending = {}      # ep -> [command maps]
        self.results = []      # result maps from /cr
        self.unavailable = 0   # answer the next n /dp with 5.03 Max-Age 60
        self.pending_ct = 60   # content-format of the commands handed over (60 CBOR, 50 JSON)

    async def needs_blockwise_assembly(self, request):
        return True

    def _sender(self, request):
        for ep, (rid, remote, _) in self.eps.items():
            if remote == request.remote.hostinfo:
                return ep
        return None

    async def render(self, request):
        path = request.opt.uri_path
        if path == ("rd",):
            q = dict(x.split("=", 1) for x in request.opt.uri_query)
            ep = q["ep"]
            rid = self.eps[ep][0] if ep in self.eps else str(len(self.eps) + 1)
            self.eps[ep] = (rid, request.remote.hostinfo, q)
            self.by_id[rid] = ep
            self.regs.append(q)
            return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", rid))
        if len(path) == 2 and path[0] == "rd":
            ep = self.by_id.get(path[1])
            if ep is None:
                return aiocoap.Message(code=aiocoap.NOT_FOUND)
            rid, _, q = self.eps[ep]
            self.eps[ep] = (rid, request.remote.hostinfo, q)
            self.updates += 1
            return aiocoap.Message(code=aiocoap.CHANGED)
        ep = self._sender(request)
        if ep is None:
            return aiocoap.Message(code=aiocoap.NOT_FOUND)
        if path == ("dp",):
            if self.unavailable:
                self.unavailable -= 1
                m = aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE)
                m.opt.max_age = 60
                return m
            bn, bt = "", 0
            for r in cbor2.loads(request.payload):
                bn = r.get(-2, bn)
                bt = r.get(-3, bt)
                assert bn == "urn:dev:ep:%s:" % ep, bn
                v = r.get(2, r.get(3, r.get(4)))
                self.rows.append((ep, r[0], bt + r.get(6, 0), v))
            self.posts += 1
            pending = self.pending.pop(ep, [])
            if pending and self.pending_ct == 50:
                return aiocoap.Message(code=aiocoap.CHANGED, payload=json.dumps(pending).encode(),
                                       content_format=50)
            if pending:
                return aiocoap.Message(code=aiocoap.CHANGED, payload=cbor2.dumps(pending), content_format=60)
            return aiocoap.Message(code=aiocoap.CHANGED)
        if path == ("cr",):
            self.results.extend(cbor2.loads(request.payload))
            return aiocoap.Message(code=aiocoap.CHANGED)
        return aiocoap.Message(code=aiocoap.NOT_FOUND)

    def series(self, name):
        return [(t, v) for ep, n, t, v in self.rows if n == name]


class GatewayProcess:
    """A BinGateway served on a fixed port, which can go down and come back."""

    def __init__(self, gw=None, port=None):
        self.gw = gw or BinGateway()
        self.auto = port is None
        self.port = port or free_udp_port()
        self.ctx = None
        self.started = False

    async def up(self):
        """Serve; a port picked free may be taken by someone else before the
        bind (free_udp_port closes its probe): then, while no bin knows the
        port yet, take another; later (a restart) wait for it a moment."""
        for attempt in range(5):
            if self.ctx is not None:
                return
            try:
                self.ctx = await aiocoap.Context.create_server_context(self.gw, bind=("127.0.0.1", self.port))
                self.started = True
            except OSError as e:
                if e.errno != errno.EADDRINUSE or attempt == 4:
                    raise
                if self.auto and not self.started:
                    self.port = free_udp_port()
                else:
                    await asyncio.sleep(0.2)

    async def down(self):
        if self.ctx is not None:
            await self.ctx.shutdown()
            self.ctx = None


def firmware_tree(kind="mpy"):
    """The firmware as shipped (.mpy) in a temp dir, or the source tree."""
    if kind == "src":
        return mpy.firmware_dir()
    d = Path(tempfile.mkdtemp(prefix="eclor-fw-"))
    mpy.compile_tree(d)
    return d


class BinBoard:
    """One simulated bin: a flash directory and its wakes as processes."""

    def __init__(self, flash, port, firmware, ep="bin-test-0001", settings=None, heapsize=WAKE_HEAP,
                 t0=T0, extra_cfg=None, romfs=None):
        self.flash = Path(flash)
        self.romfs = romfs      # a ROMFS image of the modules (tools/romfs.py), imported in place
        self.flash.mkdir(parents=True, exist_ok=True)
        self.fw = firmware
        if not romfs:
            # the firmware in the flash root, as on the board (symlinks to the
            # tree): modules import by the board's relative paths, so each one
            # interns "waste/cycle.mpy" as its __file__ as on the board, not a
            # ~40-character host temp path (~0.7 KB of names in a wake)
            for p in Path(firmware).iterdir():
                q = self.flash / p.name
                if not q.exists() and not q.is_symlink():
                    q.symlink_to(p.resolve())
        self.heapsize = heapsize
        self.t0 = t0
        cfg = {"ep": ep, "role": "bin", "gateway": {"host": "127.0.0.1", "port": port},
               "bin": dict(settings or {})}
        cfg.update(extra_cfg or {})
        (self.flash / "config.json").write_text(json.dumps(cfg))
        (self.flash / "secrets.json").write_text(json.dumps({"ssid": "eclor", "psk": "test"}))
        self.inputs = {"bin": {"dist": 1.2, "temp": 12.0, "batt": 3.9, "seed": 1}}
        self.wakes = 0
        self.last = None

    def state(self):
        p = self.flash / "data" / "bin.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def config(self):
        return json.loads((self.flash / "config.json").read_text())

    def sim_time(self):
        """The simulated world's UTC where the last wake left it."""
        try:
            return json.loads((self.flash / ".sim_rtc.json").read_text())["utc"]
        except (OSError, ValueError, KeyError):   # absent, or cut while written
            return self.t0

    def outbox_len(self):
        d = self.flash / "data" / "outbox"
        return len([p for p in d.iterdir() if p.name.isdigit()]) if d.exists() else 0

    async def wake(self, kill_after_ms=None, **bin_inputs):
        """Run one wake (a fresh MicroPython process); returns (rc, output).
        kill_after_ms: SIGKILL it then (a power cut), if still running."""
        self.inputs["bin"].update(bin_inputs)
        self.inputs["bin"]["seed"] = self.wakes + 1
        (self.flash / "sim.json").write_text(json.dumps(self.inputs))
        # without ROMFS: "" = the current directory, the flash root (see __init__)
        env = mpy.micropython_env([] if self.romfs else [""],
                                  {"ECLOR_SIM_FILE": "sim.json", "ECLOR_SIM_TIME": str(self.t0)})
        # -m: main.py found on that path, sys.path[0] stays "" (a script's
        # real directory would go there)
        main = [str(Path(self.fw) / "main.py")] if self.romfs else ["-m", "main"]
        proc = await asyncio.create_subprocess_exec(
            *mpy.micropython_cmd(main, self.heapsize, romfs=self.romfs),
            cwd=str(self.flash), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        if kill_after_ms is not None:
            try:
                await asyncio.wait_for(proc.wait(), kill_after_ms / 1000)
            except asyncio.TimeoutError:
                try:
                    proc.kill()
                except ProcessLookupError:   # it ended just as the cut came
                    pass
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        self.wakes += 1
        self.last = out.decode(errors="replace")
        return proc.returncode, self.last


def fill_model(days, per_hour, seed=7):
    """Per wake: (true fill %, temperature degC) with day-to-day variation."""
    rng = random.Random(seed)
    n = int(days * 24 * per_hour)
    fill = 5.0
    rate = 1.0
    out = []
    for k in range(n):
        t = T0 + k * 3600 / per_hour
        tm = time.gmtime(t)
        hour = tm.tm_hour + tm.tm_min / 60
        if tm.tm_hour == 0 and tm.tm_min < 60 / per_hour:
            rate = rng.uniform(0.4, 1.6)           # %/h during the day, varies by day
        if 7 <= hour < 21:
            fill += rate / per_hour * rng.uniform(0.5, 1.5)
        # collection Monday (0) and Thursday (3) at 07:00 when worth it
        if tm.tm_wday in (0, 3) and tm.tm_hour == 7 and tm.tm_min < 60 / per_hour and fill >= 40:
            fill = rng.uniform(1, 4)
        fill = min(fill, 100.0)
        temp = 11 + 7 * math.sin((hour - 9) / 24 * 2 * math.pi)
        out.append((fill, round(temp, 1)))
    return out


def project(per_day_awake_ms, per_day_radio_ms):
    """Battery years from the power model."""
    day_ms = 86400000.0
    radio_h = per_day_radio_ms / 3.6e6
    cpu_h = max(0.0, per_day_awake_ms - per_day_radio_ms) / 3.6e6
    sleep_h = max(0.0, day_ms - per_day_awake_ms) / 3.6e6
    mah_day = cpu_h * AWAKE_MA + radio_h * RADIO_MA + sleep_h * SLEEP_UA / 1000
    return CELL_MAH * DERATE / mah_day / 365.25, mah_day


STATIC_IP = ["192.0.2.50", "255.255.255.0", "192.0.2.1", "192.0.2.1"]
DHCP_MS = 1700   # hal/sim.py WIFI_DHCP_MS: what each window costs without a static IP


async def month(days, per_hour, fw, flash, static_ip=True):
    gp = GatewayProcess()
    await gp.up()
    # the recommended deployment (docs/bin.md): a static IP, so a wake
    # window skips DHCP (1.7 s of radio); the saved channel/BSSID skips the scan
    board = BinBoard(flash, gp.port, fw, settings={"measure_s": int(3600 / per_hour)},
                     extra_cfg={"ip": STATIC_IP} if static_ip else None)
    model = fill_model(days, per_hour)
    t_start = time.monotonic()
    for fill, temp in model:
        dist = 0.30 + 1.0 * (1 - fill / 100.0)
        rc, out = await board.wake(dist=dist, temp=temp, noise_m=0.005, false_p=0.05, timeout_p=0.03,
                                   batt=3.9)
        if rc not in (EXIT_DEEPSLEEP, EXIT_REBOOT):
            raise SystemExit("wake %d failed (rc %s):\n%s" % (board.wakes, rc, out))
    wall = time.monotonic() - t_start
    await gp.down()
    st = board.state()
    return st, gp.gw, wall, board


CONFIRM = 2  # steps above the bisection's result that must pass too


async def _wake_passes(gp, fw, heap, romfs=None):
    """One wake with a transmission and a command at -X heapsize heap."""
    with tempfile.TemporaryDirectory() as d:
        b = BinBoard(d, gp.port, fw, ep="bin-heap-%d" % heap, heapsize=heap,
                     settings={"ack_timeout_ms": 200, "max_retransmit": 1}, romfs=romfs)
        gp.gw.pending[b.config()["ep"]] = [{"id": "c-heap", "a": "intervals", "p": {"step_pct": 15}}]
        gp.gw.results.clear()
        rc, out = await b.wake(dist=0.8)
        st = b.state()
        return (rc == EXIT_DEEPSLEEP and st.get("tot_sent") == 1 and "MemoryError" not in out
                and any(r.get("id") == "c-heap" and r.get("s") == "done" for r in gp.gw.results))


async def min_heap(fw, lo=16 * 1024, hi=100 * 1024, romfs=None):
    """Smallest -X heapsize at which one wake with a transmission (register,
    /dp, a command applied, /cr) completes from .mpy (with romfs: the .mpy
    files imported in place from that ROMFS image), found by bisection in
    1 KB steps, then confirmed: it passes again, and so do the CONFIRM sizes
    above it (else the next size up is tried)."""
    gp = GatewayProcess()
    await gp.up()

    async def ok(heap):
        return await _wake_passes(gp, fw, heap, romfs)

    if not await ok(hi):
        await gp.down()
        return None
    step = 1024
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if await ok(mid):
            hi = mid
        else:
            lo = mid
    # Fragmentation makes "passes" not monotonic near the edge: a heap may
    # pass once by luck with a larger one failing. The figure is the
    # smallest heap that passes again and with the next CONFIRM steps above.
    while not all([await ok(hi + i * step) for i in range(CONFIRM + 1)]):
        hi += step
    await gp.down()
    return hi


async def scan(fw, lo, hi, step=256):
    """Pass (1) or fail (0) of the same wake at every size lo..hi by step:
    how a change moves the edge, compared side by side with another tree
    (ECLOR_FIRMWARE), finer and steadier than one bisection."""
    gp = GatewayProcess()
    await gp.up()
    res = {}
    for heap in range(lo, hi + 1, step):
        res[heap] = int(await _wake_passes(gp, fw, heap))
    await gp.down()
    return res


async def heaps(fw):
    """min_heap_bytes (.mpy on the filesystem, the stock firmware) and the same
    with the modules in a ROMFS image (a ROMFS-enabled firmware)."""
    from eclor.tools import romfs
    heap = await min_heap(fw)
    img = Path(fw) / "firmware.romfs"
    img.write_bytes(romfs.tree_image(fw))
    heap_rom = await min_heap(fw, romfs=img)
    print("smallest heap for a wake with transmission and a command: %s bytes (.mpy), %s bytes (.mpy in ROMFS)"
          % (heap, heap_rom))
    return heap, heap_rom


async def main_async(args):
    fw = firmware_tree("mpy")
    if args.scan:
        res = await scan(fw, args.scan[0], args.scan[1])
        print(" ".join("%d:%d" % kv for kv in res.items()))
        print(json.dumps({"scan": res, "passes": sum(res.values()), "first_pass_of_the_rest":
                          next((h for h in res if all(res[k] for k in res if k >= h)), None)}))
        return res
    if args.heap_only:   # only the min_heap_bytes bisection (seconds, not minutes)
        try:
            heap, heap_rom = await heaps(fw)
        finally:
            shutil.rmtree(fw, ignore_errors=True)
        res = {"min_heap_bytes": heap, "min_heap_bytes_romfs": heap_rom}
        print(json.dumps(res))
        return res
    flash = Path(tempfile.mkdtemp(prefix="eclor-bin-"))
    try:
        st, gw, wall, board = await month(args.days, args.per_hour, fw, flash)
        heap, heap_rom = await heaps(fw)
    finally:
        shutil.rmtree(flash, ignore_errors=True)
        shutil.rmtree(fw, ignore_errors=True)
    days = args.days
    wakes = st.get("tot_wakes", 0) / days
    tx = st.get("tot_tx", 0) / days
    awake = st.get("tot_awake", 0) / days
    radio = st.get("tot_radio", 0) / days
    nbytes = st.get("tot_bytes", 0) / days
    years, mah_day = project(awake, radio)
    fills = gw.series("fill")
    events = [(n, v) for ep, n, t, v in gw.rows if n.startswith("ev:")]
    print("simulated %d days at %d measurements/hour: %d wakes in %.1f s of host time (%.0f ms/wake)"
          % (days, args.per_hour, st.get("tot_wakes", 0), wall, wall * 1000 / max(1, st.get("tot_wakes", 1))))
    print("transmissions %d, packs delivered %d in %d /dp posts, fill readings %d, events %s"
          % (st.get("tot_tx", 0), st.get("tot_sent", 0), gw.posts, len(fills),
             {k: sum(1 for e in events if e[0] == k) for k in sorted(set(e[0] for e in events))}))
    print("per day: awake %.0f ms, radio %.0f ms, %.0f payload bytes, %.3f mAh -> %.1f years on %d mAh x %.0f %%"
          % (awake, radio, nbytes, mah_day, years, CELL_MAH, DERATE * 100))
    y_dhcp, _ = project(awake + tx * DHCP_MS, radio + tx * DHCP_MS)
    print("without a static IP (DHCP in every window, +%d ms radio each): %.1f years" % (DHCP_MS, y_dhcp))
    res = {"wakes_per_day": round(wakes, 1), "tx_per_day": round(tx, 2), "awake_ms_per_day": round(awake),
           "radio_ms_per_day": round(radio), "bytes_per_day": round(nbytes), "battery_years": round(years, 2),
           "min_heap_bytes": heap, "min_heap_bytes_romfs": heap_rom}
    print(json.dumps(res))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--per-hour", type=int, default=4)
    ap.add_argument("--heap-only", action="store_true",
                    help="skip the month: only the smallest heap of a transmitting wake")
    ap.add_argument("--scan", type=int, nargs=2, metavar=("LO", "HI"),
                    help="instead: pass/fail of that wake at every size LO..HI by 256 B")
    args = ap.parse_args(argv)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
