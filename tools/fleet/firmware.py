"""A fleet running the REAL firmware under unix MicroPython.

Each device is a directory (its flash: config.json, secrets.json, data/)
and a life of MicroPython processes running firmware/main.py from the .mpy
tree that mpy-cross builds for the ESP32 (the bytes that ship), with an
ESP32-sized heap:
- a lamp is one long process (always on);
- a bin is one process per wake: the firmware deep-sleeps by exiting with
  status 3 after saving its RTC state (hal/sim.py); the supervisor starts
  the next wake when the simulated world reaches the wake time.

One simulated world clock for the whole fleet: UTC = start_utc + real
elapsed x speed. Every process gets ECLOR_SIM_SPEED=speed and, at power-on,
ECLOR_SIM_TIME = the world's UTC, so devices agree with each other.

Simulated inputs (lamp power, presence, light; bin distance, temperature,
tilt, battery) are the JSON file ECLOR_SIM_FILE of each device, written
atomically (tmp + rename) by set_inputs(); the firmware re-reads it when it
changes. That is how the demo fills bins, sets a bin on fire or breaks a lamp.

Several bins per MicroPython process (bins_per_process=N, `eclor sim
--mode firmware --bins-per-process N`): the bins are split into groups of N,
each group one long MicroPython process running tools/fleet/binhost.py,
which runs each due bin's wake in turn -- chdir into its flash dir, fresh
firmware modules, hal.sim.reset(), the real `app.main()`, deep sleep
returning to the host through the hal.sim.on_deepsleep hook (see binhost.py).
Its stdout is split into each bin's console.log by the "@binhost" markers;
the counters (starts, wakes, reboots, crashes) mean the same as with one
process per wake. Default (0): one process per wake, as before.
A host runs one wake at a time, and at the world's speed a wake really
sleeps its simulated physical durations (~1-3 s / speed): bins_wake_speed=0
(`--instant-wakes`) lets them move the wake's clock only, so a wake costs
its CPU time alone (docs/demo.md has the figures).

Several lamps per MicroPython process (lamps_per_process=N, `eclor sim
--mode firmware --lamps-per-process N`): groups of N lamps, each group one
long MicroPython process running tools/fleet/lamphost.py. A lamp is always
on, so the host runs them side by side in one asyncio loop: each lamp has
its own copy of the firmware modules (their globals are its state), its own
socket, and every step of its tasks runs in its context (cwd = its flash
dir, its modules in sys.modules); a reboot or a crash boots it again as a
fresh copy (see lamphost.py). Its stdout lines carry "@lamphost EP", split
into each lamp's console.log. Default (0): one process per lamp; a lamp
process idles in its asyncio loop, so a few dozen fit on a small machine.

Every process is started in its own session (process group) with a parent
death signal, so stopping the fleet -- or the supervisor dying -- leaves
no orphan behind.
"""
import asyncio
import json
import os
import shutil
import signal
import sys
import time
import zlib
from pathlib import Path

from eclor.tools import mpy
from eclor.tools.fleet import gwproc

# An ESP32's ~100 KB of heap as seen by this host's MicroPython (see tools/mpy.py).
device_heap = mpy.device_heap


EXIT_DEEPSLEEP = 3
EXIT_REBOOT = 4


CONTROL_TYPES = {"pwm": "PWM", "dali": "DALI", "1-10V": "1-10V", "switch": "switch"}

# Lighting programs of the communes (TALQ-style calendar, lamp/schedule.py):
# the usual part-night dimming, and the switch-off 01:00-05:00 that some
# communes chose (arrêté du 27/12/2018).
PART_NIGHT = [{"at": "sunset", "level": 100}, {"at": "22:00", "level": 40},
              {"at": "05:30", "level": 100}, {"at": "sunrise", "offset": 10, "level": 0}]
SWITCH_OFF = [{"at": "sunset", "level": 100}, {"at": "23:00", "level": 50}, {"at": "01:00", "level": 0},
              {"at": "05:00", "level": 70}, {"at": "sunrise", "offset": 10, "level": 0}]
OFF_COMMUNES = ("Thil", "Russange", "Rédange", "Errouville", "Bréhain-la-Ville", "Serrouville")


def calendar_for(spec):
    """The calendar a lamp of this commune runs. Installed the operator's
    way, with a `calendar` command through the gateway (the demo does it
    per commune), not by writing the firmware's files behind its back."""
    off = spec["commune"] in OFF_COMMUNES
    return {"id": "%s-%s" % ("extinction" if off else "mi-nuit", spec["commune"].lower()[:20]),
            "default": "night", "programs": {"night": SWITCH_OFF if off else PART_NIGHT}}


