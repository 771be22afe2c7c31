"""Command relay: one command object, two delivery paths, persistent states.

A command ``{"id", "a", "p", "exp"}`` (docs/architecture.md) moves through
queued -> sent -> done | failed | expired and every transition is written to
the store; the command exists durably before its id is returned to the API
caller, so a crash never loses an accepted command.

* Always-on devices (lamps): ``POST /cmd`` (CON, CBOR) from the gateway's own
  CoAP socket to the address the device last registered/updated from; aiocoap
  does the RFC 7252 retransmissions with the relay's own transmission
  parameters (``command_ack_timeout``, ``command_ack_random_factor``,
  ``command_max_retransmit``); when the exchange times out the command is
  retried after ``command_retry_s`` or as soon as the device registers/updates
  again, until it expires. At most ``group_concurrency`` exchanges are in
  flight at once, all commands together (a 1,000-lamp fan-out is paced, FIFO,
  instead of bursting 1,000 CONs and their 1,000 answers into socket buffers).
* Queue-mode devices (``b=UQ``, bins): the open commands ride on the 2.04 that
  answers the device's ``/dp`` (or ``/cr``), and ride again on every later wake
  until a result arrives via ``/cr`` or the TTL runs out (at-least-once; the
  device answers a re-sent id from its memory of recent ids, it does not
  re-apply it).

Final states are never left: a late duplicate result is ignored.

Store writes: creating a command is awaited (durable before its id is
returned); a group's commands are created in ONE store job. State changes
(queued -> sent -> done...) are not awaited and are coalesced: all the
changes of one event-loop iteration go in one store job, a command's
intermediate states in the same job collapse into its last one.
"""
import asyncio
import collections
import logging
import os
import socket
import threading
import time

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning

from . import store as st

log = logging.getLogger("eclor.gateway.commands")

FINAL = ("done", "failed", "expired")
# The most bytes of commands in one /dp or /cr answer to a queue-mode device:
# what such a sleepy device (a bin) is built to take in one datagram -- its
# endpoint holds its receive buffer through every session, so the bin sizes it
# for 256 B of commands + headers (firmware waste/cycle.py MAX_MSG), not for a
# 1024-byte block. A longer answer would be cut and lost (and a Block2 answer
# to a POST is not continued by a bin's wake: 30 commands queued stayed "sent"
# through its wakes until they expired); the next ones come in the answer to
# its /cr (up to four rounds a wake), or at its next wake.
PENDING_MAX = 256
STATES = ("queued", "sent") + FINAL


