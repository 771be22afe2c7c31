"""Lean CoAP load generator: simulated devices posting confirmable SenML CBOR.

Shared by bench/gateway_ingest.py (and importable by a fleet bench:
``sys.path.insert(0, "bench"); import loadgen``).

Why not aiocoap on the client side: a bench must measure the server, and an
aiocoap client costs about as much CPU per request as the aiocoap server it
talks to, so on a small box the client would cap the figure.  This client is
raw UDP with one epoll loop: each simulated device owns its own socket (as a
real device does; the gateway answers to the address a device registered
from), registers with ``POST /rd`` like the firmware, then keeps up to
``window / devices`` confirmable ``POST /dp`` outstanding (1 = NSTART 1).  It
implements what the server side can ask of a CoAP client: piggybacked and
separate responses (empty ACK, then a CON response that we ACK), RST,
retransmission with exponential back-off, 5.03 counted apart.  Its own CPU
time is reported so that a client-bound run is visible.

Also ``python bench/loadgen.py --serve-bare HOST:PORT``: the reference
server, a bare aiocoap resource that answers ``/rd`` with 2.01 and ``/dp``
with 2.04 and does nothing else.
"""
import argparse
import random
import selectors
import socket
import struct
import sys
import time

CON, NON, ACK, RST = 0, 1, 2, 3
POST = 2
CREATED, CHANGED = 65, 68
SERVICE_UNAVAILABLE = 163
URI_PATH, CONTENT_FORMAT, URI_QUERY, MAX_AGE, LOCATION_PATH = 11, 12, 15, 14, 8
CT_LINK, CT_SENML_CBOR = 40, 112


def code_str(code):
    return "%d.%02d" % (code >> 5, code & 31)


# ---------------------------------------------------------------------------
# CBOR: the little SenML needs (ints, floats, text, bools, arrays, maps)


