"""Lamp firmware footprint: flash (.mpy bytes) and heap.

    python bench/lamp_footprint.py [--speed 10000] [--lo 48] [--hi 320] [--frozen | --romfs]

mpy_bytes       the whole lamp firmware as it ships (mpy-cross -march=xtensawin):
                boot frame, CoAP stack, dev services, fmt, common + lamp HAL,
                lamp role (the bin role and its HAL excluded)
min_heap_bytes  smallest `micropython -X heapsize=` (4 KB resolution, by
                bisection, then confirmed: that size passes again and so do
                the two sizes above it, else the next size up is tried -- a
                lucky pass at the edge does not count, as in the CoAP and bin
                benches) at which a simulated full night runs from the .mpy
                files without MemoryError (in its output or log) and with
                every command applied: boot via main.py -> app.py ->
                lamp.app, time from simulated NTP, registration at a real
                gateway (`eclor gateway` on 127.0.0.1, which also observes
                lamp/state), reports every 15 simulated minutes, and commands
                through the gateway's HTTP API (level, calendar, lamp_type,
                report, resume) during the night
peak_heap_bytes the largest live heap seen in that run (gc.collect() then
                gc.mem_alloc(), sampled every 50 ms) at the largest heap

MICROPYTHON=/path/to/micropython selects another build (tools/mpy.py): a
32-bit unix build has the ESP32's object sizes (4-byte pointers, same object
model) -- see docs/lamp.md for the two-line recipe. --frozen runs a build
with the firmware frozen into it (manifest `freeze("firmware")`, as a custom
ESP32 image would): the .mpy tree is then not on MICROPYPATH. --romfs puts
the same .mpy files in a ROMFS image imported in place (tools/romfs.py: the
image is mapped outside the GC heap like a board's ROMFS partition), what a
ROMFS-enabled firmware with `eclor build --romfs` gives; works with the stock
unix port.

The simulated clock runs `speed` times real time (default 10,000: the night
of 2025-12-21, 15:00 to 08:00 UTC, in ~6 s). Figures are for the 64-bit unix
port, whose objects are larger than an ESP32's (8-byte pointers).
The driver script runs inside the measured process, so its own names count
in the qstr pool like the firmware's: it is written to intern as few as it
can (see DRIVER), and it is compiled into the tree (or the ROMFS image) as
night.mpy, which a one-line driver.py imports, so that its bytecode is loaded
as the firmware's is (night_module; 2026-11-29); the night, its commands and
its checks are the same.
Last line: JSON.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from eclor.tools import mpy  # noqa: E402
from eclor.tools.fleet import gwproc  # noqa: E402

EP = "lamp-bench-0001"
T0 = 1766329200  # 2025-12-21 15:00 UTC
T_END = T0 + 17 * 3600  # 08:00 UTC the next morning, after dawn

# The driver runs in the measured process: its identifiers and its strings
# of <= 10 characters are interned for good like the firmware's names, in the
# qstr pool whose growth (a 7 KB block past ~620 names) the night measures.
# So it reuses names the firmware interns anyway (p, e, t, ctl, cfg, status,
# ...), keeps its strings longer than 10 characters (not interned) and hands
# the result over as a list (host side: RESULT_KEYS): 9 names fewer than the
# driver of 2026-11-28 (FAIL, PEAK, END, NCMDS, RESULT, fail, peak, ctx,
# sampler), the firmware's workload and checks unchanged.
DRIVER = r'''
import sys, gc, asyncio
import hal
p = [0]  # the peak live heap, then what failed


def handler(loop, e):
    # the first failure is often a MemoryError in a full heap: keep the
    # exception as it is (formatted at the end) and do not let printing it
    # raise here, which would end the night with the peak lost
    p.append(e.get("exception"))
    try:
        sys.print_exception(p[-1])
    except MemoryError:
        pass


async def run(t):
    while True:
        gc.collect()
        p[0] = max(p[0], gc.mem_alloc())
        await asyncio.sleep_ms(50)


async def main():
    asyncio.get_event_loop().set_exception_handler(handler)
    import app
    from dev import config
    app.cfg = cfg = config.load()
    # as app.main() does after the boot validation: the config schema is
    # forgotten (the lamp loads it again with a config change)
    config = None
    sys.modules.pop("dev.config", None)
    sys.modules["dev"].__dict__.pop("config", None)
    from lamp import app as lamp
    asyncio.create_task(run(50))
    t = asyncio.create_task(lamp.main(cfg))
    while hal.time() < %(end)d and len(p) == 1:
        await asyncio.sleep_ms(50)
    ctl = lamp.current
    e = {}
    try:
        if ctl:
            e = ctl.status()
    except MemoryError as x:  # after a failure the heap may still be full
        p.append(x)
    t.cancel()
    t = None
    gc.collect()
    try:
        for x in open("data/log.txt"):
            if "MemoryError" in x:
                p.append("MemoryError in the log")
                break
    except OSError:
        pass
    # the night's work includes the operator commands: each one applied
    try:
        import json
        t = [r[1].get("s") for r in json.load(open("data/cmds.json"))]  # dev.commands' results
    except (OSError, ValueError):
        t = []
    if t.count("done") < %(ncmds)d:
        p.append("commands %%r" %% t)  # a failed one's reason is in data/cmds.json
    print("BENCH RESULT", [[x if isinstance(x, str) else repr(x) for x in p[1:]], p[0], e.get("queued"), e.get("energy_wh"), e.get("switch_on"),
                           bool(ctl and ctl.net_ok()), ctl.ep.observers() if ctl else 0])

try:
    asyncio.run(main())
except MemoryError as e:  # the night's peak so far and its first failures
    p[1:1] = [e]
    print("BENCH RESULT", [[x if isinstance(x, str) else repr(x) for x in p[1:4]], p[0]])
'''
RESULT_KEYS = ("fail", "peak", "queued", "energy", "switch_on", "registered", "observers")


# Heap after import, by part, in boot order (gc.collect() then gc.mem_alloc()
# deltas; the qstr pool grows in chunks, so a part may carry a chunk for the
# parts before it).
SPLIT = r'''
import gc
gc.collect()
base = gc.mem_alloc()
out = []
for part, mods in %(parts)r:
    for m in mods:
        try:
            __import__(m)
        except ImportError:  # an older tree (ECLOR_FIRMWARE) without it
            pass
    gc.collect()
    a = gc.mem_alloc()
    out.append((part, a - base))
    base = a
print("SPLIT", out)
'''
PARTS = [("boot frame (app, hal, dev.config/log/store, asyncio)", ["app", "hal", "dev.config", "dev.log", "dev.store", "asyncio"]),
         ("dev + fmt (clock, outbox, commands, cbor, senml)", ["dev.clock", "dev.outbox", "dev.commands", "fmt.cbor", "fmt.senml"]),
         ("coap (codec, endpoint, rd, observe, linkformat, block)", ["coap.codec", "coap.endpoint", "coap.rd", "coap.observe", "coap.linkformat", "coap.block"]),
         ("lamp role (lamp/*, hal.lamp_sim; resident)", ["lamp", "lamp.tz", "lamp.schedule", "lamp.dimmer", "lamp.faults", "lamp.energy", "hal.lamp_sim", "lamp.control", "lamp.resources", "lamp.app"]),
         # loaded for a call and dropped (lamp.use): here all held at once
         # (dev.clock, dev.commands, fmt.cbor, fmt.senml of the group above
         # are loaded on use by the lamp too since 2026-11-29; kept in that
         # group so that the parts compare with earlier runs)
         ("on use (lamp.setup, astro, calcheck, state, admin, requests, settings, cmd: dropped after)", ["lamp.setup", "lamp.astro", "lamp.calcheck", "lamp.state", "lamp.admin", "lamp.requests", "lamp.settings", "lamp.cmd"])]


def on_flash(path, d, script):
    """(argv, MICROPYPATH dirs) running script (in d, the run's cwd). With a
    .mpy tree (path = [tree]) the tree is copied into d and the script runs
    with -m from there (sys.path ""), as on the board: each module interns
    its board path ("lamp/control.mpy") as __file__, not the host's
    ~40-character temp path, a name the board does not have (~40 modules in a
    night: ~1 KB of qstrs; the same as bench/coap_footprint.py)."""
    if not path:  # frozen or ROMFS: the modules are not files here
        return [str(d / script)], path
    shutil.copytree(path[0], d, dirs_exist_ok=True)
    return ["-m", Path(script).stem], [""]


def split(path, tmp, rom=None):
    d = Path(tempfile.mkdtemp(dir=tmp))
    (d / "split.py").write_text(SPLIT % {"parts": PARTS})
    argv, dirs = on_flash(path, d, "split.py")
    p = mpy.run(argv, dirs, heapsize=512 * 1024, cwd=d, timeout=60, romfs=rom)
    for line in p.stdout.splitlines():
        if line.startswith("SPLIT "):
            import ast
            return ast.literal_eval(line[6:])
    raise SystemExit("split failed: " + p.stdout + p.stderr)


NIGHT = "night"  # the driver's module name in the tree (night.mpy)


def night_module(fw):
    """The driver, compiled into the .mpy tree as night.mpy, which the run's
    script (driver.py) only imports: as the firmware's modules, its bytecode
    then comes from the .mpy file (from the ROMFS image in place, with
    --romfs) and its local names are not interned, instead of being compiled
    from source inside the measured process (~1.1 KB of bytecode held all
    night, a compile's transient at start). The apparatus, not the night:
    the driver's code, the night and its checks are the same."""
    src = Path(fw) / (NIGHT + ".py")
    src.write_text(DRIVER % {"end": T_END, "ncmds": len(COMMANDS)})
    subprocess.run([mpy.mpy_cross_path(), "-march=xtensawin", "-s", NIGHT, "-o", str(src.with_suffix(".mpy")),
                    str(src)], check=True)
    src.unlink()


def lamp_files(fw):
    out = []
    for p in sorted(Path(fw).rglob("*")):
        rel = p.relative_to(fw).as_posix()
        if p.is_file() and (p.suffix == ".mpy" or rel == "main.py") and not (
                rel.startswith("waste/") or rel.startswith("hal/bin_") or rel == NIGHT + ".mpy"):
            out.append(p)
    return out


COMMANDS = [("level", {"level": 55, "duration": 600}),
            ("calendar", {"calendar": {"id": "bench", "default": "pn", "programs": {"pn": [
                {"at": "sunset", "level": 100}, {"at": "22:00", "level": 40},
                {"at": "05:30", "level": 100}, {"at": "sunrise", "level": 0}]}}}),
            ("lamp_type", {"wattage": 45, "tolerance": 0.15}), ("report", {}), ("resume", {})]


def commands(api, stop):
    seq = COMMANDS
    i = 0
    while not stop.is_set() and i < len(seq):
        a, p = seq[i]
        try:
            api.post("/api/devices/%s/commands" % EP, {"action": a, "params": p, "ttl": 30, "wait": 5}, timeout=10)
            i += 1
        except Exception:
            pass  # not registered yet: try again
        stop.wait(0.3)
    return i


def run_once(path, gw, heap, speed, tmp, rom=None):
    flash = Path(tempfile.mkdtemp(dir=tmp))
    cfg = {"ep": EP, "role": "lamp", "gateway": {"host": "127.0.0.1", "port": gw.coap_port},
           "lat": 49.47, "lon": 5.93, "report_s": 900, "lt": 3600, "wdt_ms": 0,
           "lamp": {"port": 0, "tick_ms": 20}}
    (flash / "config.json").write_text(json.dumps(cfg))
    (flash / "secrets.json").write_text(json.dumps({"ssid": "sim", "psk": "sim"}))
    if path or rom:  # the driver is night.mpy in the tree or the image (night_module)
        (flash / "driver.py").write_text("import %s\n" % NIGHT)
    else:  # --frozen: no tree to put it in
        (flash / "driver.py").write_text(DRIVER % {"end": T_END, "ncmds": len(COMMANDS)})
    stop = threading.Event()
    th = threading.Thread(target=commands, args=(gw.api, stop), daemon=True)
    th.start()
    try:
        argv, dirs = on_flash(path, flash, "driver.py")
        proc = mpy.run(argv, dirs, heapsize=heap, cwd=flash, timeout=60,
                       env={"ECLOR_SIM_SPEED": str(speed), "ECLOR_SIM_TIME": str(T0)}, romfs=rom)
    except subprocess.TimeoutExpired:  # GC thrashing on a heap at the edge: too small
        return False, {"fail": ["timeout (GC thrashing)"]}, None
    finally:
        stop.set()
        th.join(5)
    res = None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH RESULT "):
            import ast
            res = dict(zip(RESULT_KEYS, ast.literal_eval(line[13:])))
    if res is not None and "MemoryError" in proc.stdout:  # e.g. a handler's, answered 5.00
        res["fail"].append("MemoryError in the output")
    ok = bool(res) and not res["fail"] and proc.returncode == 0
    return ok, res, proc


CONFIRM = 2  # 4 KB steps above the bisection's result that must pass too


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", type=float, default=10000)
    ap.add_argument("--lo", type=int, default=48, help="KB")
    ap.add_argument("--hi", type=int, default=320, help="KB")
    ap.add_argument("--frozen", action="store_true", help="the micropython build has the firmware frozen in")
    ap.add_argument("--romfs", action="store_true", help="the .mpy files in a ROMFS image, imported in place")
    args = ap.parse_args()
    if args.frozen and args.romfs:
        ap.error("--frozen and --romfs exclude each other")
    with tempfile.TemporaryDirectory() as tmp:
        fw = Path(tmp) / "fw"
        mpy.compile_tree(fw)
        night_module(fw)
        files = lamp_files(fw)
        mpy_bytes = sum(p.stat().st_size for p in files)
        lamp_only = sum(p.stat().st_size for p in files if p.relative_to(fw).as_posix().startswith(("lamp/", "hal/lamp_")))
        print("mpy: %d bytes in %d files (lamp role and its HAL: %d)" % (mpy_bytes, len(files), lamp_only))
        path = [] if args.frozen or args.romfs else [fw]
        rom = None
        if args.romfs:
            from eclor.tools import romfs
            rom = Path(tmp) / "fw.romfs"
            rom.write_bytes(romfs.tree_image(fw))
        parts = split(path, tmp, rom)
        for name, b in parts:
            print("heap after import %6d B  %s" % (b, name))
        with gwproc.Gateway(Path(tmp) / "gw") as gw:
            hi = args.hi * 1024
            ok, res, proc = run_once(path, gw, hi, args.speed, tmp, rom)
            if not ok:
                print(proc.stdout[-3000:], proc.stderr[-2000:])
                raise SystemExit("the night does not run even with %d KB" % args.hi)
            peak = res["peak"]
            print("at %d KB: %s" % (args.hi, res))
            lo = args.lo * 1024  # assumed failing
            while hi - lo > 4096:
                mid = (lo + hi) // 2 // 4096 * 4096
                ok, r, _ = run_once(path, gw, mid, args.speed, tmp, rom)
                print("heap %3d KB: %s %s" % (mid // 1024, "ok  " if ok else "FAIL", (r or {}).get("fail") or ""))
                if ok:
                    hi = mid
                else:
                    lo = mid
            # Near the edge a pass is not monotonic (the gateway's timing,
            # fragmentation): the figure must pass again, and so must the
            # CONFIRM sizes above it, else the next size up is tried.
            while True:
                for i in range(CONFIRM + 1):
                    ok, r, _ = run_once(path, gw, hi + i * 4096, args.speed, tmp, rom)
                    print("heap %3d KB: %s %s (confirming)" % ((hi + i * 4096) // 1024, "ok  " if ok else "FAIL",
                                                               (r or {}).get("fail") or ""))
                    if not ok:
                        break
                if ok:
                    break
                hi += 4096
    print(json.dumps({"mpy_bytes": mpy_bytes, "lamp_role_mpy_bytes": lamp_only, "min_heap_bytes": hi,
                      "peak_heap_bytes": peak, "target_min_heap_bytes": 65536,
                      "import_heap_bytes": {n.split(" (")[0]: b for n, b in parts}, "speed": args.speed,
                      "micropython": mpy.micropython_path(), "frozen": args.frozen, "romfs": args.romfs}))


if __name__ == "__main__":
    main()
