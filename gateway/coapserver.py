"""The CoAP side on aiocoap: /rd, /dp, /cr, /time, observations, commands out.

One aiocoap server context, bound to ``--coap``, serves the devices AND sends
the gateway's own requests (commands, observe registrations): the requests
leave from the port the devices talk to, towards the address each device last
registered or updated from, so NAT bindings the device opened carry them.

The root resource dispatches on the Uri-Path itself instead of going through
aiocoap's Site: the /dp hot path is decode -> validate -> enqueue for the
group commit -> await it -> answer, with no per-request logging.

Junk traffic: aiocoap logs a warning per unparsable datagram, and a datagram
whose string option is not UTF-8 raises UnicodeDecodeError out of its udp6
transport (a traceback per datagram in the loop's exception handler). Both
are handled here: the transport's ``datagram_msg_received`` is wrapped to
count and drop such datagrams, and a filter on aiocoap's loggers counts the
rest and lets through at most one sample per ``log_sample_s``.
"""
import asyncio
import json
import logging
import time

import aiocoap
import cbor2
from aiocoap import interfaces
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning

from . import registry as reg
from . import senml
from .store import StorageUnavailable

log = logging.getLogger("eclor.gateway.coap")

CT_TEXT, CT_LINK, CT_JSON, CT_CBOR = 0, 40, 50, 60
KNOWN_PATHS = frozenset(("dp", "rd", "cr", "time", ".well-known"))  # bounded label set
CHANGED, CREATED, DELETED, CONTENT = Code.CHANGED, Code.CREATED, Code.DELETED, Code.CONTENT


def _resp(code, payload=b"", ct=None, **opts):
    m = aiocoap.Message(code=code, payload=payload)
    if ct is not None:
        m.opt.content_format = ct
    for k, v in opts.items():
        setattr(m.opt, k, v)
    return m


def _err(code, text):
    # Diagnostic payload (RFC 7252 5.5.2): UTF-8 text, no content format.
    return aiocoap.Message(code=code, payload=text.encode()[:200])


class SampleFilter(logging.Filter):
    """Rate-limits aiocoap's log: counts every record, passes one sample per window."""

    def __init__(self, metrics, window_s):
        super().__init__()
        self.metrics = metrics
        self.window_s = window_s
        self.next_ok = 0.0
        self.suppressed = 0

    def filter(self, record):
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("Retransmission"):
            self.metrics.inc("eclor_coap_retransmissions_total")
            return False
        if record.levelno < logging.WARNING:
            return False
        if "unparsable" in msg or "dispatch_message" in msg:
            self.metrics.inc("eclor_coap_junk_total")
        now = time.monotonic()
        if now < self.next_ok:
            self.suppressed += 1
            self.metrics.inc("eclor_log_suppressed_total")
            return False
        self.next_ok = now + self.window_s
        if self.suppressed:
            record.msg = "%s (sampled; %d similar records suppressed)" % (record.msg, self.suppressed)
            self.suppressed = 0
        record.exc_info = None  # never a traceback per datagram
        record.exc_text = None
        return True


_V4MAPPED = b"\0" * 10 + b"\xff\xff"


def _multicast16(a):
    """Is this 16-byte IPv6 address (possibly v4-mapped) multicast? Exactly
    what ipaddress says: ff00::/8, or 224.0.0.0/4 when v4-mapped."""
    if a[:12] == _V4MAPPED:
        return 224 <= a[12] <= 239
    return a[0] == 0xFF


def fast_local_multicast_check():
    """aiocoap answers every request to ``remote.as_response_address()``,
    which asks ``is_multicast_locally``: the local address in the pktinfo
    formatted by ``ipaddress`` and parsed again (~7 us, a few % of a /dp).
    The same answer straight from the 16 address bytes. Process-wide, same
    result (tests/gateway/test_gw_perf_coap.py compares it with aiocoap's);
    left alone if this aiocoap's class does not look as expected."""
    from aiocoap.transports import udp6
    cls = getattr(udp6, "UDP6EndpointAddress", None)
    orig = getattr(cls, "__dict__", {}).get("is_multicast_locally")
    if not isinstance(orig, property) or getattr(orig.fget, "_eclor", False):
        return False

    def is_multicast_locally(self):
        p = self.pktinfo
        if type(p) is not bytes or len(p) < 16:
            return orig.fget(self)
        return _multicast16(p)

    is_multicast_locally._eclor = True
    is_multicast_locally.original = orig.fget
    cls.is_multicast_locally = property(is_multicast_locally)
    return True