def cbor(obj, out=None):
    out = bytearray() if out is None else out
    if obj is True or obj is False:
        out.append(0xF5 if obj else 0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif isinstance(obj, float):
        out.append(0xFB)
        out += struct.pack(">d", obj)
    elif isinstance(obj, str):
        b = obj.encode()
        _head(out, 3, len(b))
        out += b
    elif isinstance(obj, (bytes, bytearray)):
        _head(out, 2, len(obj))
        out += obj
    elif isinstance(obj, (list, tuple)):
        _head(out, 4, len(obj))
        for x in obj:
            cbor(x, out)
    elif isinstance(obj, dict):
        _head(out, 5, len(obj))
        for k, v in obj.items():
            cbor(k, out)
            cbor(v, out)
    else:
        raise TypeError(type(obj))
    return out


def _head(out, major, n):
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out += bytes((m | 24, n))
    elif n < 0x10000:
        out.append(m | 25)
        out += struct.pack(">H", n)
    elif n < 0x100000000:
        out.append(m | 26)
        out += struct.pack(">I", n)
    else:
        out.append(m | 27)
        out += struct.pack(">Q", n)


# ---------------------------------------------------------------------------
# CoAP messages


def encode(mtype, code, mid, token, options, payload=b""):
    """options: list of (number, bytes), any order."""
    out = bytearray(((1 << 6) | (mtype << 4) | len(token), code, mid >> 8, mid & 0xFF))
    out += token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        delta, length = num - last, len(val)
        last = num
        hdr = bytearray(1)
        d, ext_d = _nibble(delta)
        l, ext_l = _nibble(length)
        hdr[0] = (d << 4) | l
        out += hdr + ext_d + ext_l + val
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


def _nibble(n):
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes((n - 13,))
    return 14, struct.pack(">H", n - 269)


def parse(data):
    """-> (type, code, mid, token, options dict num->[bytes], payload) or None if junk."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    mtype = (data[0] >> 4) & 3
    tkl = data[0] & 15
    code = data[1]
    mid = (data[2] << 8) | data[3]
    i = 4 + tkl
    token = bytes(data[4:i])
    opts = {}
    num = 0
    n = len(data)
    while i < n:
        b = data[i]
        i += 1
        if b == 0xFF:
            return mtype, code, mid, token, opts, bytes(data[i:])
        d, l = b >> 4, b & 15
        if d == 13:
            d = data[i] + 13
            i += 1
        elif d == 14:
            d = ((data[i] << 8) | data[i + 1]) + 269
            i += 2
        if l == 13:
            l = data[i] + 13
            i += 1
        elif l == 14:
            l = ((data[i] << 8) | data[i + 1]) + 269
            i += 2
        num += d
        opts.setdefault(num, []).append(bytes(data[i:i + l]))
        i += l
    return mtype, code, mid, token, opts, b""


def uint_opt(v):
    return v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""


# ---------------------------------------------------------------------------
# Simulated devices

NAMES = (("power", "W"), ("energy", "Wh"), ("level", "%"), ("hours", "s"),
         ("voltage", "V"), ("current", "A"), ("pf", "/"), ("target", "%"))


class Device:
    __slots__ = ("ep", "sock", "mid", "tok", "outstanding", "seq", "location", "acked")

    def __init__(self, ep, host):
        self.ep = ep
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.mid = random.randrange(0x10000)
        self.tok = random.randrange(1 << 32)
        self.outstanding = {}  # mid -> Pending
        self.seq = 0
        self.location = None
        self.acked = []  # (bt, n_records) of readings that got 2.04, when asked to keep them

    def next_ids(self):
        self.mid = (self.mid + 1) & 0xFFFF
        self.tok = (self.tok + 1) & 0xFFFFFFFF
        return self.mid, self.tok.to_bytes(4, "big")


class Pending:
    __slots__ = ("dev", "mid", "token", "msg", "t0", "deadline", "timeout", "tries", "empty_acked", "bt", "what")

    def __init__(self, dev, mid, token, msg, t0, timeout, bt, what):
        self.dev, self.mid, self.token, self.msg = dev, mid, token, msg
        self.t0 = t0
        self.timeout = timeout
        self.deadline = t0 + timeout
        self.tries = 0
        self.empty_acked = False
        self.bt = bt
        self.what = what


def record_name(i):
    n, u = NAMES[i % len(NAMES)]
    return ("%s%d" % (n, i // len(NAMES)) if i >= len(NAMES) else n), u


def senml_payload(ep, bt, records, seq):
    recs = []
    for i in range(records):
        n, u = record_name(i)
        # values inside the ranges a validating gateway enforces (level 0-100 %, pf -1..1)
        r = {0: n, 1: u, 2: 0.95 if n == "pf" else float(seq % 90) + i * 0.25}
        if i == 0:
            r[-2] = "urn:dev:ep:%s:" % ep
            r[-3] = bt
        recs.append(r)
    return bytes(cbor(recs))


class LoadGen:
    """Closed-loop load: each device keeps `per_device` requests outstanding."""

    def __init__(self, host, port, devices=16, window=16, records=1, prefix="bench",
                 ack_timeout=2.0, max_retransmit=4, keep_acked=False, et="eclor.lamp"):
        self.addr = (host, port)
        self.records = records
        self.per_device = max(1, -(-window // devices))
        self.window = window
        self.ack_timeout = ack_timeout
        self.max_retransmit = max_retransmit
        self.keep_acked = keep_acked
        self.et = et
        self.devices = [Device("%s-%04d" % (prefix, i), host) for i in range(devices)]
        self.sel = selectors.DefaultSelector()
        for d in self.devices:
            self.sel.register(d.sock, selectors.EVENT_READ, d)
        # bt: distinct per request so that a gateway's (device, name, time)
        # de-duplication never folds two different readings into one.
        self.bt0 = int(time.time()) - 10 * 86400
        self.reset_stats()

    def reset_stats(self):
        self.ok = 0
        self.codes = {}
        self.lat = []
        self.retransmissions = 0
        self.timeouts = 0
        self.unavailable = 0
        self.junk = 0

    # -- requests ---------------------------------------------------------

    def _send(self, dev, msg_fn, what, bt=None):
        mid, token = dev.next_ids()
        msg = msg_fn(mid, token)
        now = time.perf_counter()
        timeout = self.ack_timeout * random.uniform(1.0, 1.5)
        p = Pending(dev, mid, token, msg, now, timeout, bt, what)
        dev.outstanding[mid] = p
        try:
            dev.sock.sendto(msg, self.addr)
        except BlockingIOError:
            pass  # retransmission will carry it
        return p

    def _post_dp(self, dev):
        dev.seq += 1
        bt = self.bt0 + dev.seq
        payload = senml_payload(dev.ep, bt, self.records, dev.seq)
        opts = [(URI_PATH, b"dp"), (CONTENT_FORMAT, bytes((CT_SENML_CBOR,)))]
        return self._send(dev, lambda mid, tok: encode(CON, POST, mid, tok, opts, payload), "dp", bt)

    def register_all(self, lt=3600, timeout=20.0):
        """POST /rd from every device's own socket; raises if one is refused."""
        for dev in self.devices:
            q = [b"ep=" + dev.ep.encode(), b"lt=%d" % lt, b"et=" + self.et.encode()]
            opts = [(URI_PATH, b"rd"), (CONTENT_FORMAT, bytes((CT_LINK,)))] + [(URI_QUERY, x) for x in q]
            links = b'</dp>;ct=112,</cmd>;ct=60'
            self._send(dev, lambda mid, tok: encode(CON, POST, mid, tok, opts, links), "rd")
        end = time.perf_counter() + timeout
        done = {}
        while len(done) < len(self.devices):
            if time.perf_counter() > end:
                raise RuntimeError("registration timed out for %d devices" % (len(self.devices) - len(done)))
            for p, code, opts in self._poll(0.05):
                if code != CREATED:
                    raise RuntimeError("%s: POST /rd answered %s" % (p.dev.ep, code_str(code)))
                p.dev.location = "/".join(x.decode() for x in opts.get(LOCATION_PATH, []))
                done[p.dev.ep] = True
        self.reset_stats()

    # -- receive / retransmit ----------------------------------------------

    def _poll(self, timeout):
        """Wait up to timeout; return completed (Pending, code, options)."""
        completed = []
        for key, _ in self.sel.select(timeout):
            dev = key.data
            sock = dev.sock
            while True:
                try:
                    data = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:
                    continue  # ICMP from an earlier send; the retransmission decides
                m = parse(data)
                if m is None:
                    self.junk += 1
                    continue
                mtype, code, mid, token, opts, _payload = m
                if mtype == ACK or mtype == RST:
                    p = dev.outstanding.get(mid)
                    if p is None:
                        continue  # duplicate ACK of something already complete
                    if mtype == RST:
                        del dev.outstanding[mid]
                        completed.append((p, -1, opts))
                    elif code == 0:
                        p.empty_acked = True  # separate response will follow
                        p.deadline = float("inf")
                    else:
                        del dev.outstanding[mid]
                        completed.append((p, code, opts))
                else:
                    # Separate response (CON or NON): match by token.
                    if mtype == CON:
                        sock.sendto(encode(ACK, 0, mid, b"", []), self.addr)
                    for pmid, p in dev.outstanding.items():
                        if p.token == token:
                            del dev.outstanding[pmid]
                            completed.append((p, code, opts))
                            break
        now = time.perf_counter()
        for dev in self.devices:
            if not dev.outstanding:
                continue
            for mid, p in list(dev.outstanding.items()):
                if now >= p.deadline:
                    if p.tries >= self.max_retransmit:
                        del dev.outstanding[mid]
                        self.timeouts += 1
                        continue
                    p.tries += 1
                    self.retransmissions += 1
                    p.timeout *= 2
                    p.deadline = now + p.timeout
                    try:
                        dev.sock.sendto(p.msg, self.addr)
                    except BlockingIOError:
                        pass
        return completed

    # -- the run -----------------------------------------------------------

    def run(self, seconds, warmup=1.0):
        """Closed loop for warmup + seconds; stats cover the last `seconds` only."""
        t_start = time.perf_counter()
        t_measure = t_start + warmup
        t_end = t_measure + seconds
        measuring = warmup <= 0
        for dev in self.devices:
            for _ in range(self.per_device):
                self._post_dp(dev)
        cpu0 = wall0 = None
        if measuring:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            self.on_measure_start()
        lat = self.lat
        while True:
            now = time.perf_counter()
            if not measuring and now >= t_measure:
                self.reset_stats()
                lat = self.lat
                measuring = True
                cpu0, wall0 = time.process_time(), now
                self.on_measure_start()
            stopping = now >= t_end
            if stopping and not any(d.outstanding for d in self.devices):
                break
            if now >= t_end + 3 * self.ack_timeout:
                break  # stragglers: counted as not acknowledged
            for p, code, _opts in self._poll(0.02):
                if code == CHANGED:
                    self.ok += 1
                    lat.append(time.perf_counter() - p.t0)
                    if self.keep_acked:
                        p.dev.acked.append(p.bt)
                else:
                    if code == SERVICE_UNAVAILABLE:
                        self.unavailable += 1
                    key = "RST" if code < 0 else code_str(code)
                    self.codes[key] = self.codes.get(key, 0) + 1
                if not stopping:
                    self._post_dp(p.dev)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        self.on_measure_end()
        return self.summary(min(wall, seconds + 3 * self.ack_timeout), cpu)

    # hooks for the caller (e.g. read the server's CPU time at the same instants)
    def on_measure_start(self):
        pass

    def on_measure_end(self):
        pass

    def summary(self, wall, client_cpu):
        lat = sorted(self.lat)

        def pct(q):
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3)

        return {
            "ok": self.ok,
            "per_s": round(self.ok / wall, 1) if wall > 0 else 0.0,
            "readings_per_s": round(self.ok * self.records / wall, 1) if wall > 0 else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": dict(self.codes),
            "timeouts": self.timeouts,
            "retransmissions": self.retransmissions,
            "wall_s": round(wall, 3),
            "client_cpu_s": round(client_cpu, 3),
            "client_us_per_req": round(client_cpu / self.ok * 1e6, 1) if self.ok else None,
            "client_cpu_frac": round(client_cpu / wall, 3) if wall > 0 else None,
        }

    def close(self):
        for d in self.devices:
            self.sel.unregister(d.sock)
            d.sock.close()
        self.sel.close()


