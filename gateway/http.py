"""A small HTTP/1.1 server on asyncio.start_server, for the JSON API.

No framework (the gateway's only dependency is aiocoap): request line,
headers, a Content-Length body, keep-alive by default (HTTP/1.1), and every
error answered as JSON ``{"error": message}``. Routes are (method, regex)
pairs mapped to coroutines ``handler(req, *groups) -> (status, body)`` where
body is a JSON-able object, or (status, str, content_type) for text.
"""
import asyncio
import json
import logging
import re
import urllib.parse

log = logging.getLogger("eclor.gateway.http")

REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
           413: "Payload Too Large", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}
MAX_BODY = 1 << 20
MAX_HEADER = 16384
# How long a connection may take to deliver its next request (idle keep-alive
# included). It bounds reading only: a running handler (a command "wait" of
# up to 300 s) is never cut short by it.
IDLE_S = 30.0


class HTTPError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body

    def json(self):
        if not self.body:
            raise HTTPError(400, "JSON body expected")
        ctype = self.headers.get("content-type", "application/json")
        if "json" not in ctype:
            raise HTTPError(415, "Content-Type must be application/json")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, "invalid JSON: %s" % e) from None

    def arg(self, name, conv=str, default=None):
        v = self.query.get(name)
        if v is None or v == "":
            return default
        try:
            return conv(v)
        except (TypeError, ValueError):
            raise HTTPError(400, "bad value for %s: %r" % (name, v)) from None


class Server:
    def __init__(self, routes, metrics=None, idle_s=IDLE_S):
        self.routes = [(m, re.compile("^" + p + "$"), h) for m, p, h in routes]
        self.metrics = metrics
        self.idle_s = idle_s
        self.server = None
        self.conns = set()

    async def start(self, host, port):
        self.server = await asyncio.start_server(self._conn, host, port, limit=MAX_HEADER)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self):
        if self.server is None:
            return
        self.server.close()
        for w in list(self.conns):
            w.close()
        try:
            await asyncio.wait_for(self.server.wait_closed(), 1.0)
        except asyncio.TimeoutError:
            pass
        self.server = None

    async def _conn(self, reader, writer):
        self.conns.add(writer)
        try:
            while True:
                if not await self._one(reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.conns.discard(writer)
            writer.close()

    async def _one(self, reader, writer):
        """One request: read it (bounded by idle_s), run its handler (not
        bounded here), answer. Returns whether to keep the connection."""
        try:
            got = await asyncio.wait_for(self._read(reader, writer), self.idle_s)
        except asyncio.TimeoutError:
            return False
        if not got:
            return False
        req, keep = got
        status, payload, ctype = await self.dispatch(req)
        if self.metrics is not None:
            self.metrics.inc("eclor_http_requests_total", status=status)
        try:  # a client that does not read its answer is bounded by idle_s too
            await asyncio.wait_for(self._send(writer, status, payload, keep, ctype, head=req.method == "HEAD"),
                                   self.idle_s)
        except asyncio.TimeoutError:
            return False
        return keep

    async def _read(self, reader, writer):
        """Read one request -> (Request, keep-alive?), or False at end of
        stream or after answering an unreadable request."""
        try:
            line = await reader.readline()
        except (asyncio.LimitOverrunError, ValueError):
            await self._send(writer, 431, {"error": "request line too long"}, False)
            return False
        if not line:
            return False
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            await self._send(writer, 400, {"error": "bad request line"}, False)
            return False
        headers = {}
        try:
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
                if len(headers) > 100:
                    raise ValueError
        except (asyncio.LimitOverrunError, ValueError):
            await self._send(writer, 431, {"error": "headers too large"}, False)
            return False
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close" or \
            headers.get("connection", "").lower() == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._send(writer, 411, {"error": "chunked bodies not supported; send Content-Length"}, False)
            return False
        try:
            n = int(headers.get("content-length", "0"))
            if n < 0:
                raise ValueError
        except ValueError:
            await self._send(writer, 400, {"error": "bad Content-Length"}, False)
            return False
        if n > MAX_BODY:
            await self._send(writer, 413, {"error": "body larger than %d bytes" % MAX_BODY}, False)
            return False
        body = await reader.readexactly(n) if n else b""
        u = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        req = Request(method.upper(), urllib.parse.unquote(u.path), query, headers, body)
        return req, keep

    async def dispatch(self, req):
        allowed = []
        for m, rx, h in self.routes:
            mo = rx.match(req.path)
            if mo is None:
                continue
            if m != req.method and not (m == "GET" and req.method == "HEAD"):
                allowed.append(m)
                continue
            try:
                res = await h(req, *mo.groups())
            except HTTPError as e:
                return e.status, {"error": str(e)}, None
            except Exception as e:
                status = getattr(e, "http_status", None)
                if status is not None:  # e.g. storage unavailable -> 503, retry later
                    return status, {"error": "%s: %s" % (type(e).__name__, e)}, None
                log.exception("HTTP %s %s failed", req.method, req.path)
                return 500, {"error": "internal error: %s" % type(e).__name__}, None
            if len(res) == 2:
                return res[0], res[1], None
            return res
        if allowed:
            return 405, {"error": "method %s not allowed on %s (use %s)" % (
                req.method, req.path, ", ".join(sorted(set(allowed))))}, None
        return 404, {"error": "no such endpoint: %s" % req.path}, None

    async def _send(self, writer, status, payload, keep, ctype=None, head=False):
        if ctype is None:
            data = json.dumps(payload, separators=(",", ":"), default=str).encode()
            ctype = "application/json"
        else:
            data = payload.encode() if isinstance(payload, str) else payload
        hdr = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (
            status, REASONS.get(status, "Status"), ctype, len(data), "keep-alive" if keep else "close")
        writer.write(hdr.encode() + (b"" if head else data))
        await writer.drain()
