"""`eclor gateway` / `eclor-gateway`: the daemon's lifecycle.

setup (store opened and read back, CoAP and HTTP listening, run.json written,
READY=1) -> run (until SIGTERM/SIGINT; SIGHUP reloads the config) -> shutdown
(STOPPING=1, stop accepting HTTP and CoAP, stop delivery tasks, commit every
queued write -- commands are durable from creation, so the queue is persisted
by that -- exit 0, bounded to well under 5 s).

Also ``eclor gateway import FILE.csv|.json``: declares inventory devices
through the running gateway's HTTP API, or straight into the database with
``--offline`` (gateway stopped).
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request

from . import config as cfgmod
from . import store as st
from .api import routes
from .coapserver import CoapServer, Observer
from .commands import Relay
from .http import Server as HTTPServer
from .metrics import Metrics
from .registry import Registry, parse_links
from .store import Store, StorageUnavailable

try:  # written by another part of the project; optional
    from .sdnotify import notify, watchdog_interval
except ImportError:  # pragma: no cover
    def notify(state):
        return False

    def watchdog_interval():
        return None

log = logging.getLogger("eclor.gateway")
DB_NAME = "eclor.db"
# keys that need a restart to change (SIGHUP leaves them as they are)
MAX_LATEST_NAMES = 128  # distinct reading names kept in memory per device
RESTART_KEYS = ("coap", "http", "data", "batch_max", "busy_ms", "coap_rcvbuf")


def raise_rcvbuf(sock, want):
    """Ask for a receive buffer of ``want`` bytes on a UDP socket; returns the
    size the kernel reports afterwards (Linux reports twice what it grants,
    the other half being its bookkeeping).

    A 1,000-lamp command fan-out brings ~1,000 answers within milliseconds; the
    default buffer (net.core.rmem_default, ~208 KiB, a few hundred datagrams
    once the kernel's per-packet overhead is counted) overflows while the loop
    is busy and the kernel drops the rest, each one costing a retransmission.
    SO_RCVBUF is capped at net.core.rmem_max; SO_RCVBUFFORCE (root or
    CAP_NET_ADMIN) is not, so it is tried first."""
    import socket
    before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    how = "SO_RCVBUF"
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, want)
        how = "SO_RCVBUFFORCE"
    except OSError:  # not privileged: capped at net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    rmem_max = None
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
    except (OSError, ValueError):
        pass
    if got < want and how == "SO_RCVBUF":
        log.warning("CoAP socket receive buffer: asked %d bytes, got %d (capped by net.core.rmem_max = %s; "
                    "raise it with sysctl -w net.core.rmem_max=%d, or run with CAP_NET_ADMIN)",
                    want, got, rmem_max, want)
    else:
        log.info("CoAP socket receive buffer: %d bytes effective (was %d; %s %d, net.core.rmem_max %s)",
                 got, before, how, want, rmem_max)
    return got


class JSONFormatter(logging.Formatter):
    def format(self, r):
        d = {"t": round(r.created, 3), "level": r.levelname.lower(), "logger": r.name, "msg": r.getMessage()}
        if r.exc_info:
            d["exc"] = self.formatException(r.exc_info)
        return json.dumps(d, separators=(",", ":"))


def setup_logging(fmt, level):
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JSONFormatter() if fmt == "json" else
                   logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_eclor", False):
            root.removeHandler(old)
    h._eclor = True
    root.addHandler(h)
    root.setLevel(getattr(logging, level.upper()))
    return h


def atomic_write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fmt_addr(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Gateway:
    def __init__(self, cfg, config_path=None, overrides=None):
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = overrides or {}
        self.metrics = Metrics()
        self.store = Store(os.path.join(cfg["data"], DB_NAME), cfg["batch_max"], cfg["busy_ms"], self.metrics)
        self.registry = Registry(self)
        self.relay = Relay(self)
        self.coap = CoapServer(self)
        self.observer = Observer(self)
        self.http = HTTPServer(routes(self), self.metrics, cfg["http_idle_s"])
        self.tasks = []
        self.started = time.time()
        self.coap_port = self.http_port = None
        self.coap_rcvbuf = None
        self.stopping = False
        self.metrics.gauge(self._gauges)

    def _gauges(self):
        yield "eclor_storage_queue_depth", {}, self.store.pending
        if self.coap_rcvbuf is not None:
            yield "eclor_coap_rcvbuf_bytes", {}, self.coap_rcvbuf
        yield "eclor_command_window", {"state": "in_flight"}, self.relay.window.held
        yield "eclor_command_window", {"state": "waiting"}, self.relay.window.queued
        for s, n in self.relay.counts().items():
            yield "eclor_commands", {"state": s}, n
        on = sum(1 for d in self.registry.devices.values() if d.get("online"))
        yield "eclor_devices", {"online": "true"}, on
        yield "eclor_devices", {"online": "false"}, len(self.registry.devices) - on

    # -- lifecycle ------------------------------------------------------------
    async def start(self):
        os.makedirs(self.cfg["data"], exist_ok=True)
        await asyncio.to_thread(self.store.open)
        devices = await self.store.read(st.load_devices)
        latest = await self.store.read(st.load_latest)
        self.registry.load(devices, latest)
        self.relay.load(await self.store.read(st.open_commands))
        ch, cp = cfgmod.parse_hostport(self.cfg["coap"], "coap")
        hh, hp = cfgmod.parse_hostport(self.cfg["http"], "http")
        self.coap_port = await self.coap.start(ch, cp)
        if self.cfg["coap_rcvbuf"]:
            try:
                sock = self.coap.udp.transport.get_extra_info("socket")
                self.coap_rcvbuf = raise_rcvbuf(sock, self.cfg["coap_rcvbuf"])
            except (AttributeError, OSError) as e:
                log.warning("cannot size the CoAP socket's receive buffer: %s", e)
        self.http_port = await self.http.start(hh, hp)
        self.coap_addr = _fmt_addr(ch, self.coap_port)
        self.http_addr = _fmt_addr(hh, self.http_port)
        atomic_write(os.path.join(self.cfg["data"], "run.json"), json.dumps(
            {"pid": os.getpid(), "coap": self.coap_addr, "http": self.http_addr,
             "coap_port": self.coap_port, "http_port": self.http_port}))
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._ticker()), loop.create_task(self._maintenance())]
        wd = watchdog_interval()
        if wd:
            self.tasks.append(loop.create_task(self._watchdog(wd)))
        # resume what was going on before a restart
        for d in self.registry.devices.values():
            if d.get("online") and not d.get("queue"):
                paths = [p for p, a in parse_links(d.get("links") or "") if "obs" in a]
                self.observer.start(d, paths)
        for c in list(self.relay.open.values()):
            d = self.registry.devices.get(c["device"])
            if d is not None and not d.get("queue"):
                self.relay.kick(c)
        log.info("gateway listening: coap %s, http %s, data %s (%d devices, %d open commands)",
                 self.coap_addr, self.http_addr, self.cfg["data"], len(self.registry.devices),
                 len(self.relay.open))
        notify("READY=1\nSTATUS=listening coap %s http %s" % (self.coap_addr, self.http_addr))

    async def stop(self):
        if self.stopping:
            return
        self.stopping = True
        notify("STOPPING=1")
        log.info("stopping: closing listeners, flushing %d pending writes", self.store.pending)
        await self.http.stop()
        await self.coap.stop()
        self.observer.cancel()
        for t in self.tasks + list(self.relay.tasks.values()):
            t.cancel()
        await asyncio.gather(*self.tasks, *self.relay.tasks.values(), return_exceptions=True)
        await asyncio.to_thread(self.store.close)
        log.info("stopped")

    async def _ticker(self):
        """Once a second: registration lifetimes and command TTLs."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            try:
                for ep in await self.registry.expire(now):
                    self.observer.cancel(ep)
                self.relay.expire(now)
            except StorageUnavailable:
                pass
            except Exception:
                log.exception("ticker")

    async def _maintenance(self):
        while True:
            try:
                now, first = time.time(), True
                while True:
                    res = await self.store.write(st.aggregate_and_expire, now, self.cfg["retention_days"],
                                                 self.cfg["aggregate_days"], 48, 20000, first)
                    log.debug("maintenance: %s", res)
                    first = False
                    if not res["more"]:
                        break
                    await asyncio.sleep(0.05)  # let ingest in between
            except Exception as e:
                log.warning("maintenance failed: %s", e)
            await asyncio.sleep(self.cfg["maintenance_s"])

    async def _watchdog(self, interval):
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def reload(self):
        try:
            new = cfgmod.load(self.config_path, self.overrides)
        except cfgmod.ConfigError as e:
            log.error("config reload refused, keeping the old config: %s", e)
            return False
        kept = [k for k in RESTART_KEYS if new[k] != self.cfg[k]]
        for k in kept:
            new[k] = self.cfg[k]
        if kept:
            log.warning("config reload: %s need a restart, unchanged", ", ".join(kept))
        changed = [k for k in new if new[k] != self.cfg[k]]
        self.cfg.update(new)
        setup_logging(self.cfg["log_format"], self.cfg["log_level"])
        self.coap.filter.window_s = self.cfg["log_sample_s"]
        self.http.idle_s = self.cfg["http_idle_s"]
        log.info("config reloaded (%s)", ", ".join(changed) or "no change")
        notify("READY=1")
        return True

    # -- hot path -------------------------------------------------------------
    async def ingest(self, dev, rows, now):
        """Store rows durably (awaits the group commit), then update the live view."""
        if self.store.pending >= self.cfg["queue_limit"]:
            raise StorageUnavailable("write queue full")
        ep = dev["ep"]
        lt = self.registry.latest.get(ep)
        if lt is None:
            lt = self.registry.latest[ep] = {}
        events = None
        for r in rows:
            if r[0].startswith("ev:"):
                # devices repeat their active events in every report: an event
                # row is recorded on a change of state only
                if events is None:
                    events, state = [], {}
                prev = state.get(r[0], lt.get(r[0]))
                if prev is None or prev[3] != r[4]:
                    events.append(r)
                state[r[0]] = (r[1], None, None, r[4])
        if events:
            def job(con):
                st.insert_readings(con, ep, rows)
                for name, t, v, vs, vb, unit in events:
                    st.insert_event(con, t, ep, name, {"active": bool(vb)})
            await self.store.write(job)
        else:
            await self.store.write(st.insert_readings, ep, rows)
        for name, t, v, vs, vb, unit in rows:
            old = lt.get(name)
            if old is None:
                if len(lt) >= MAX_LATEST_NAMES:
                    continue  # stored, but a device inventing names cannot grow our memory
                lt[name] = (t, v, vs, vb)
            elif old[0] <= t:
                lt[name] = (t, v, vs, vb)
        dev["last_seen"] = now
        self.metrics.inc("eclor_readings_stored_total", len(rows))

    def device_seen(self, row):
        if not row.get("queue"):
            self.relay.kick_device(row["ep"])

    async def stats(self):
        now = time.time()
        midnight = now - now % 86400  # UTC day
        energy = await self.store.read(st.energy_since, midnight)
        groups = {}
        thr, low_v = self.cfg["collection_threshold"], self.cfg["battery_low_v"]
        for d in self.registry.devices.values():
            key = (d.get("commune") or "", d.get("zone") or "")
            g = groups.get(key)
            if g is None:
                g = groups[key] = {"commune": key[0] or None, "zone": key[1] or None, "lamps": 0,
                                   "lamps_on": 0, "lamps_off": 0, "lamps_faulty": 0, "energy_today_kwh": 0.0,
                                   "bins": 0, "bins_to_collect": 0, "low_batteries": 0, "offline": 0}
            lt = self.registry.latest.get(d["ep"], {})
            if not d.get("online"):
                g["offline"] += 1
            if d.get("type") == "lamp":
                g["lamps"] += 1
                lvl = lt.get("level")
                if lvl is not None and lvl[1] is not None and lvl[1] > 0:
                    g["lamps_on"] += 1
                else:
                    g["lamps_off"] += 1
                if any(n.startswith("ev:") and v[3] for n, v in lt.items()):
                    g["lamps_faulty"] += 1
                g["energy_today_kwh"] += energy.get(d["ep"], 0.0) / 1000.0
            elif d.get("type") == "bin":
                g["bins"] += 1
                fill = lt.get("fill")
                if fill is not None and fill[1] is not None and fill[1] >= thr:
                    g["bins_to_collect"] += 1
                bat = lt.get("battery")
                if bat is not None and bat[1] is not None and bat[1] < low_v:
                    g["low_batteries"] += 1
        out = sorted(groups.values(), key=lambda g: (g["commune"] or "", g["zone"] or ""))
        total = {k: sum(g[k] for g in out) for k in out[0] if k not in ("commune", "zone")} if out else {}
        for g in out + [total]:
            if "energy_today_kwh" in g:
                g["energy_today_kwh"] = round(g["energy_today_kwh"], 3)
        return {"t": now, "day_start": midnight, "groups": out, "total": total}


async def serve(cfg, config_path=None, overrides=None, ready=None):
    """Run until SIGTERM/SIGINT. ``ready(gw)`` is called once listening (tests)."""
    gw = Gateway(cfg, config_path, overrides)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        await gw.start()
    except Exception:
        await gw.stop()
        raise
    installed = []
    for sig, fn in ((signal.SIGTERM, stop.set), (signal.SIGINT, stop.set), (signal.SIGHUP, gw.reload)):
        try:
            loop.add_signal_handler(sig, fn)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    if ready is not None:
        ready(gw, stop)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await asyncio.wait_for(gw.stop(), 4.5)
    return 0


# ---------------------------------------------------------------------------
# command line

def add_arguments(parser):
    cfgmod.add_arguments(parser)
    sub = parser.add_subparsers(dest="gw_cmd", metavar="SUBCOMMAND")
    p = sub.add_parser("import", help="declare inventory devices from FILE.csv or FILE.json",
                       description="Declare devices (ep, type, zone, commune, lat, lon, tags, other "
                                   "columns = metadata) through the running gateway's HTTP API, or "
                                   "directly in the data directory with --offline.")
    p.add_argument("file", metavar="FILE.csv|FILE.json")
    p.add_argument("--http", default=argparse.SUPPRESS, help="HTTP API of the running gateway")
    p.add_argument("--data", default=argparse.SUPPRESS, help="data directory (with --offline)")
    p.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    p.add_argument("--offline", action="store_true", help="write to the database directly (gateway stopped)")


def run(args):
    overrides = cfgmod.overrides_from_args(args)
    try:
        cfg = cfgmod.load(getattr(args, "config", None), overrides)
    except cfgmod.ConfigError as e:
        sys.stderr.write("eclor gateway: %s\n" % e)
        return 2
    if getattr(args, "gw_cmd", None) == "import":
        return run_import(args, cfg)
    setup_logging(cfg["log_format"], cfg["log_level"])
    # The SQLite writer thread gives up the GIL around every statement and must
    # win it back from the busy event loop each time; with CPython's default
    # 5 ms switch interval a commit can wait several of those. 1 ms bounds the
    # wait (it only matters while the writer is waiting for the GIL).
    sys.setswitchinterval(0.001)
    try:
        return asyncio.run(serve(cfg, getattr(args, "config", None), overrides))
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1
    except KeyboardInterrupt:
        return 0


def run_import(args, cfg):
    from .inventory import InventoryError, load
    try:
        devices = load(args.file)
    except InventoryError as e:
        sys.stderr.write("eclor gateway import: %s\n" % e)
        return 2
    if getattr(args, "offline", False):
        store = Store(os.path.join(cfg["data"], DB_NAME), busy_ms=cfg["busy_ms"]).open()
        try:
            def job(con):
                existing = {d["ep"]: d for d in st.load_devices(con)}
                for d in devices:
                    row = dict(existing.get(d["ep"]) or {k: None for k in st.DEVICE_FIELDS})
                    if d["ep"] in existing:
                        d = dict(d)
                        d.pop("created")
                    row.update(d)
                    row["queue"] = row.get("queue") or 0
                    row["online"] = row.get("online") or 0
                    st.upsert_device(con, row)
            store.run_sync(job)
        finally:
            store.close()
        print("imported %d devices into %s" % (len(devices), cfg["data"]))
        return 0
    host, port = cfgmod.parse_hostport(cfg["http"], "http")
    if host in ("::", "0.0.0.0", ""):
        host = "127.0.0.1"
    url = "http://%s/api/devices" % _fmt_addr(host, port)
    body = json.dumps({"devices": [{k: v for k, v in d.items() if k not in ("declared", "created")}
                                   for d in devices]}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error")
        except Exception:
            msg = e.reason
        sys.stderr.write("eclor gateway import: the gateway refused: %s\n" % msg)
        return 1
    except (urllib.error.URLError, OSError) as e:
        sys.stderr.write("eclor gateway import: cannot reach the gateway at %s (%s); "
                         "use --offline when it is stopped\n" % (url, getattr(e, "reason", e)))
        return 1
    print("imported %d devices" % data.get("count", len(devices)))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="eclor-gateway", description="ECLOR gateway daemon (CoAP + HTTP API)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