def device_config(spec, gateway, report_s=60, lt=300):
    """config.json for one device (the architecture's config format)."""
    cfg = {"ep": spec["ep"], "role": spec["role"],
           "gateway": {"host": gateway[0], "port": gateway[1]},
           "zone": spec["zone"], "commune": spec["commune"], "lat": spec["lat"], "lon": spec["lon"],
           "report_s": report_s, "lt": lt, "wdt_ms": 0}
    if spec["role"] == "lamp":
        lamp = spec.get("lamp", {})
        cfg["lamp"] = {k: lamp[k] for k in ("wattage", "tolerance", "warmup_s", "min_level") if k in lamp}
        if lamp.get("control") in CONTROL_TYPES:
            cfg["lamp"]["type"] = CONTROL_TYPES[lamp["control"]]
    else:
        b = spec.get("bin", {})
        cfg["bin"] = {k: b[k] for k in ("depth_m", "offset_m", "full_pct") if k in b}
    return cfg


def initial_inputs(spec, rng_seed=1):
    """A plausible starting world for one device: a working lamp, a bin a
    quarter to half full."""
    h = zlib.crc32(spec["ep"].encode()) ^ rng_seed
    if spec["role"] == "lamp":
        return {"watts": spec.get("lamp", {}).get("wattage", 40), "lamp": "ok"}
    b = spec.get("bin", {})
    depth, off = b.get("depth_m", 1.0), b.get("offset_m", 0.3)
    fill = 20 + (h % 30)
    return {"bin": {"dist": round(off + depth * (1 - fill / 100.0), 3), "temp": 14.0, "tilt": 0,
                    "batt": 3.95, "noise_m": 0.005, "seed": h % 1000}}


class DeviceProc:
    def __init__(self, spec, path):
        self.spec = spec
        self.ep = spec["ep"]
        self.role = spec["role"]
        self.path = Path(path)
        self.proc = None
        self.starts = 0
        self.wakes = 0
        self.crashes = 0
        self.reboots = 0
        self.last_rc = None
        self.task = None
        self.hosted = False      # woken by a binhost process (bins_per_process)

    @property
    def inputs_file(self):
        return self.path / "inputs.json"

    @property
    def log_file(self):
        return self.path / "console.log"