def _addr(remote):
    sa = remote.sockaddr
    host = sa[0]
    if host.startswith("::ffff:"):
        host = host[7:]
    return (host, sa[1])


def _hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Root(interfaces.Resource):
    def __init__(self, gw):
        super().__init__()
        self.gw = gw
        self.metrics = gw.metrics
        self.cfg = gw.cfg
        self.counts = {}
        gw.metrics.gauge(self._gauge)

    async def needs_blockwise_assembly(self, request):
        return True

    async def render_to_pipe(self, pipe):
        req = pipe.request
        b1 = req.opt.block1
        if b1 is not None or req.opt.block2 is not None:
            # rare: let aiocoap reassemble Block1 and slice Block2 for us --
            # but refuse a body growing past max_payload before it is spooled
            if b1 is not None and b1.start + len(req.payload) > self.cfg["max_payload"]:
                self.metrics.inc("eclor_readings_rejected_total", reason="too_large")
                m = _err(Code.REQUEST_ENTITY_TOO_LARGE, "body > %d bytes" % self.cfg["max_payload"])
                m.opt.size1 = self.cfg["max_payload"]
                pipe.add_response(m, is_last=True)
                return
            return await self._render_to_pipe(pipe)
        pipe.add_response(await self.render(req), is_last=True)

    async def answer(self, pipe):
        """The whole life of a plain request (no Block1/Block2): render, answer."""
        try:
            res = await self.render(pipe.request)
        except Exception:  # render() answers every error itself; this is a bug
            log.exception("error rendering %s", pipe.request.code)
            res = _err(Code.INTERNAL_SERVER_ERROR, "internal error")
        try:
            pipe.add_response(res, is_last=True)
        except Exception:  # as aiocoap's own render path would: logged, not lost in the task
            log.exception("answer to %s not sent", pipe.request.code)

    async def render(self, req):
        path = req.opt.uri_path
        try:
            if path == ("dp",):
                res = await self.dp(req)
            elif path and path[0] == "rd":
                res = await self.rd(req, path)
            elif path == ("cr",):
                res = await self.cr(req)
            elif path == ("time",):
                res = self.time(req)
            elif path == (".well-known", "core"):
                res = _resp(CONTENT, b'</rd>;rt="core.rd";ct=40,</dp>;ct="110 112",</cr>;ct=60,</time>', CT_LINK)
            else:
                res = _err(Code.NOT_FOUND, "no resource /%s" % "/".join(path))
        except StorageUnavailable:
            res = _err(Code.SERVICE_UNAVAILABLE, "storage unavailable, retry later")
            res.opt.max_age = self.cfg["retry_after_s"]
        except Exception as e:  # a bug must cost one 5.00, never the server
            log.exception("error handling %s /%s", req.code, "/".join(path))
            res = _err(Code.INTERNAL_SERVER_ERROR, "internal error: %s" % type(e).__name__)
        # a tuple-keyed dict on the hot path; labels are formatted at /metrics time
        k = (path[0] if path and path[0] in KNOWN_PATHS else "other", res.code)
        self.counts[k] = self.counts.get(k, 0) + 1
        return res

    def _gauge(self):
        for (p, code), n in list(self.counts.items()):
            yield "eclor_coap_requests_total", {"path": p, "code": "%d.%02d" % (code >> 5, code & 31)}, n

    # -- /dp ------------------------------------------------------------------
    async def dp(self, req):
        if req.code != Code.POST:
            return _err(Code.METHOD_NOT_ALLOWED, "POST SenML to /dp")
        now = time.time()
        dev = self.gw.registry.sender(_addr(req.remote), now)
        if dev is None:
            self.metrics.inc("eclor_readings_rejected_total", reason="unregistered")
            return _err(Code.NOT_FOUND, "no registration for this address; register at /rd")
        payload = req.payload
        if len(payload) > self.cfg["max_payload"]:
            self.metrics.inc("eclor_readings_rejected_total", reason="too_large")
            m = _err(Code.REQUEST_ENTITY_TOO_LARGE, "payload %d > %d bytes" % (len(payload), self.cfg["max_payload"]))
            return m
        ct = req.opt.content_format
        if ct not in (senml.CT_SENML_CBOR, senml.CT_SENML_JSON):
            self.metrics.inc("eclor_readings_rejected_total", reason="content_format")
            return _err(Code.UNSUPPORTED_CONTENT_FORMAT, "use SenML CBOR (112) or SenML JSON (110), not %s" % (
                None if ct is None else int(ct)))
        ep = dev["ep"]
        try:
            rows = senml.parse(payload, int(ct), ep, now, self.cfg["max_records"], self.cfg["max_future_s"])
        except senml.SenMLError as e:
            self.metrics.inc("eclor_readings_rejected_total", reason="invalid")
            if "does not belong" in str(e):
                return _err(Code.FORBIDDEN, str(e))
            return _err(Code.BAD_REQUEST, str(e))
        await self.gw.ingest(dev, rows, now)
        body = self.gw.relay.pending_payload(ep) if dev.get("queue") else b""
        return _resp(CHANGED, body, CT_CBOR if body else None)

    # -- /cr ------------------------------------------------------------------
    async def cr(self, req):
        if req.code != Code.POST:
            return _err(Code.METHOD_NOT_ALLOWED, "POST command results to /cr")
        dev = self.gw.registry.sender(_addr(req.remote), time.time())
        if dev is None:
            return _err(Code.NOT_FOUND, "no registration for this address; register at /rd")
        ct = req.opt.content_format
        try:
            if ct == CT_CBOR:
                data = cbor2.loads(req.payload)
            elif ct == CT_JSON:
                data = json.loads(req.payload)
            else:
                return _err(Code.UNSUPPORTED_CONTENT_FORMAT, "use CBOR (60) or JSON (50)")
        except Exception as e:
            return _err(Code.BAD_REQUEST, "cannot decode results: %s" % e)
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str)
                                                 for r in data):
            return _err(Code.BAD_REQUEST, 'expected an array of {"id", "s", "r"} maps')
        for r in data:
            self.gw.relay.result(dev["ep"], r)
        # the results must be durable before the device forgets them
        await self.gw.store.write(lambda con: None)
        body = self.gw.relay.pending_payload(dev["ep"]) if dev.get("queue") else b""
        return _resp(CHANGED, body, CT_CBOR if body else None)

    # -- /time ----------------------------------------------------------------
    def time(self, req):
        if req.code != Code.GET:
            return _err(Code.METHOD_NOT_ALLOWED, "GET /time")
        now = time.time()
        acc = req.opt.accept
        if acc == CT_CBOR:
            return _resp(CONTENT, cbor2.dumps(int(now)), CT_CBOR)
        if acc == CT_JSON:
            return _resp(CONTENT, b'{"t":%d,"ms":%d}' % (int(now), int(now * 1000) % 1000), CT_JSON)
        if acc not in (None, CT_TEXT):
            return _err(Code.NOT_ACCEPTABLE, "text (0), json (50) or cbor (60)")
        return _resp(CONTENT, b"%d" % int(now), CT_TEXT)

    # -- /rd ------------------------------------------------------------------
    async def rd(self, req, path):
        now = time.time()
        addr = _addr(req.remote)
        q = {}
        for item in req.opt.uri_query:
            k, _, v = item.partition("=")
            q[k] = v
        if path == ("rd",):
            if req.code != Code.POST:
                return _err(Code.METHOD_NOT_ALLOWED, "POST /rd?ep=NAME&lt=S&et=eclor.lamp|eclor.bin")
            return await self.register(req, q, addr, now)
        if len(path) != 2:
            return _err(Code.NOT_FOUND, "no such registration")
        reg_id = path[1]
        if req.code == Code.POST:
            lt = None
            if "lt" in q:
                lt = _lifetime(q["lt"], self.cfg["min_lt"])
                if lt is None:
                    return _err(Code.BAD_REQUEST, "lt must be an integer %d..4294967295" % self.cfg["min_lt"])
            row = await self.gw.registry.update(reg_id, addr, lt, now)
            if row is None:
                return _err(Code.NOT_FOUND, "unknown registration, register again")
            self.metrics.inc("eclor_registrations_total", kind="update")
            self.gw.device_seen(row)
            if not row.get("queue"):
                self.gw.observer.ensure(row)
            return _resp(CHANGED)
        if req.code == Code.DELETE:
            row = await self.gw.registry.remove(reg_id, now)
            if row is None:
                return _err(Code.NOT_FOUND, "unknown registration")
            self.metrics.inc("eclor_registrations_total", kind="delete")
            self.gw.observer.cancel(row["ep"])
            return _resp(DELETED)
        return _err(Code.METHOD_NOT_ALLOWED, "POST (update) or DELETE /rd/ID")

    async def register(self, req, q, addr, now):
        ep = q.get("ep")
        if not ep:
            return _err(Code.BAD_REQUEST, "ep= missing")
        et = q.get("et", "")
        if not et.startswith("eclor.") or et[6:] not in reg.TYPES:
            return _err(Code.BAD_REQUEST, "et must be eclor.lamp or eclor.bin, not %r" % et)
        lt = _lifetime(q["lt"], self.cfg["min_lt"]) if "lt" in q else self.cfg["default_lt"]
        if lt is None:
            return _err(Code.BAD_REQUEST, "lt must be an integer %d..4294967295" % self.cfg["min_lt"])
        b = q.get("b")
        if b not in (None, "U", "UQ"):
            return _err(Code.BAD_REQUEST, "b must be U or UQ")
        ct = req.opt.content_format
        if req.payload and ct not in (None, CT_LINK):
            return _err(Code.UNSUPPORTED_CONTENT_FORMAT, "links in link-format (40)")
        try:
            text = req.payload.decode("utf-8")
            links = reg.parse_links(text)
        except (UnicodeDecodeError, ValueError) as e:
            return _err(Code.BAD_REQUEST, "bad link-format: %s" % e)
        try:
            row = await self.gw.registry.register(ep, et[6:], lt, b == "UQ", text, addr, now)
        except reg.RegistryError as e:
            return _err(Code.FORBIDDEN if e.code == 403 else Code.BAD_REQUEST, str(e))
        self.metrics.inc("eclor_registrations_total", kind="register")
        self.gw.device_seen(row)
        self.gw.observer.start(row, [p for p, a in links if "obs" in a])
        return _resp(CREATED, location_path=("rd", row["reg_id"]))