class CommandError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _num(lo=None, hi=None, integer=False):
    def check(k, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            return "%s must be %s" % (k, "an integer" if integer else "a number")
        if lo is not None and v < lo or hi is not None and v > hi:
            return "%s must be within %s..%s" % (k, lo, hi)
        return None
    return check


def _obj(k, v):
    return None if isinstance(v, dict) else "%s must be an object" % k


# action -> (types, {param: checker}, required params, allow other params)
VOCAB = {
    "level": (("lamp",), {"level": _num(0, 100), "duration": _num(0, 31 * 86400)}, ("level",), False),
    "resume": (("lamp",), {}, (), False),
    "calendar": (("lamp",), {"calendar": _obj}, ("calendar",), False),
    "lamp_type": (("lamp",), {"wattage": _num(0, 10000), "tolerance": _num(0, 100),
                              "warmup_s": _num(0, 3600), "min_level": _num(0, 100),
                              "control": None, "current_min": _num(0, 100),
                              "current_max": _num(0, 100)}, (), True),
    "config": (("lamp", "bin"), {}, (), True),
    "report": (("lamp", "bin"), {}, (), False),
    "reboot": (("lamp", "bin"), {}, (), False),
    "geometry": (("bin",), {"depth_m": _num(0.1, 10), "offset_m": _num(0, 5)}, (), False),
    "thresholds": (("bin",), {"full_pct": _num(1, 100), "fire_c": _num(20, 200),
                              "fire_rise_c": _num(0.5, 100), "battery_low_v": _num(2, 5)}, (), False),
    "intervals": (("bin",), {"measure_s": _num(10, 86400 * 7), "heartbeat_s": _num(60, 86400 * 7),
                             "step_pct": _num(1, 100)}, (), False),
}


def validate(dtype, action, params):
    if not isinstance(action, str) or action not in VOCAB:
        raise CommandError(400, "unknown action %r; known for %s: %s" % (
            action, dtype, ", ".join(a for a, s in VOCAB.items() if dtype in s[0])))
    types, checks, required, free = VOCAB[action]
    if dtype not in types:
        raise CommandError(400, "action %r is not for a %s (only %s)" % (action, dtype, "/".join(types)))
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise CommandError(400, "params must be an object")
    for k in required:
        if k not in params:
            raise CommandError(400, "action %r needs parameter %r" % (action, k))
    for k, v in params.items():
        if k in checks:
            if checks[k] is not None:
                err = checks[k](k, v)
                if err:
                    raise CommandError(400, "%s: %s" % (action, err))
        elif not free:
            raise CommandError(400, "action %r has no parameter %r (known: %s)" % (
                action, k, ", ".join(checks) or "none"))
    if action == "config" and not params:
        raise CommandError(400, "action 'config' needs at least one key")
    return params


def new_id():
    return "c-" + os.urandom(6).hex()


def wire(c):
    """Command row -> the map sent to the device."""
    return {"id": c["id"], "a": c["action"], "p": c["params"], "exp": int(c["expires"])}


class Updates:
    """The command state changes of one event-loop iteration: ONE store job.

    The job is queued when the first change arrives (so it keeps its place
    among the other writes: a ``/cr`` answered after its results were set
    is answered after they are committed); later changes join it until the
    writer thread takes it (``closed``), then a new one starts."""
    __slots__ = ("lock", "items", "closed")

    def __init__(self):
        self.lock = threading.Lock()
        self.items = {}   # id -> (state, t, answer, attempts); the last change wins
        self.closed = False


def apply_updates(con, ups):
    """Store job (writer thread): write a batch of state changes."""
    with ups.lock:
        ups.closed = True
        items = list(ups.items.items())
    n = 0
    for cid, (state, t, answer, attempts) in items:
        n += st.update_command(con, cid, state, t, answer, attempts)
    return n


def insert_commands(con, cs):
    """Store job: a group's commands, one transaction."""
    return sum(st.insert_command(con, c) for c in cs)


class Window:
    """At most ``limit()`` holders at once, served in FIFO order (the limit is
    read on every release, so a config reload applies at once)."""

    def __init__(self, limit):
        self.limit = limit
        self.held = 0
        self.waiters = collections.deque()

    async def acquire(self):
        if self.held < self.limit() and not self.waiters:
            self.held += 1
            return
        f = asyncio.get_running_loop().create_future()
        self.waiters.append(f)
        try:
            await f
        except asyncio.CancelledError:
            if f.done() and not f.cancelled():
                self.release()  # granted, then cancelled before use
            else:
                try:
                    self.waiters.remove(f)
                except ValueError:
                    pass
            raise

    def release(self):
        self.held -= 1
        while self.waiters and self.held < self.limit():
            f = self.waiters.popleft()
            if not f.done():
                self.held += 1
                f.set_result(None)

    @property
    def queued(self):
        return len(self.waiters)


class Relay:
    def __init__(self, gw):
        self.gw = gw
        self.open = {}       # id -> command dict (queued/sent)
        self.by_dev = {}     # ep -> [ids] (open ones, creation order)
        self.waiters = {}    # id -> [futures] waiting for a final state
        self.tasks = {}      # id -> delivery task (always-on)
        self.sleeping = set()  # ids whose delivery task waits before a retry
        # Recently finished commands: the store lags the loop by one commit,
        # so lookups check here first (bounded).
        self.recent = collections.OrderedDict()
        self.ups = None      # the open Updates batch
        self.window = Window(lambda: self.gw.cfg["group_concurrency"])
        self._tuning = (None, None)
        self._remotes = {}   # (host, port) -> aiocoap remote (no resolver per command)

    @property
    def store(self):
        return self.gw.store

    def load(self, rows):
        for c in rows:
            self._track(c)

    def _track(self, c):
        self.open[c["id"]] = c
        self.by_dev.setdefault(c["device"], []).append(c["id"])

    def _untrack(self, c):
        self.open.pop(c["id"], None)
        ids = self.by_dev.get(c["device"])
        if ids and c["id"] in ids:
            ids.remove(c["id"])
            if not ids:
                del self.by_dev[c["device"]]

    def counts(self):
        out = {"queued": 0, "sent": 0}
        for c in self.open.values():
            out[c["state"]] += 1
        return out

    # -- creation -------------------------------------------------------------
    async def create(self, ep, action, params, ttl=None, cid=None, grp=None):
        dev = self.gw.registry.devices.get(ep)
        if dev is None:
            raise CommandError(404, "unknown device %r" % ep)
        if not dev.get("type"):
            raise CommandError(409, "device %r has no type yet" % ep)
        params = validate(dev["type"], action, params)
        if ttl is None:
            ttl = self.gw.cfg["command_ttl"]
        self._check_ttl(ttl)
        if cid is not None:
            if not isinstance(cid, str) or not 1 <= len(cid) <= 40:
                raise CommandError(400, "id must be a string of 1..40 chars")
            existing = self.lookup(cid) or await self.store.read(st.get_command, cid)
            if existing is not None:
                if existing["device"] != ep or existing["action"] != action:
                    raise CommandError(409, "command id %r already used for another command" % cid)
                return existing, False   # idempotent re-submission
        c = self._new(ep, action, params, ttl, cid, grp)
        await self.store.write(st.insert_command, c)   # durable before the id is handed out
        self._accept(c, dev)
        return c, True

    @staticmethod
    def _check_ttl(ttl):
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= 30 * 86400:
            raise CommandError(400, "ttl must be a number of seconds within 1..2592000")

    @staticmethod
    def _new(ep, action, params, ttl, cid=None, grp=None):
        now = time.time()
        return {"id": cid or new_id(), "device": ep, "action": action, "params": params,
                "state": "queued", "created": now, "updated": now, "expires": now + ttl,
                "attempts": 0, "answer": None, "grp": grp}

    def _accept(self, c, dev):
        """A command just made durable: track it, start its delivery."""
        c["ep"] = c["device"]
        c["result"] = None
        self._track(c)
        self.gw.metrics.inc("eclor_commands_total", state="queued")
        if not dev.get("queue"):
            self.kick(c)

    # -- transitions ------------------------------------------------------------
    def _set(self, c, state, answer=None):
        now = time.time()
        c["state"] = state
        c["updated"] = now
        if answer is not None:
            c["answer"] = c["result"] = answer
        self._persist(c["id"], (state, now, answer, c["attempts"]))
        self.gw.metrics.inc("eclor_commands_total", state=state)
        if state in FINAL:
            self._untrack(c)
            self.recent[c["id"]] = c
            if len(self.recent) > 1000:
                self.recent.popitem(last=False)
            t = self.tasks.pop(c["id"], None)
            if t is not None and t is not asyncio.current_task():
                t.cancel()
            for f in self.waiters.pop(c["id"], []):
                if not f.done():
                    f.set_result(c)

    def _persist(self, cid, change):
        ups = self.ups
        if ups is not None:
            with ups.lock:
                if not ups.closed:
                    old = ups.items.get(cid)
                    if old is not None and change[2] is None and old[2] is not None:
                        change = change[:2] + (old[2],) + change[3:]
                    ups.items[cid] = change
                    return
        ups = self.ups = Updates()
        ups.items[cid] = change
        self.store.write_nowait(apply_updates, ups)

    def lookup(self, cid):
        """The live view of a command (open or recently finished), or None."""
        return self.open.get(cid) or self.recent.get(cid)

    async def wait(self, cid, timeout):
        c = self.open.get(cid)
        if c is None:
            return self.recent.get(cid) or await self.store.read(st.get_command, cid)
        f = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(cid, []).append(f)
        try:
            return await asyncio.wait_for(asyncio.shield(f), timeout)
        except asyncio.TimeoutError:
            return dict(c)

    def result(self, ep, res):
        """A result map from a device ({"id","s","r"}); returns True if it closed a command."""
        if not isinstance(res, dict) or not isinstance(res.get("id"), str):
            return False
        c = self.open.get(res["id"])
        if c is None or c["device"] != ep:
            return False  # unknown, already final, or another device's id
        s = res.get("s")
        state = "done" if s == "done" else "failed"
        answer = {"s": s, "r": res.get("r")}
        self._set(c, state, answer)
        return True

    def expire(self, now):
        n = 0
        for c in [c for c in self.open.values() if c["expires"] <= now]:
            self._set(c, "expired", {"s": "expired", "r": "ttl elapsed in state %s" % c["state"]})
            n += 1
        return n

    # -- queue-mode delivery ------------------------------------------------------
    def pending_payload(self, ep, limit=None):
        """CBOR array of the device's open commands, oldest first, at most
        ``limit`` bytes (PENDING_MAX) of them; or b'' (no extra cost when empty).

        The rest wait for the next answer: a queue-mode device posts the
        results of what it got to /cr, whose answer carries the next ones
        (the bin takes up to four rounds in one wake), then the next wake."""
        ids = self.by_dev.get(ep)
        if not ids:
            return b""
        limit = limit or PENDING_MAX
        now = time.time()
        out = []
        size = 3  # the array's head: 1 byte up to 23 items, 3 up to 65,535
        for cid in list(ids):
            c = self.open[cid]
            if c["expires"] <= now:
                continue
            w = wire(c)
            n = len(cbor2.dumps(w))
            if out and size + n > limit:
                break  # (a first command alone larger than the limit still goes)
            size += n
            c["attempts"] += 1
            if c["state"] == "queued":
                self._set(c, "sent")
            out.append(w)
        return cbor2.dumps(out) if out else b""

    # -- always-on delivery ------------------------------------------------------
    def kick(self, c):
        if c["id"] in self.tasks or c["id"] not in self.open:
            return
        self.tasks[c["id"]] = asyncio.get_running_loop().create_task(self._deliver(c))

    def kick_device(self, ep):
        """The device just (re)registered or updated: retry its open commands now."""
        for cid in list(self.by_dev.get(ep, ())):
            c = self.open.get(cid)
            if c is not None:
                t = self.tasks.get(cid)
                if t is not None and cid in self.sleeping:
                    t.cancel()
                    self.tasks.pop(cid, None)
                self.kick(c)

    def tuning(self):
        """The relay's transmission parameters (config; cached per value)."""
        cfg = self.gw.cfg
        key = (cfg["command_ack_timeout"] or cfg["ack_timeout"], cfg["command_ack_random_factor"],
               cfg["max_retransmit"] if cfg["command_max_retransmit"] < 0 else cfg["command_max_retransmit"])
        if self._tuning[0] != key:
            t = TransportTuning()
            t.ACK_TIMEOUT, t.ACK_RANDOM_FACTOR, t.MAX_RETRANSMIT = key
            self._tuning = (key, t)
        return self._tuning[1]

    def _remote(self, host, port):
        """The aiocoap remote for a device's address, built once: a request
        given a ``coap://`` URI is resolved by aiocoap through getaddrinfo on
        an executor thread plus a route check, for every command."""
        key = (host, port)
        r = self._remotes.get(key)
        if r is not None:
            return r
        try:
            from aiocoap.transports.udp6 import UDP6EndpointAddress
            iface = self.gw.coap.udp
            if ":" in host:
                if "%" in host:
                    return None
                socket.inet_pton(socket.AF_INET6, host)
                sa = (host, port, 0, 0)
            else:
                socket.inet_pton(socket.AF_INET, host)
                sa = ("::ffff:" + host, port, 0, 0)
            r = UDP6EndpointAddress(sa, iface)
        except (ImportError, AttributeError, OSError, ValueError):
            return None
        if len(self._remotes) > 100000:
            self._remotes.clear()
        self._remotes[key] = r
        return r

    async def _exchange(self, dev, c):
        """POST /cmd (CON, CBOR) to the device's registered address -> (code, payload)."""
        host, port = dev["host"], dev["port"]
        req = aiocoap.Message(code=Code.POST, payload=cbor2.dumps(wire(c)), transport_tuning=self.tuning())
        req.opt.content_format = 60
        remote = self._remote(host, port)
        if remote is not None:
            req.remote = remote
            req.opt.uri_path = ("cmd",)
        else:
            req.set_request_uri("coap://%s/cmd" % ("[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)))
        self.gw.metrics.inc("eclor_coap_out_total", kind="command")
        timeout = max(1.0, c["expires"] - time.time())
        resp = await asyncio.wait_for(self.gw.coap.context.request(req, handle_blockwise=False).response, timeout)
        return int(resp.code), resp.payload

    async def _deliver(self, c):
        me = asyncio.current_task()
        try:
            while c["id"] in self.open:
                dev = self.gw.registry.devices.get(c["device"])
                if dev and dev.get("online") and dev.get("host"):
                    await self.window.acquire()
                    try:
                        if c["id"] not in self.open:
                            return
                        dev = self.gw.registry.devices.get(c["device"]) or dev  # address may have moved
                        c["attempts"] += 1
                        if c["state"] == "queued":
                            self._set(c, "sent")
                        code, payload = await self._exchange(dev, c)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        log.info("command %s to %s: %s; will retry", c["id"], c["device"], e)
                    else:
                        if code == 68 or code == 69:  # 2.04 / 2.05
                            res = None
                            try:
                                res = cbor2.loads(payload) if payload else None
                            except Exception:
                                pass
                            if isinstance(res, dict) and res.get("id") == c["id"]:
                                self.result(c["device"], res)
                            else:
                                self._set(c, "done", {"s": "done", "r": res})
                            return
                        if code in (163, 160):  # 5.03 / 5.00: device busy, try later
                            log.info("command %s: device answered %d.%02d", c["id"], code >> 5, code & 31)
                        else:
                            self._set(c, "failed", {"s": "failed", "r": "coap %d.%02d %s" % (
                                code >> 5, code & 31, payload[:200].decode("utf-8", "replace"))})
                            return
                    finally:
                        self.window.release()
                if c["id"] not in self.open:
                    return
                self.sleeping.add(c["id"])
                try:
                    await asyncio.sleep(min(self.gw.cfg["command_retry_s"],
                                            max(0.0, c["expires"] - time.time())))
                finally:
                    self.sleeping.discard(c["id"])
                if c["expires"] <= time.time():
                    self.expire(time.time())
                    return
        finally:
            if self.tasks.get(c["id"]) is me:
                del self.tasks[c["id"]]

    # -- groups ------------------------------------------------------------------
    async def group(self, selector, action, params, ttl, wait_s):
        devs = select(self.gw.registry.devices.values(), selector)
        if not devs:
            raise CommandError(404, "no device matches the selector %r" % (selector,))
        # validate once per type before creating anything: all or nothing
        checked = {t: validate(t, action, params) for t in {d["type"] for d in devs}}
        if ttl is None:
            ttl = self.gw.cfg["command_ttl"]
        self._check_ttl(ttl)
        grp = "g-" + os.urandom(6).hex()
        deadline = time.monotonic() + wait_s
        cs = [self._new(d["ep"], action, checked[d["type"]], ttl, grp=grp) for d in devs]
        # one store job for the whole group, durable before anything is sent
        await self.store.write(insert_commands, cs)
        for d, c in zip(devs, cs):
            self._accept(c, d)
        results = [None] * len(devs)

        async def one(i, d, c):
            if not d.get("queue"):
                c = await self.wait(c["id"], max(0.0, deadline - time.monotonic()))
            results[i] = {"ep": d["ep"], "id": c["id"], "state": c["state"], "answer": c.get("answer")}
        await asyncio.gather(*(one(i, d, c) for i, (d, c) in enumerate(zip(devs, cs))))
        summary = {}
        for r in results:
            summary[r["state"]] = summary.get(r["state"], 0) + 1
        summary["total"] = len(results)
        return {"group": grp, "action": action, "summary": summary,
                "devices": sorted(results, key=lambda r: r["ep"])}


def select(devices, selector):
    if not isinstance(selector, dict) or not selector:
        raise CommandError(400, "selector must be a non-empty object with zone/commune/type/tag")
    bad = set(selector) - {"zone", "commune", "type", "tag", "online"}
    if bad:
        raise CommandError(400, "unknown selector key(s): %s" % ", ".join(sorted(bad)))
    out = []
    for d in devices:
        if not d.get("type"):
            continue
        if any(selector.get(k) is not None and d.get(k) != selector[k] for k in ("zone", "commune", "type")):
            continue
        if selector.get("tag") is not None and selector["tag"] not in (d.get("tags") or []):
            continue
        if selector.get("online") is not None and bool(d.get("online")) != bool(selector["online"]):
            continue
        out.append(d)
    return out
