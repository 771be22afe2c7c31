"""`eclor demo`: the whole territory in one command.

Starts a real gateway (`eclor gateway`, SQLite in the data directory it
names) and a fleet of virtual lamps and bins running the REAL firmware
under unix MicroPython with an ESP32-sized heap (eclor.tools.fleet.firmware),
placed in the communes of the CCPHVA (eclor.tools.territory). Time runs
accelerated (--speed, default x60: a night passes in a quarter of an hour).

What an operator sees while it runs (all through the gateway's API):
- lamps following their commune's program: on at dusk, dimmed at 22:00,
  some communes off from 01:00 to 05:00, back up before dawn;
- bins filling (their simulated ultrasonic distance shrinks) and showing up
  in GET /api/collection at 80 %, then emptied by the collection round;
- a lamp failure and a bin fire, injected through the simulated inputs of
  one lamp and one bin, raised as events (GET /api/events);
- commands sent with `eclor send` reaching the devices (lamps at once, bins
  at their next wake).

The simulated world starts ten minutes before sunset at Villerupt a week
ago, so dusk comes within the first minute; readings carry the simulated
time. At x60 the world catches up with the wall clock after about three
hours; beyond that the demo's gateway still accepts its readings
(--max-future-s 30 days), but commands could look expired to the devices.

Ctrl-C (or SIGTERM, or --duration) stops the devices, then the gateway;
every child runs in its own process group with a parent-death signal, so
nothing is left behind even if the demo itself is killed.
"""
import asyncio
import importlib.util
import os
import signal
import socket
import sys
import time

from eclor.tools import mpy, territory

SCENARIO_HELP = "lamp failure at dusk+15 min, bin fire at +1 h (out at +2.5 h), bins fill 6-20 %/h"


def add_arguments(p):
    p.add_argument("--lamps", type=int, default=12, help="virtual lamps (default 12)")
    p.add_argument("--bins", type=int, default=12, help="virtual bins (default 12)")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    p.add_argument("--data", default="eclor-demo", help="data directory (default ./eclor-demo)")
    p.add_argument("--duration", type=float, default=None, help="stop by itself after S real seconds")
    p.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    p.add_argument("--coap", default="127.0.0.1:5683", help="gateway CoAP HOST:PORT (another port if busy)")
    p.add_argument("--http", default="127.0.0.1:8080", help="gateway HTTP HOST:PORT (another port if busy)")
    p.add_argument("--heap", type=int, default=None,
                   help="MicroPython heap per device, bytes (default: an ESP32's 100 KB, scaled x1.75 on a 64-bit host)")
    p.add_argument("--no-scenario", action="store_true", help="no injected failure, fire or filling")
    p.add_argument("--quiet", action="store_true", help="no periodic status line")


def _hostport(text, kind):
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port)
    if port == 0:
        from eclor.tools.fleet.gwproc import free_port
        return host, free_port(kind, host)
    # The demo's own ports are a convenience: when taken, take any free one.
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            s.close()
            from eclor.tools.fleet.gwproc import free_port
            return host, free_port(kind, host)
    return host, port