class FirmwareFleet:
    """Prepare device directories, run and supervise their processes."""

    def __init__(self, specs, gateway, root, speed=60.0, start_utc=None, heapsize=None,
                 report_s=60, lt=300, source=False, on_event=None, bins_per_process=0,
                 bins_wake_speed=None, lamps_per_process=0):
        self.specs = specs
        self.gateway = gateway
        self.root = Path(root)
        self.speed = float(speed)
        self.start_utc = time.time() if start_utc is None else float(start_utc)
        self.heapsize = heapsize or device_heap()
        self.report_s = report_s
        self.lt = lt
        self.source = source
        self.on_event = on_event or (lambda msg: None)
        self.fw = self.root / ("fw-src" if source else "fw")
        self.devices = {}
        self.bins_per_process = int(bins_per_process or 0)
        self.lamps_per_process = int(lamps_per_process or 0)
        self.hosts = []          # [HostProc] when bins_per_process / lamps_per_process
        self.bins_wake_speed = bins_wake_speed   # binhost "wake_speed" (None: speed)
        self._t0 = None
        self._stopping = False

    # -- world clock ------------------------------------------------------
    def world_utc(self):
        if self._t0 is None:
            return self.start_utc
        return self.start_utc + (time.monotonic() - self._t0) * self.speed

    # -- preparation --------------------------------------------------------
    def prepare(self):
        """Compile the firmware once and write every device's flash dir.
        A device dir that already exists keeps its data (a restarted demo
        continues where it was) but gets the current config."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.fw.exists():
            shutil.rmtree(self.fw)
        if self.source:
            shutil.copytree(mpy.firmware_dir(), self.fw, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
        else:
            mpy.compile_tree(self.fw)
        for spec in self.specs:
            d = DeviceProc(spec, self.root / "devices" / spec["ep"])
            (d.path / "data").mkdir(parents=True, exist_ok=True)
            # A new world clock: every device powers on (no saved sleep state).
            for stale in (".sim_rtc.json",):
                if (d.path / stale).exists():
                    (d.path / stale).unlink()
            _write_json(d.path / "config.json", device_config(spec, self.gateway, self.report_s, self.lt))
            _write_json(d.path / "secrets.json", {"ssid": "eclor-sim", "psk": "simulated"})
            if not d.inputs_file.exists():
                _write_json(d.inputs_file, initial_inputs(spec))
            self.devices[spec["ep"]] = d
        return self

    def set_inputs(self, ep, **section):
        """Merge into a device's simulated inputs, e.g. set_inputs(ep, bin={"temp": 85}).
        Written atomically: the firmware reads the old or the new file."""
        d = self.devices[ep]
        try:
            cur = json.loads(d.inputs_file.read_text())
        except (OSError, ValueError):
            cur = {}
        for k, v in section.items():
            if isinstance(v, dict) and isinstance(cur.get(k), dict):
                cur[k] = dict(cur[k], **v)
            else:
                cur[k] = v
        _write_json(d.inputs_file, cur)
        return cur

    def inputs(self, ep):
        return json.loads(self.devices[ep].inputs_file.read_text())

    # -- running ------------------------------------------------------------
    def _env(self, d):
        env = mpy.micropython_env([self.fw], {
            "ECLOR_SIM_SPEED": repr(self.speed),
            "ECLOR_SIM_FILE": str(d.inputs_file),
            "ECLOR_SIM_TIME": "%.3f" % self.world_utc(),
            "ECLOR_SIM_ID": "%012x" % (zlib.crc32(d.ep.encode()) | 0x5E0000000000),
        })
        return env

    async def _spawn(self, d):
        with open(d.log_file, "ab") as log:
            d.proc = await asyncio.create_subprocess_exec(
                *mpy.micropython_cmd([str(self.fw / "main.py")], self.heapsize), cwd=str(d.path),
                env=self._env(d), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=gwproc.child_setup)
        d.starts += 1
        return await d.proc.wait()

    def _wake_delay(self, d):
        """Real seconds until the wake time the sleeping firmware saved."""
        try:
            st = json.loads((d.path / ".sim_rtc.json").read_text())
        except (OSError, ValueError):
            return 1.0
        # bounded: a clock mix-up must not put a device to sleep for hours
        return min(600.0, max(0.0, (st["utc"] - self.world_utc()) / self.speed))

    async def _life(self, d, delay):
        await asyncio.sleep(delay)
        fails = 0
        while not self._stopping:
            rc = await self._spawn(d)
            d.last_rc = rc
            if self._stopping:
                break
            if rc == EXIT_DEEPSLEEP:
                d.wakes += 1
                fails = 0
                wait = self._wake_delay(d)
            elif rc == EXIT_REBOOT:
                d.reboots += 1
                fails = 0
                wait = 0.2
            else:
                d.crashes += 1
                fails += 1
                self.on_event("%s: exit %s, restarting (see %s)" % (d.ep, rc, d.log_file))
                wait = min(30.0, 0.5 * 2 ** fails)
            try:
                await asyncio.wait_for(self._stop_event.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def start(self, stagger_s=0.05, progress=None):
        """Start every device's life; lamps first (they are always on)."""
        self._t0 = time.monotonic()
        self._stop_event = asyncio.Event()
        self._stopping = False
        hosted = {"lamp": [], "bin": []}
        per = {"lamp": self.lamps_per_process, "bin": self.bins_per_process}
        i = 0
        for d in self.devices.values():
            if per.get(d.role):
                hosted[d.role].append(d)
                continue
            d.task = asyncio.ensure_future(self._life(d, i * stagger_s))
            i += 1
        self.hosts = []
        for role, cls in (("lamp", LampHostProc), ("bin", HostProc)):
            n, group = per[role], hosted[role]
            for j in range(0, len(group), n or 1):
                self.hosts.append(cls(self, len(self.hosts), group[j:j + n]))
        for h in self.hosts:
            h.task = asyncio.ensure_future(h.life(i * stagger_s))
            i += 1
        if progress:
            n = len(self.devices)
            end = time.monotonic() + n * stagger_s + 2
            while time.monotonic() < end:
                progress(sum(1 for d in self.devices.values() if d.starts), n)
                if all(d.starts for d in self.devices.values()):
                    break
                await asyncio.sleep(0.5)

    def running(self):
        return [d for d in self.devices.values() if d.proc is not None and d.proc.returncode is None]

    def pids(self):
        return sorted({d.proc.pid for d in self.running()})

    async def stop(self, timeout=5.0):
        """SIGTERM every device process group, SIGKILL what is left after timeout."""
        self._stopping = True
        if getattr(self, "_stop_event", None):
            self._stop_event.set()
        for d in self.running():
            _killpg(d.proc.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while self.running() and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for d in self.running():
            _killpg(d.proc.pid, signal.SIGKILL)
        tasks = [d.task for d in self.devices.values() if d.task] + [h.task for h in self.hosts if h.task]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in self.devices.values():
            if d.proc is not None and d.proc.returncode is None:
                await d.proc.wait()

    def _host_of(self, d):
        return next(h for h in self.hosts if d in h.bins)

    async def restart_device(self, ep):
        """Power-cycle one device (kill its process; its life starts the next)."""
        d = self.devices[ep]
        if d.hosted and d.role == "lamp":
            # a lamp of a lamphost: a power cut is a reboot without a saved RTC
            for p in (d.path / ".sim_rtc.json",):
                if p.exists():
                    p.unlink()
            self._host_of(d).command("reboot", d.ep)
            return
        if d.hosted:
            # a bin of a binhost: its saved sleep state goes, so its next
            # wake (at the host's next scan, within ~1 s) is a power-on
            for p in (d.path / ".sim_rtc.json",):
                if p.exists():
                    p.unlink()
            return
        if d.proc is not None and d.proc.returncode is None:
            _killpg(d.proc.pid, signal.SIGKILL)


BINHOST = Path(__file__).resolve().parent / "binhost.py"
LAMPHOST = Path(__file__).resolve().parent / "lamphost.py"
HOST_EXTRA_HEAP = 65536      # the host's own needs on top of one wake's heap
HOST_HEAP_PER_BIN = 1024     # its record of one bin (paths, due time), with room


class HostProc:
    """One MicroPython process running binhost.py for a group of bins."""
    script = BINHOST
    stdin = asyncio.subprocess.DEVNULL

    def __init__(self, fleet, k, bins):
        self.fleet = fleet
        self.k = k
        self.bins = bins
        self.proc = None
        self.task = None
        self.starts = 0
        self.conf_file = fleet.root / "hosts" / ("host-%d.json" % k)
        self.log_file = fleet.root / "hosts" / ("host-%d.log" % k)
        for d in bins:
            d.hosted = True

    def heapsize(self):
        return self.fleet.heapsize + HOST_EXTRA_HEAP + HOST_HEAP_PER_BIN * len(self.bins)

    def command(self, what, ep):
        """A request to the host process, through its stdin (lamphost)."""
        if self.proc is not None and self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.write(("%s %s\n" % (what, ep)).encode())

    async def _spawn(self):
        f = self.fleet
        self.conf_file.parent.mkdir(parents=True, exist_ok=True)
        _write_json(self.conf_file, {"speed": f.speed, "wake_speed": f.bins_wake_speed,
                                     "world_utc": f.world_utc(), "devices": [
            {"ep": d.ep, "dir": str(d.path.resolve()), "inputs": str(d.inputs_file.resolve()),
             "id": "%012x" % (zlib.crc32(d.ep.encode()) | 0x5E0000000000)} for d in self.bins]})
        env = mpy.micropython_env([f.fw.resolve()])
        for k in ("ECLOR_SIM_FILE", "ECLOR_SIM_ID", "ECLOR_SIM_TIME", "ECLOR_SIM_SPEED", "ECLOR_SIM_RTC_FILE"):
            env.pop(k, None)
        self.proc = await asyncio.create_subprocess_exec(
            *mpy.micropython_cmd([str(self.script), str(self.conf_file.resolve())], self.heapsize()),
            cwd=str(f.root), env=env, stdin=self.stdin, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, preexec_fn=gwproc.child_setup, limit=1 << 20)
        self.starts += 1
        for d in self.bins:
            d.proc = self.proc
        byep = {d.ep: d for d in self.bins}
        with open(self.log_file, "ab") as hostlog:
            await self._pump(byep, hostlog)
        return await self.proc.wait()

    async def _pump(self, byep, hostlog):
        """Split the host's output into each bin's console.log (binhost markers)."""
        cur = out = None
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith(b"@binhost begin "):
                    cur = byep.get(line[15:].strip().decode())
                    if cur is not None:
                        cur.starts += 1
                        out = open(cur.log_file, "ab")
                    continue
                if line.startswith(b"@binhost end "):
                    parts = line[13:].decode().split()
                    d = byep.get(parts[0]) if parts else None
                    if d is not None:
                        self._count(d, parts[1] if len(parts) > 1 else "?")
                    if out:
                        out.close()
                    cur = out = None
                    continue
                (out or hostlog).write(line)
        finally:
            if out:
                out.close()

    def _count(self, d, what):
        if what == "deepsleep":
            d.wakes += 1
            d.last_rc = EXIT_DEEPSLEEP
        elif what == "reboot":
            d.reboots += 1
            d.last_rc = EXIT_REBOOT
        else:
            d.crashes += 1
            d.last_rc = what
            self.fleet.on_event("%s: wake ended by %s in binhost %d (see %s)" % (d.ep, what, self.k, d.log_file))

    async def life(self, delay):
        f = self.fleet
        await asyncio.sleep(delay)
        fails = 0
        while not f._stopping:
            rc = await self._spawn()
            if f._stopping:
                break
            fails += 1
            f.on_event("binhost %d: exit %s, restarting (see %s)" % (self.k, rc, self.log_file))
            try:
                await asyncio.wait_for(f._stop_event.wait(), min(30.0, 0.5 * 2 ** fails))
            except asyncio.TimeoutError:
                pass


class LampHostProc(HostProc):
    """One MicroPython process running lamphost.py for a group of lamps."""
    script = LAMPHOST
    stdin = asyncio.subprocess.PIPE

    def heapsize(self):
        # every lamp holds its own copy of the firmware: a device's heap each
        return self.fleet.heapsize * len(self.bins) + HOST_EXTRA_HEAP

    async def _pump(self, byep, hostlog):
        logs = {}
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                d = None
                if line.startswith(b"@lamphost "):
                    ep, _, rest = line[10:].partition(b" ")
                    d = byep.get(ep.decode())
                if d is None:
                    hostlog.write(line)
                    continue
                if rest.startswith(b"@"):
                    self._life_event(d, rest[1:].decode().strip())
                out = logs.get(d.ep)
                if out is None:
                    out = logs[d.ep] = open(d.log_file, "ab")
                out.write(rest)
                if len(logs) > 64:
                    for f in logs.values():
                        f.close()
                    logs.clear()
                else:
                    out.flush()
        finally:
            for f in logs.values():
                f.close()

    def _life_event(self, d, what):
        if what == "start":
            d.starts += 1
        elif what.startswith("reboot"):
            d.reboots += 1
            d.last_rc = EXIT_REBOOT
        elif what.startswith("crash") or what.startswith("returned"):
            d.crashes += 1
            d.last_rc = what
            self.fleet.on_event("%s: %s in lamphost %d (see %s)" % (d.ep, what, self.k, d.log_file))


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _write_bytes(path, data):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path, obj):
    _write_bytes(path, json.dumps(obj).encode())


