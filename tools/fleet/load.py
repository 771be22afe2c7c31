"""Raw-protocol load devices: thousands of lean CPython lamps and bins in one
asyncio process, each with its own UDP socket, speaking the ECLOR wire
contract (docs/architecture.md, ../shared/design.md) byte by byte.

Why a second implementation of the device side: running the real firmware
costs one MicroPython interpreter per handful of devices, which does not
reach a territory's thousand lamps on a 2-core machine. These devices are
the load generator for the gateway (bench/fleet.py, `eclor sim --mode
cpython`); the firmware itself is exercised by the firmware fleet host.
The CoAP codec here is written from RFC 7252, not borrowed from aiocoap,
so the gateway (aiocoap) is checked against an independent peer.

What one device does:
- registration `POST /rd?ep&lt&et[&b=UQ]` (CON, retransmitted per RFC 7252:
  ACK_TIMEOUT x [1, ACK_RANDOM_FACTOR], doubling, MAX_RETRANSMIT, NSTART 1),
  update `POST /rd/ID` when 3/4 of the lifetime has passed, re-registration
  on 4.04;
- readings `POST /dp`, SenML CBOR (ct 112); a reading counts as delivered
  only on 2.04 (then it is in the device's ledger `acked`); 5.03 means keep
  it and retry after Max-Age;
- lamps serve `POST /cmd` (CBOR command map) and answer 2.04 with
  {"id", "s": "done"|"failed", "r"}; bins (queue mode) take the commands the
  gateway puts in the 2.04 answering `/dp` and confirm with `POST /cr`;
- the last 8 command ids are remembered with their result, and a
  retransmitted request (same peer and MID) gets the same answer again.

Loss is injected on both directions with probability `loss`, from a seeded
generator so that a run can be replayed.
"""
import asyncio
import collections
import json
import random
import socket
import struct
import time
import zlib

import cbor2

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
CREATED, DELETED, VALID, CHANGED, CONTENT = 65, 66, 67, 68, 69
NOT_FOUND, BAD_REQUEST, SERVICE_UNAVAILABLE = 132, 128, 163
O_OBSERVE, O_LOCATION_PATH, O_URI_PATH, O_CONTENT_FORMAT = 6, 8, 11, 12
O_MAX_AGE, O_URI_QUERY, O_ACCEPT = 14, 15, 17
CT_LINK, CT_JSON, CT_CBOR, CT_SENML_CBOR = 40, 50, 60, 112


class Params:
    """RFC 7252 transmission parameters (seconds); smaller in tests."""

    def __init__(self, ack_timeout=2.0, ack_random_factor=1.5, max_retransmit=4):
        self.ack_timeout = ack_timeout
        self.ack_random_factor = ack_random_factor
        self.max_retransmit = max_retransmit


class Timeout(Exception):
    pass


class Msg:
    __slots__ = ("mtype", "code", "mid", "token", "options", "payload")

    def __init__(self, mtype, code, mid, token, options, payload):
        self.mtype, self.code, self.mid, self.token = mtype, code, mid, token
        self.options, self.payload = options, payload

    def opt(self, num):
        return [v for n, v in self.options if n == num]

    def uint(self, num, default=None):
        vals = self.opt(num)
        return int.from_bytes(vals[0], "big") if vals else default


def _nibble(n):
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes((n - 13,))
    return 14, struct.pack("!H", n - 269)


def encode(mtype, code, mid, token, options=(), payload=b""):
    """options: iterable of (number, bytes); sorted here (stable for repeats)."""
    out = bytearray((0x40 | (mtype << 4) | len(token), code))
    out += struct.pack("!H", mid)
    out += token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        d, dx = _nibble(num - last)
        ln, lx = _nibble(len(val))
        out.append((d << 4) | ln)
        out += dx + lx + val
        last = num
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def decode(data):
    """Parse a datagram; ValueError on anything malformed."""
    if len(data) < 4 or data[0] >> 6 != 1:
        raise ValueError("not CoAP v1")
    tkl = data[0] & 15
    if tkl > 8 or len(data) < 4 + tkl:
        raise ValueError("bad token length")
    mtype, code = (data[0] >> 4) & 3, data[1]
    mid = (data[2] << 8) | data[3]
    token = bytes(data[4:4 + tkl])
    i, num, opts, n = 4 + tkl, 0, [], len(data)
    while i < n:
        b = data[i]
        if b == 0xFF:
            if i + 1 >= n:
                raise ValueError("payload marker without payload")
            return Msg(mtype, code, mid, token, opts, bytes(data[i + 1:]))
        i += 1
        vals = []
        for nib in (b >> 4, b & 15):
            if nib == 13:
                if i >= n:
                    raise ValueError("truncated option")
                vals.append(data[i] + 13)
                i += 1
            elif nib == 14:
                if i + 2 > n:
                    raise ValueError("truncated option")
                vals.append(((data[i] << 8) | data[i + 1]) + 269)
                i += 2
            elif nib == 15:
                raise ValueError("reserved option nibble")
            else:
                vals.append(nib)
        num += vals[0]
        if i + vals[1] > n:
            raise ValueError("truncated option value")
        opts.append((num, bytes(data[i:i + vals[1]])))
        i += vals[1]
    return Msg(mtype, code, mid, token, opts, b"")