def _astro():
    """The firmware's own sunrise/sunset module, loaded on CPython (pure math)."""
    path = os.path.join(str(mpy.firmware_dir()), "lamp", "astro.py")
    spec = importlib.util.spec_from_file_location("eclor_demo_astro", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def world_start(now=None, days_back=7):
    """Ten minutes before sunset at Villerupt, `days_back` days ago.

    Why in the past: devices judge a command's expiry ("exp", set by the
    gateway from the wall clock) with their own, simulated, clock. A world
    that starts a week back and runs x60 stays behind the wall clock for
    about three hours, so commands behave as in the field."""
    now = time.time() if now is None else now
    name, lat, lon, _ = territory.COMMUNES[0]
    day = int(now // 86400) - days_back
    try:
        _, sunset = _astro().sun_times(day, lat, lon)
    except Exception:  # noqa: BLE001 - the demo must start even without the lamp code
        sunset = 16 * 3600
    return day * 86400 + (sunset or 16 * 3600) - 600


def local(t):
    """Simulated UTC -> 'HH:MM' in the territory's time zone."""
    try:
        from zoneinfo import ZoneInfo
        import datetime
        return datetime.datetime.fromtimestamp(t, ZoneInfo("Europe/Paris")).strftime("%a %H:%M")
    except Exception:  # noqa: BLE001 - no tz database: show UTC
        return time.strftime("%a %H:%M UTC", time.gmtime(t))


class Scenario:
    """What happens in the simulated world: bins fill, one lamp breaks, one bin burns."""

    def __init__(self, fleet, specs, speed, say):
        self.fleet, self.say = fleet, say
        self.lamps = [s for s in specs if s["role"] == "lamp"]
        self.bins = [s for s in specs if s["role"] == "bin"]
        self.t0 = fleet.start_utc
        self.fill = {}
        self.rate = {}
        self.full_since = {}
        for i, b in enumerate(self.bins):
            inp = fleet.inputs(b["ep"]).get("bin", {})
            depth, off = b["bin"]["depth_m"], b["bin"]["offset_m"]
            self.fill[b["ep"]] = max(0.0, min(100.0, 100.0 * (1 - (inp.get("dist", off + depth) - off) / depth)))
            self.rate[b["ep"]] = 6 + (i * 7) % 15            # % per simulated hour
        self.done = set()
        self.last_utc = fleet.world_utc()
        # who fails: the second lamp (the first stays a healthy reference), the first bin
        self.broken_lamp = self.lamps[min(1, len(self.lamps) - 1)]["ep"] if self.lamps else None
        self.fire_bin = self.bins[0]["ep"] if self.bins else None

    def _once(self, key, at, fn):
        if key not in self.done and self.fleet.world_utc() >= self.t0 + at:
            self.done.add(key)
            fn()

    def step(self):
        now = self.fleet.world_utc()
        dt_h = (now - self.last_utc) / 3600.0
        self.last_utc = now
        for b in self.bins:
            ep = b["ep"]
            old = self.fill[ep]
            if old >= 100.0:
                # full: the collection round comes within the hour
                since = self.full_since.setdefault(ep, now)
                if now - since > 3600:
                    self.fill[ep] = 3.0
                    self.full_since.pop(ep, None)
                    self._set_fill(b)
                    self.say("world: collection round emptied %s" % ep)
                continue
            self.fill[ep] = min(100.0, old + self.rate[ep] * dt_h)
            if int(self.fill[ep]) != int(old):
                self._set_fill(b)
        if self.broken_lamp:
            self._once("lamp", 600 + 15 * 60, self._break_lamp)
        if self.fire_bin:
            self._once("fire", 3600, lambda: self._fire(True))
            self._once("fire-out", 9000, lambda: self._fire(False))

    def _set_fill(self, b):
        depth, off = b["bin"]["depth_m"], b["bin"]["offset_m"]
        dist = off + depth * (1 - self.fill[b["ep"]] / 100.0)
        self.fleet.set_inputs(b["ep"], bin={"dist": round(dist, 3)})

    def _break_lamp(self):
        self.fleet.set_inputs(self.broken_lamp, lamp="broken")
        self.say("world: the lamp of %s just failed (simulated input lamp=broken) -> watch `eclor events`"
                 % self.broken_lamp)

    def _fire(self, on):
        self.fleet.set_inputs(self.fire_bin, bin={"temp": 85.0 if on else 15.0})
        self.say("world: %s -> watch `eclor events`" % (
            "fire in bin %s (85 degC)" % self.fire_bin if on else "the fire in %s is out" % self.fire_bin))


async def _status(api, fleet, seen, say):
    """One status line plus any new events (read through the API, like an operator)."""
    from eclor.tools.fleet.gwproc import ApiError, items
    try:
        devs = items(await asyncio.to_thread(api.get, "/api/devices"), "devices")
        stats = await asyncio.to_thread(api.get, "/api/stats")
        coll = await asyncio.to_thread(api.get, "/api/collection")
        evs = items(await asyncio.to_thread(api.get, "/api/events", limit=50), "events")
    except (OSError, ApiError) as e:
        say("status: gateway not answering (%s)" % e)
        return
    tot = stats.get("total", {}) if isinstance(stats, dict) else {}
    online = sum(1 for d in devs if d.get("online"))
    levels = sorted({int((d.get("latest") or {}).get("level", {}).get("v", -1)) for d in devs
                     if d.get("type") == "lamp"} - {-1})
    say("[%s] %d/%d devices online, lamps on %s/%s at %s%% (faulty %s), bins to collect %d%s" % (
        local(fleet.world_utc()), online, len(fleet.devices), tot.get("lamps_on", "?"), tot.get("lamps", "?"),
        "/".join(str(x) for x in levels) or "-", tot.get("lamps_faulty", "?"), coll.get("count", 0),
        (": " + ", ".join("%s %.0f%%" % (b["ep"], b["fill"]) for b in coll.get("bins", [])[:3])) if coll.get("count") else ""))
    for e in sorted(evs, key=lambda e: e.get("id", 0)):
        if e.get("id") in seen["ids"]:
            continue
        seen["ids"].add(e.get("id"))
        if e.get("kind") in ("registered",):
            continue
        # A device repeats its active events in its reports: show changes only.
        key = (e.get("device"), e.get("kind"))
        detail = e.get("detail")
        if seen["state"].get(key) == detail:
            continue
        seen["state"][key] = detail
        active = detail.get("active") if isinstance(detail, dict) else None
        say("event: %s %s %s" % (e.get("device"), e.get("kind"),
                                 {True: "raised", False: "cleared"}.get(active, detail or "")))


async def install_calendars(api, specs, say):
    """Each commune's lighting program, sent as a group `calendar` command
    (what an operator does); the lamps answer done once it is installed."""
    from eclor.tools.fleet import firmware, gwproc
    communes = sorted({s["commune"] for s in specs if s["role"] == "lamp"})
    for c in communes:
        cal = firmware.calendar_for({"commune": c})
        try:
            ans = await asyncio.to_thread(api.post, "/api/commands", {
                "selector": {"commune": c, "type": "lamp"}, "action": "calendar",
                "params": {"calendar": cal}, "wait": 15})
        except (OSError, gwproc.ApiError) as e:
            say("demo: calendar for %s not sent: %s" % (c, e))
            continue
        summ = ans.get("summary", {})
        say("demo: calendar %s -> lamps of %s: %s" % (cal["id"], c, ", ".join(
            "%s %s" % (v, k) for k, v in sorted(summ.items()) if k != "total")))


def banner(gw, data, args, specs, fleet):
    api = gw.http_url
    lamp = next((s["ep"] for s in specs if s["role"] == "lamp"), "lamp-villerupt-0001")
    b = next((s["ep"] for s in specs if s["role"] == "bin"), "bin-villerupt-0001")
    env = "" if api == "http://127.0.0.1:8080" else "ECLOR_API=%s " % api
    lines = [
        "",
        "ECLOR demo: a gateway and %d lamps + %d bins running the real firmware (unix MicroPython, %d KB heap)"
        % (args.lamps, args.bins, fleet.heapsize // 1024),
        "  data        %s  (gateway: gateway/eclor.db, gateway/gateway.log; devices: fleet/devices/<ep>/)" % data,
        "  CoAP        coap://%s:%d" % gw.coap,
        "  HTTP API    %s/api/devices   /api/collection   /api/events   /api/stats   /metrics" % api,
        "  time        x%g: one simulated hour every %.0f s, from 10 min before sunset a week ago"
        % (args.speed, 3600 / args.speed),
        "  scenario    %s" % ("none" if args.no_scenario else SCENARIO_HELP),
        "  try         %seclor devices" % env,
        "              %seclor readings %s --name level" % (env, lamp),
        "              %seclor send %s level level=20 duration=600 --wait" % (env, lamp),
        "              %seclor send %s report --wait 120     (a bin takes it at its next wake)" % (env, b),
        "              %seclor events" % env,
        "              curl -s %s/api/collection" % api,
        "  stop        Ctrl-C",
        "",
    ]
    print("\n".join(lines), flush=True)


async def _main(args):
    from eclor.tools.fleet import firmware, gwproc

    data = os.path.abspath(args.data)
    specs = territory.fleet(args.lamps, args.bins, seed=args.seed)
    coap = _hostport(args.coap, socket.SOCK_DGRAM)
    http = _hostport(args.http, socket.SOCK_STREAM)
    say = lambda m: print(m, flush=True)  # noqa: E731
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    gw = gwproc.Gateway(os.path.join(data, "gateway"), coap_port=coap[1], http_port=http[1], host=coap[0],
                        extra_args=["--max-future-s", "2592000", "--log-level", "warning"])
    if http[0] != coap[0]:
        gw.api = gwproc.Api("http://%s:%d" % http)
    fleet = None
    try:
        say("demo: starting the gateway (data in %s) ..." % data)
        # In this thread, not a worker: the gateway's parent-death signal
        # is tied to the thread that started it.
        gw.start()
        await asyncio.to_thread(gw.api.post, "/api/devices", {"devices": [
            {"ep": s["ep"], "type": s["role"], "zone": s["zone"], "commune": s["commune"], "lat": s["lat"],
             "lon": s["lon"], "meta": dict(s.get("lamp") or s.get("bin") or {})} for s in specs]})
        say("demo: %d devices declared in the inventory (%s)" % (len(specs), ", ".join(
            "%s %d" % (c, n["lamp"] + n["bin"]) for c, n in territory.summary(specs).items())))
        say("demo: building the firmware (.mpy for the ESP32) and the devices' flash ...")
        fleet = firmware.FirmwareFleet(specs, gw.coap, os.path.join(data, "fleet"), speed=args.speed,
                                       start_utc=world_start(), heapsize=args.heap,
                                       on_event=lambda m: say("fleet: " + m))
        await asyncio.to_thread(fleet.prepare)
        await fleet.start(stagger_s=0.1, progress=lambda k, n: say("demo: devices started %d/%d" % (k, n)))
        # wait (bounded) for the fleet to show up at the gateway
        end = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < end:
            devs = gwproc.items(await asyncio.to_thread(gw.api.get, "/api/devices", online="true"), "devices")
            say("demo: %d/%d devices registered at the gateway" % (len(devs), len(specs)))
            if len(devs) >= len(specs):
                break
            try:
                await asyncio.wait_for(stop.wait(), 2)
            except asyncio.TimeoutError:
                pass
        await install_calendars(gw.api, specs, say)
        banner(gw, data, args, specs, fleet)
        scen = None if args.no_scenario else Scenario(fleet, specs, args.speed, say)
        seen = {"ids": set(), "state": {}}
        t_end = None if args.duration is None else time.monotonic() + args.duration
        next_status = 0
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            if scen:
                scen.step()
            if not args.quiet and time.monotonic() >= next_status:
                next_status = time.monotonic() + 10
                await _status(gw.api, fleet, seen, say)
            if gw.proc.poll() is not None:
                say("demo: the gateway exited (%s); see %s" % (gw.proc.returncode, gw.log_path))
                return 1
            try:
                await asyncio.wait_for(stop.wait(), 1)
            except asyncio.TimeoutError:
                pass
        return 0
    finally:
        say("demo: stopping the devices and the gateway ...")
        if fleet is not None:
            await fleet.stop()
        rc = await asyncio.to_thread(gw.stop)
        say("demo: stopped (gateway exit %s). Data kept in %s" % (rc, data))


def run(args):
    if args.lamps < 0 or args.bins < 0 or args.lamps + args.bins == 0:
        print("eclor demo: need at least one device", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("eclor demo: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except RuntimeError as e:
        print("eclor demo: %s" % e, file=sys.stderr)
        return 1