# ---------------------------------------------------------------------------
# The reference server: bare aiocoap, answers and nothing else


def serve_bare(host, port):
    import asyncio

    import aiocoap
    import aiocoap.resource as resource

    class Dp(resource.Resource):
        async def render_post(self, request):
            return aiocoap.Message(code=aiocoap.CHANGED)

    class Rd(resource.Resource):
        async def render_post(self, request):
            return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", "1"))

    async def main():
        root = resource.Site()
        root.add_resource(["dp"], Dp())
        root.add_resource(["rd"], Rd())
        await aiocoap.Context.create_server_context(root, bind=(host, port))
        sys.stdout.write("READY %d\n" % port)
        sys.stdout.flush()
        await asyncio.get_running_loop().create_future()

    asyncio.run(main())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve-bare", metavar="HOST:PORT", help="run the bare aiocoap reference server")
    ap.add_argument("--target", metavar="HOST:PORT", help="load an already running server")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--devices", type=int, default=16)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--records", type=int, default=1)
    a = ap.parse_args(argv)
    if a.serve_bare:
        host, _, port = a.serve_bare.rpartition(":")
        serve_bare(host.strip("[]"), int(port))
        return 0
    if not a.target:
        ap.error("--serve-bare or --target")
    host, _, port = a.target.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("load goes to 127.0.0.1 / ::1 only")
    lg = LoadGen(host, int(port), a.devices, a.window, a.records)
    try:
        lg.register_all()
        res = lg.run(a.seconds)
    finally:
        lg.close()
    import json

    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
