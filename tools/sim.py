"""`eclor sim`: run a fleet of virtual lamps and bins against a gateway.

Two modes:
- `cpython` (default): raw-protocol load, thousands of lean devices in this
  process (eclor.tools.fleet.load), one UDP socket each;
- `firmware`: the real firmware under unix MicroPython
  (eclor.tools.fleet.firmware): one process per lamp, or with
  --lamps-per-process N up to N lamps side by side in one MicroPython process
  (eclor.tools.fleet.lamphost: each its own copy of the firmware, socket and
  flash dir); one process per bin wake, or with --bins-per-process N up to N
  bins per MicroPython process (eclor.tools.fleet.binhost: each wake the real
  firmware path, one after the other, the deep sleep returning to the host).

Devices come from the territory generator (eclor.tools.territory) with a
seed, so two runs with the same arguments are the same fleet. Packet loss
is injected on the devices' side, in both directions (--loss).

Prints progress every few seconds and, at the end, one JSON line with the
counters (last line, for scripts).
"""
import asyncio
import json
import signal
import sys
import time
import urllib.parse

from eclor.tools import territory


def parse_coap_url(url):
    """coap://host[:port] -> (host, port). ValueError with the reason."""
    u = urllib.parse.urlsplit(url if "://" in url else "coap://" + url)
    if u.scheme != "coap":
        raise ValueError("gateway must be a coap:// URL, got %r" % url)
    if not u.hostname:
        raise ValueError("gateway URL has no host: %r" % url)
    return u.hostname, u.port or 5683


def add_arguments(p):
    p.add_argument("--lamps", type=int, default=10, help="number of lamps (default 10)")
    p.add_argument("--bins", type=int, default=10, help="number of bins (default 10)")
    p.add_argument("--gateway", default="coap://127.0.0.1:5683", help="gateway CoAP URL")
    p.add_argument("--loss", type=float, default=0.0, help="injected packet loss, 0..1 each way")
    p.add_argument("--mode", choices=("cpython", "firmware"), default="cpython")
    p.add_argument("--seed", type=int, default=1, help="fleet generator seed")
    p.add_argument("--report-s", type=float, default=30.0, help="seconds between reports (simulated seconds in firmware mode)")
    p.add_argument("--lt", type=int, default=3600, help="registration lifetime (s)")
    p.add_argument("--ack-timeout", type=float, default=2.0, help="CoAP ACK_TIMEOUT (s), RFC default 2")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--speed", type=float, default=60.0, help="simulated clock speed (firmware mode)")
    p.add_argument("--heap", type=int, default=None, help="MicroPython heap per device, bytes (firmware mode; default ESP32)")
    p.add_argument("--bins-per-process", type=int, default=0,
                   help="firmware mode: run up to N bins' wakes in one MicroPython process (default 0: one process per wake)")
    p.add_argument("--lamps-per-process", type=int, default=0,
                   help="firmware mode: run up to N lamps side by side in one MicroPython process (default 0: one each)")
    p.add_argument("--instant-wakes", action="store_true",
                   help="with --bins-per-process: a bin wake's simulated durations take no real time")
    p.add_argument("--dir", default=None, help="work directory for firmware devices (default: temporary)")


def _check(args):
    if args.lamps < 0 or args.bins < 0 or args.lamps + args.bins == 0:
        raise ValueError("need at least one device (--lamps/--bins >= 0)")
    if not 0 <= args.loss < 1:
        raise ValueError("--loss must be in [0, 1)")
    if getattr(args, "bins_per_process", 0) < 0:
        raise ValueError("--bins-per-process must be >= 0")
    if getattr(args, "lamps_per_process", 0) < 0:
        raise ValueError("--lamps-per-process must be >= 0")
    if args.report_s <= 0 or args.ack_timeout <= 0:
        raise ValueError("--report-s and --ack-timeout must be > 0")
    return parse_coap_url(args.gateway)


async def _run_cpython(args, gw):
    from eclor.tools.fleet import load
    try:
        import resource
        need = args.lamps + args.bins + 256
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    except (ImportError, ValueError, OSError):
        pass
    specs = territory.fleet(args.lamps, args.bins, seed=args.seed)
    fleet = load.Fleet(specs, gw, loss=args.loss, params=load.Params(ack_timeout=args.ack_timeout),
                       seed=args.seed, lt=args.lt)
    await fleet.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    t0 = time.monotonic()
    print("sim: %d lamps + %d bins (cpython mode) -> coap://%s:%d, loss %.1f%%" % (
        args.lamps, args.bins, gw[0], gw[1], 100 * args.loss), flush=True)
    last = [0.0]

    def tick(f):
        now = time.monotonic()
        if now - last[0] >= 5:
            last[0] = now
            s = f.stats
            print("sim: t=%4.0fs registered %d, readings acked %d, commands %d, retransmissions %d, timeouts %d"
                  % (now - t0, s["registered"], s["readings_acked"], len(f.cmd_log), s["retransmissions"],
                     s["timeouts"]), flush=True)
    try:
        await fleet.run(args.duration, args.report_s, stop=stop, on_tick=tick)
    finally:
        fleet.close()
    out = dict(fleet.stats)
    out.update(devices=len(specs), seconds=round(time.monotonic() - t0, 1), commands=len(fleet.cmd_log),
               errors=len(fleet.errors))
    for e in fleet.errors[:5]:
        print("sim: error: %s" % e, file=sys.stderr)
    print(json.dumps(out, sort_keys=True), flush=True)
    return 0


def run(args):
    try:
        gw = _check(args)
    except ValueError as e:
        print("eclor sim: %s" % e, file=sys.stderr)
        return 2
    if args.mode == "cpython":
        return asyncio.run(_run_cpython(args, gw))
    from eclor.tools.fleet import firmware
    return firmware.run_cli(args, gw)