def _lifetime(s, lo):
    try:
        v = int(s)
    except ValueError:
        return None
    return v if lo <= v <= 4294967295 else None


class Observer:
    """Observes the resources a device marks ``obs`` and stores notifications."""

    def __init__(self, gw):
        self.gw = gw
        self.tasks = {}  # ep -> [tasks]

    def start(self, row, paths):
        self.cancel(row["ep"])
        if not paths or row.get("queue"):
            return  # a sleepy device cannot be observed
        loop = asyncio.get_running_loop()
        self.tasks[row["ep"]] = [loop.create_task(self._observe(row, p)) for p in paths]

    def ensure(self, row):
        """After an update: observations that ended (device rebooted, RST) start again."""
        tasks = self.tasks.get(row["ep"])
        if tasks and not all(t.done() for t in tasks):
            return
        self.start(row, [p for p, a in reg.parse_links(row.get("links") or "") if "obs" in a])

    def cancel(self, ep=None):
        for e in ([ep] if ep else list(self.tasks)):
            for t in self.tasks.pop(e, []):
                t.cancel()

    async def _observe(self, row, path):
        ep = row["ep"]
        uri = "coap://%s%s" % (_hostport(row["host"], row["port"]), path if path.startswith("/") else "/" + path)
        try:
            req = aiocoap.Message(code=Code.GET, uri=uri, observe=0, transport_tuning=self.gw.coap.tuning())
            self.gw.metrics.inc("eclor_coap_out_total", kind="observe")
            pr = self.gw.coap.context.request(req)
            first = await pr.response
            await self._store(row, path, first)
            async for n in pr.observation:
                await self._store(row, path, n)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.info("observation of %s%s ended: %s", ep, path, e)

    async def _store(self, row, path, msg):
        if not msg.code.is_successful() or not msg.payload:
            return
        now = time.time()
        ct = msg.opt.content_format
        try:
            if ct in (senml.CT_SENML_CBOR, senml.CT_SENML_JSON):
                rows = senml.parse(msg.payload, int(ct), row["ep"], now, self.gw.cfg["max_records"],
                                   self.gw.cfg["max_future_s"])
            else:
                val = cbor2.loads(msg.payload) if ct == CT_CBOR else msg.payload.decode()
                name = path.strip("/").replace("/", ".")
                if isinstance(val, bool):
                    rows = [(name, now, None, None, int(val), None)]
                elif isinstance(val, (int, float)):
                    rows = [(name, now, float(val), None, None, None)]
                else:
                    rows = [(name, now, None, str(val)[:64], None, None)]
        except Exception as e:
            log.info("notification from %s%s not stored: %s", row["ep"], path, e)
            return
        try:
            await self.gw.ingest(row, rows, now)
            self.gw.metrics.inc("eclor_observe_notifications_total")
        except StorageUnavailable:
            pass