def run_cli(args, gw):
    """`eclor sim --mode firmware`: run the fleet until Ctrl-C or --duration."""
    import tempfile
    from eclor.tools import territory
    specs = territory.fleet(args.lamps, args.bins, seed=args.seed)
    root = args.dir or tempfile.mkdtemp(prefix="eclor-sim-")

    async def main():
        proxy = None
        target = gw
        if args.loss:
            # The firmware cannot drop its own packets: put a lossy NAT in between.
            from eclor.tools.fleet.lossproxy import LossProxy
            proxy = await LossProxy(gw, args.loss, seed=args.seed).start()
            target = proxy.addr
        fleet = FirmwareFleet(specs, target, root, speed=args.speed, heapsize=args.heap,
                              start_utc=time.time() - 7 * 86400, report_s=max(10, int(args.report_s)),
                              lt=max(60, args.lt), bins_per_process=getattr(args, "bins_per_process", 0),
                              lamps_per_process=getattr(args, "lamps_per_process", 0),
                              bins_wake_speed=0 if getattr(args, "instant_wakes", False) else None,
                              on_event=lambda m: print("sim: " + m, flush=True))
        fleet.prepare()
        print("sim: %d lamps + %d bins running the firmware (%s), speed x%g, in %s" % (
            args.lamps, args.bins, "mpy", args.speed, root), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await fleet.start(progress=lambda k, n: print("sim: started %d/%d" % (k, n), flush=True))
        try:
            await asyncio.wait_for(stop.wait(), args.duration)
        except asyncio.TimeoutError:
            pass
        finally:
            await fleet.stop()
            if proxy:
                proxy.close()
        out = {"devices": len(specs), "starts": sum(d.starts for d in fleet.devices.values()),
               "wakes": sum(d.wakes for d in fleet.devices.values()),
               "reboots": sum(d.reboots for d in fleet.devices.values()),
               "crashes": sum(d.crashes for d in fleet.devices.values()), "dir": str(root)}
        if proxy:
            out.update(proxy.stats)
        print(json.dumps(out, sort_keys=True), flush=True)
        return 0
    return asyncio.run(main())