def _uint(v):
    return v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""


def code_str(code):
    return "%d.%02d" % (code >> 5, code & 31)


class Device(asyncio.DatagramProtocol):
    """One virtual lamp or bin on its own UDP socket."""

    def __init__(self, fleet, spec):
        self.fleet = fleet
        self.spec = spec
        self.ep = spec["ep"]
        self.role = spec["role"]
        self.queue = self.role == "bin"
        self.transport = None
        self.rng = random.Random(zlib.crc32(self.ep.encode()) ^ fleet.seed)
        self.mid = self.rng.getrandbits(16)
        self.pending = {}        # mid -> [token, future, empty_ack_seen]
        self.by_token = {}       # token -> future (separate responses)
        self.served = collections.OrderedDict()  # (peer, mid) -> reply bytes
        self.lock = asyncio.Lock()  # NSTART 1: one outstanding request
        self.location = None
        self.registered_at = 0.0
        self.acked = []          # (name, t) of every reading the gateway acknowledged
        self.unacked = []        # SenML records not yet acknowledged (kept, resent)
        self.results = collections.OrderedDict()  # last 8 command ids -> result map
        self.commands = []       # (id, action, params, monotonic time applied)
        # Lamp state
        self.level = 0
        self.override = None
        self.energy_wh = 0.0
        self.hours_s = 0
        self.switch_on = 0
        # Bin state
        self.fill = self.rng.uniform(5, 60)

    # -- transport --------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport

    def send(self, data, addr):
        if self.fleet.lose():
            self.fleet.stats["dropped_out"] += 1
            return
        self.fleet.stats["tx"] += 1
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.fleet.stats["socket_errors"] += 1

    def datagram_received(self, data, addr):
        if self.fleet.lose():
            self.fleet.stats["dropped_in"] += 1
            return
        self.fleet.stats["rx"] += 1
        try:
            m = decode(data)
        except ValueError:
            self.fleet.stats["bad_rx"] += 1
            return
        if m.code == 0:
            if m.mtype == CON:  # CoAP ping
                self.send(encode(RST, 0, m.mid, b""), addr)
            elif m.mtype in (ACK, RST):
                ent = self.pending.get(m.mid)
                if ent is not None:
                    if m.mtype == RST:
                        ent[1].done() or ent[1].set_exception(Timeout("reset by peer"))
                    else:
                        ent[2] = True  # separate response will follow
            return
        if m.code < 32:
            self._serve(m, addr)
            return
        if m.mtype == ACK:
            ent = self.pending.get(m.mid)
            if ent is not None and ent[0] == m.token and not ent[1].done():
                ent[1].set_result(m)
            return
        # Separate response (CON or NON) matched by token.
        fut = self.by_token.get(m.token)
        if m.mtype == CON:
            self.send(encode(ACK, 0, m.mid, b""), addr)
        if fut is not None and not fut.done():
            fut.set_result(m)

    def _next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    async def request(self, code, path, query=(), payload=b"", ct=None):
        """A CON request to the gateway with RFC 7252 retransmission."""
        async with self.lock:
            p = self.fleet.params
            mid = self._next_mid()
            token = self.rng.getrandbits(32).to_bytes(4, "big")
            opts = [(O_URI_PATH, s.encode()) for s in path.strip("/").split("/") if s]
            opts += [(O_URI_QUERY, q.encode()) for q in query]
            if ct is not None:
                opts.append((O_CONTENT_FORMAT, _uint(ct)))
            data = encode(CON, code, mid, token, opts, payload)
            fut = asyncio.get_running_loop().create_future()
            ent = [token, fut, False]
            self.pending[mid] = ent
            self.by_token[token] = fut
            timeout = p.ack_timeout * self.rng.uniform(1.0, p.ack_random_factor)
            t0 = time.monotonic()
            try:
                for attempt in range(p.max_retransmit + 1):
                    if attempt:
                        self.fleet.stats["retransmissions"] += 1
                    self.send(data, self.fleet.gateway)
                    try:
                        m = await asyncio.wait_for(asyncio.shield(fut), timeout)
                        self.fleet.latency.append(time.monotonic() - t0)
                        return m
                    except asyncio.TimeoutError:
                        if ent[2]:  # empty ACK seen: wait for the separate response
                            try:
                                return await asyncio.wait_for(fut, 4 * p.ack_timeout * 16)
                            except asyncio.TimeoutError:
                                break
                        timeout *= 2
                self.fleet.stats["timeouts"] += 1
                raise Timeout("%s: no answer to %s" % (self.ep, path))
            finally:
                self.pending.pop(mid, None)
                self.by_token.pop(token, None)

    # -- registration -----------------------------------------------------
    def links(self):
        if self.role == "lamp":
            return (b'</cmd>;rt="eclor.cmd";ct=60,</state>;rt="eclor.lamp.state";ct=112,'
                    b'</config>;rt="eclor.config";ct=60')
        return b'</dp>;rt="eclor.bin.state";ct=112'

    async def register(self):
        q = ["ep=" + self.ep, "lt=%d" % self.fleet.lt, "et=eclor." + self.role]
        if self.queue:
            q.append("b=UQ")
        for _ in range(6):
            m = await self.request(POST, "rd", q, self.links(), CT_LINK)
            if m.code != SERVICE_UNAVAILABLE:
                break
            self.fleet.stats["busy"] += 1
            await asyncio.sleep(min(m.uint(O_MAX_AGE, 1) or 0.1, 30) * self.rng.uniform(1, 1.5))
        if m.code != CREATED:
            self.fleet.stats["register_errors"] += 1
            raise Timeout("%s: registration answered %s %r" % (self.ep, code_str(m.code), m.payload[:80]))
        self.location = "/".join(v.decode() for v in m.opt(O_LOCATION_PATH))
        self.registered_at = time.monotonic()
        self.fleet.stats["registered"] += 1
        return self.location

    async def ensure(self):
        """Register, or update when 3/4 of the lifetime has passed."""
        if self.location is None:
            await self.register()
            return
        if time.monotonic() - self.registered_at < 0.75 * self.fleet.lt:
            return
        m = await self.request(POST, self.location)
        if m.code == NOT_FOUND:
            self.location = None
            await self.register()
        elif m.code == CHANGED:
            self.registered_at = time.monotonic()

    # -- readings ---------------------------------------------------------
    def readings(self, now):
        """Fresh SenML records (dicts with string names) for one report."""
        if self.role == "lamp":
            w = self.spec.get("lamp", {}).get("wattage", 40)
            power = round(w * self.level / 100.0, 1)
            self.energy_wh += power * 0.25
            return [("level", "%", self.level), ("target", "%", self.level),
                    ("relay", None, self.level > 0), ("power", "W", power),
                    ("energy", "Wh", round(self.energy_wh, 2)), ("hours", "s", self.hours_s),
                    ("switch_on", None, self.switch_on)]
        self.fill = min(100.0, self.fill + self.rng.uniform(0.5, 4))
        depth = self.spec.get("bin", {}).get("depth_m", 1.1)
        off = self.spec.get("bin", {}).get("offset_m", 0.25)
        dist = off + depth * (1 - self.fill / 100.0)
        return [("fill", "%", round(self.fill, 1)), ("distance", "m", round(dist, 3)),
                ("temp", "Cel", round(self.rng.uniform(8, 22), 1)), ("battery", "V", 3.9),
                ("status", "vs", "ok")]

    def senml(self, records, bt):
        out = []
        for i, (name, unit, value) in enumerate(records):
            r = {0: name}
            if i == 0:
                r[-2] = "urn:dev:ep:%s:" % self.ep
                r[-3] = bt
            if unit == "vs":
                r[3] = value
            elif isinstance(value, bool):
                r[4] = value
            else:
                if unit:
                    r[1] = unit
                r[2] = value
            out.append(r)
        return cbor2.dumps(out)

    async def report(self):
        """Send one report (plus any older unacknowledged one). Returns the
        number of records acknowledged. Never loses a reading: on failure
        the records stay in `unacked` for the next call."""
        # Unique timestamps per device (ms) so the gateway's dedup by
        # (device, name, time) never merges two distinct reports.
        now = round(time.time(), 3)
        if self.unacked and self.unacked[-1][0] >= now:
            now = round(self.unacked[-1][0] + 0.001, 3)
        self.unacked.append((now, self.readings(now)))
        acked = busy = 0
        while self.unacked:
            bt, recs = self.unacked[0]
            await self.ensure()
            m = await self.request(POST, "dp", (), self.senml(recs, bt), CT_SENML_CBOR)
            if m.code == CHANGED:
                self.unacked.pop(0)
                for name, _, _ in recs:
                    self.acked.append((name, bt))
                acked += len(recs)
                self.fleet.stats["readings_acked"] += len(recs)
                if self.queue and m.payload:
                    await self._queue_commands(m)
            elif m.code == SERVICE_UNAVAILABLE:
                self.fleet.stats["busy"] += 1
                busy += 1
                if busy > 5:
                    raise Timeout("%s: gateway busy (5.03) %d times" % (self.ep, busy))
                await asyncio.sleep(min(m.uint(O_MAX_AGE, 1) or 0.1, 30))
            elif m.code in (NOT_FOUND, 131):  # unknown sender: register again
                self.location = None
                self.fleet.stats["reregistrations"] += 1
            else:
                self.fleet.stats["dp_errors"] += 1
                self.fleet.errors.append("%s /dp -> %s %r" % (self.ep, code_str(m.code), m.payload[:120]))
                self.unacked.pop(0)  # the gateway refuses it for good; do not loop
        return acked

    # -- commands ---------------------------------------------------------
    def apply(self, cmd):
        """Apply one command map, idempotent by id; returns the result map."""
        if not isinstance(cmd, dict) or not isinstance(cmd.get("id"), str):
            return {"id": None, "s": "failed", "r": "not a command map"}
        cid = cmd["id"]
        if cid in self.results:
            self.fleet.stats["duplicate_commands"] += 1
            return self.results[cid]
        action, params = cmd.get("a"), cmd.get("p") or {}
        res = {"id": cid, "s": "done"}
        if cmd.get("exp") and cmd["exp"] < time.time():
            res = {"id": cid, "s": "failed", "r": "expired"}
        elif self.role == "lamp" and action == "level":
            lvl = params.get("level")
            if not isinstance(lvl, (int, float)) or not 0 <= lvl <= 100:
                res = {"id": cid, "s": "failed", "r": "level must be 0-100"}
            else:
                if self.level == 0 and lvl > 0:
                    self.switch_on += 1
                self.level = self.override = lvl
                res["r"] = {"level": lvl}
        elif self.role == "lamp" and action == "resume":
            self.override = None
        elif action in ("report", "reboot", "config") or (
                self.role == "lamp" and action in ("calendar", "lamp_type")) or (
                self.role == "bin" and action in ("geometry", "thresholds", "intervals")):
            pass
        else:
            res = {"id": cid, "s": "failed", "r": "unknown action %r" % (action,)}
        self.results[cid] = res
        while len(self.results) > 8:
            self.results.popitem(last=False)
        self.commands.append((cid, action, params, time.monotonic()))
        self.fleet.on_command(self, cid)
        return res

    def _serve(self, m, addr):
        key = (addr, m.mid)
        cached = self.served.get(key)
        if cached is not None:
            if m.mtype == CON:
                self.send(cached, addr)
            return
        path = "/".join(v.decode("utf-8", "replace") for v in m.opt(O_URI_PATH))
        ct, payload = None, b""
        if path == "cmd" and m.code == POST and self.role == "lamp":
            code, ct, payload = self._cmd_request(m)
        elif path == "state" and m.code == GET and self.role == "lamp":
            code, ct = CONTENT, CT_SENML_CBOR
            payload = self.senml(self.readings(time.time())[:2], round(time.time(), 3))
        else:
            code = NOT_FOUND
        opts = [(O_CONTENT_FORMAT, _uint(ct))] if ct is not None else []
        if m.mtype == CON:
            reply = encode(ACK, code, m.mid, m.token, opts, payload)
        else:
            reply = encode(NON, code, self._next_mid(), m.token, opts, payload)
        self.served[key] = reply
        while len(self.served) > 16:
            self.served.popitem(last=False)
        self.send(reply, addr)

    def _cmd_request(self, m):
        fmt = m.uint(O_CONTENT_FORMAT, CT_CBOR)
        try:
            cmd = json.loads(m.payload) if fmt == CT_JSON else cbor2.loads(m.payload)
        except Exception as e:  # noqa: BLE001 - any junk payload is a 4.00
            return BAD_REQUEST, 0, ("bad command payload: %s" % e).encode()
        res = self.apply(cmd)
        if res["id"] is None:
            return BAD_REQUEST, 0, res["r"].encode()
        return CHANGED, CT_CBOR, cbor2.dumps(res)

    async def _queue_commands(self, m):
        """Queue mode: apply the commands handed over with a /dp or /cr answer,
        confirm them with POST /cr in the same wake (bounded rounds)."""
        for _ in range(4):
            if not m.payload:
                return
            try:
                cmds = cbor2.loads(m.payload)
            except Exception:  # noqa: BLE001
                self.fleet.errors.append("%s: undecodable command list" % self.ep)
                return
            if isinstance(cmds, dict):
                cmds = [cmds]
            results = [self.apply(c) for c in cmds]
            m = await self.request(POST, "cr", (), cbor2.dumps(results), CT_CBOR)
            if m.code != CHANGED:
                self.fleet.errors.append("%s /cr -> %s" % (self.ep, code_str(m.code)))
                return

    async def deregister(self):
        if self.location:
            try:
                await self.request(DELETE, self.location)
            except Timeout:
                pass
            self.location = None