class CoapServer:
    def __init__(self, gw):
        self.gw = gw
        self.context = None
        self.filter = None

    async def start(self, host, port):
        self.filter = SampleFilter(self.gw.metrics, self.gw.cfg["log_sample_s"])
        lg = logging.getLogger("coap-server")
        lg.addFilter(self.filter)
        # INFO so that retransmissions reach the filter (counted, then dropped)
        lg.setLevel(logging.INFO)
        for name in ("coap-server.requester", "coap"):
            logging.getLogger(name).addFilter(self.filter)
        if ":" not in host and host not in ("", "*"):
            try:
                import ipaddress
                ipaddress.IPv4Address(host)
                host = "::ffff:" + host  # the udp6 transport is an AF_INET6 socket
            except ValueError:
                pass
        fast_local_multicast_check()
        root = Root(self.gw)
        self.context = await aiocoap.Context.create_server_context(
            root, bind=(host, port), transports=["udp6"])
        self._lean_render(self.context, root)
        self.udp = self.context.request_interfaces[0].token_interface.message_interface
        orig = self.udp.datagram_msg_received
        metrics = self.gw.metrics
        flt = self.filter

        def guarded(data, ancdata, flags, address):
            try:
                orig(data, ancdata, flags, address)
            except Exception as e:  # e.g. UnicodeDecodeError from Message.decode
                metrics.inc("eclor_coap_junk_total")
                rec = logging.makeLogRecord({"levelno": logging.WARNING, "msg": "junk datagram from %s: %s"
                                             % (address[0], type(e).__name__)})
                if flt.filter(rec):  # a sample, with the count of those suppressed
                    log.warning("%s", rec.msg)
        self.udp.datagram_msg_received = guarded
        return self.udp._local_port()

    @staticmethod
    def _lean_render(context, root):
        """Serve plain requests without aiocoap's per-request overhead.

        ``Context.render_to_pipe`` names every render task
        ``"Rendering for %r" % request``: a Message repr (with the remote's
        address run through ``ipaddress`` twice) for each request, about a
        fifth of the event loop's time under /dp load -- and a second pipe
        that only turns exceptions into 5.00, which ``Root.answer`` does
        itself. Requests with Block1/Block2 keep aiocoap's own path."""
        orig = context.render_to_pipe
        loop = asyncio.get_running_loop()
        answer = root.answer

        def render_to_pipe(pipe):
            opt = pipe.request.opt
            if opt.block1 is not None or opt.block2 is not None or context.serversite is not root:
                # (a site wrapped around Root -- OSCORE, say -- must never be bypassed)
                return orig(pipe)
            task = loop.create_task(answer(pipe))
            pipe.on_interest_end(task.cancel)

        context.render_to_pipe = render_to_pipe

    def tuning(self):
        """RFC 7252 transmission parameters of the gateway's own requests (config)."""
        t = TransportTuning()
        t.ACK_TIMEOUT = self.gw.cfg["ack_timeout"]
        t.MAX_RETRANSMIT = self.gw.cfg["max_retransmit"]
        return t

    async def send_command(self, dev, cmd, expires):
        """POST /cmd (CON, CBOR) to the device's registered address -> (code, payload)."""
        uri = "coap://%s/cmd" % _hostport(dev["host"], dev["port"])
        req = aiocoap.Message(code=Code.POST, uri=uri, payload=cbor2.dumps(cmd), transport_tuning=self.tuning())
        req.opt.content_format = CT_CBOR
        self.gw.metrics.inc("eclor_coap_out_total", kind="command")
        timeout = max(1.0, expires - time.time())
        resp = await asyncio.wait_for(self.context.request(req).response, timeout)
        return int(resp.code), resp.payload

    async def stop(self):
        if self.context is not None:
            try:
                await asyncio.wait_for(self.context.shutdown(), 2.0)
            except (asyncio.TimeoutError, Exception) as e:
                log.debug("coap shutdown: %s", e)
            self.context = None
        if self.filter is not None:
            for name in ("coap-server", "coap-server.requester", "coap"):
                logging.getLogger(name).removeFilter(self.filter)