class Fleet:
    """Many Devices against one gateway. Shared loss generator, counters and
    command log (command id -> {ep: monotonic time applied})."""

    def __init__(self, specs, gateway=("127.0.0.1", 5683), loss=0.0, params=None, seed=1, lt=3600):
        if not 0 <= loss < 1:
            raise ValueError("loss must be in [0, 1)")
        self.specs = specs
        self.gateway = gateway
        self.loss = loss
        self.params = params or Params()
        self.seed = seed
        self.lt = lt
        self._loss_rng = random.Random(seed * 7919 + 1)
        self.devices = []
        self.stats = collections.Counter()
        self.latency = []
        self.errors = []
        self.cmd_log = collections.defaultdict(dict)

    def lose(self):
        return self.loss > 0 and self._loss_rng.random() < self.loss

    def on_command(self, dev, cid):
        self.cmd_log[cid].setdefault(dev.ep, time.monotonic())

    async def open(self):
        loop = asyncio.get_running_loop()
        fam = socket.AF_INET6 if ":" in self.gateway[0] else socket.AF_INET
        local = "::1" if fam == socket.AF_INET6 else "127.0.0.1"
        for spec in self.specs:
            dev = Device(self, spec)
            await loop.create_datagram_endpoint(lambda d=dev: d, local_addr=(local, 0), family=fam)
            self.devices.append(dev)
        return self

    def by_role(self, role):
        return [d for d in self.devices if d.role == role]

    async def each(self, devices, fn, spread_s=0.0, concurrency=None):
        """Run fn(dev) for every device, each starting at a random moment in
        [0, spread_s); returns the number that failed (they are counted and
        their reason kept in self.errors)."""
        sem = asyncio.Semaphore(concurrency) if concurrency else None
        rng = random.Random(self.seed)

        async def one(dev, delay):
            if delay:
                await asyncio.sleep(delay)
            try:
                if sem:
                    async with sem:
                        await fn(dev)
                else:
                    await fn(dev)
                return 0
            except Timeout as e:
                self.errors.append(str(e))
                return 1
        res = await asyncio.gather(*(one(d, rng.uniform(0, spread_s) if spread_s else 0) for d in devices))
        return sum(res)

    async def register_all(self, devices=None, spread_s=0.0):
        return await self.each(self.devices if devices is None else devices,
                                lambda d: d.register(), spread_s)

    async def report_all(self, devices=None, spread_s=0.0):
        return await self.each(self.devices if devices is None else devices,
                                lambda d: d.report(), spread_s)

    async def run(self, duration, report_s, stop=None, on_tick=None):
        """Steady state for `duration` seconds (None: until stop is set):
        every device registers, then reports every report_s (with jitter)."""
        stop = stop or asyncio.Event()
        end = None if duration is None else time.monotonic() + duration

        async def life(dev):
            rng = random.Random(zlib.crc32(dev.ep.encode()) ^ (self.seed * 31 + 7))
            await asyncio.sleep(rng.uniform(0, min(report_s, 5)))
            while not stop.is_set() and (end is None or time.monotonic() < end):
                try:
                    await dev.report()
                except Timeout as e:
                    self.errors.append(str(e))
                wait = report_s * rng.uniform(0.8, 1.2)
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass

        async def ticker():
            while not stop.is_set() and (end is None or time.monotonic() < end):
                await asyncio.sleep(1)
                if on_tick:
                    on_tick(self)

        tasks = [asyncio.ensure_future(life(d)) for d in self.devices] + [asyncio.ensure_future(ticker())]
        try:
            if end is None:
                await stop.wait()
            else:
                try:
                    await asyncio.wait_for(stop.wait(), duration)
                except asyncio.TimeoutError:
                    pass
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def acked_readings(self):
        return sum(len(d.acked) for d in self.devices)

    def close(self):
        for d in self.devices:
            if d.transport:
                d.transport.close()
