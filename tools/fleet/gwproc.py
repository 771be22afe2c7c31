"""A real gateway as a subprocess, and a small client for its HTTP API.

Shared by the demo, the benchmark and the system tests: they all start
`eclor gateway` exactly as an operator would (its own process group, so a
stop takes its children with it), on 127.0.0.1 ports chosen free, with a
data directory they name, and wait for GET /healthz before going on.
"""
import json
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def child_setup():
    """In a child before exec: its own process group (a stop signal reaches
    its children too) and SIGTERM when the parent dies, so that even a
    killed demo or test leaves no orphan behind."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    """A port free right now (the OS's pick); tiny race accepted for tests."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__("HTTP %s: %s" % (status, body))
        self.status, self.body = status, body


class Api:
    """Blocking JSON client for the gateway's HTTP API (call it from a
    thread when inside an event loop)."""

    def __init__(self, base):
        self.base = base.rstrip("/")

    def _do(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                ctype = r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode("utf-8", "replace")) from None
        if "json" in ctype or raw[:1] in (b"{", b"["):
            return json.loads(raw)
        return raw.decode("utf-8", "replace")

    def get(self, path, **params):
        q = {k: v for k, v in params.items() if v is not None}
        return self._do("GET", path + ("?" + urllib.parse.urlencode(q) if q else ""))

    def post(self, path, body, timeout=60):
        return self._do("POST", path, body, timeout)

    def ok(self):
        try:
            self._do("GET", "/healthz", timeout=1)
            return True
        except (OSError, ApiError):
            return False


def items(resp, *keys):
    """The list inside an API answer, whether bare or wrapped
    ({"devices": [...]}, {"items": [...]}, ...)."""
    if isinstance(resp, list):
        return resp
    for k in keys + ("items", "data", "results"):
        if isinstance(resp.get(k), list):
            return resp[k]
    lists = [v for v in resp.values() if isinstance(v, list)]
    return lists[0] if len(lists) == 1 else []


class Gateway:
    """`eclor gateway` in a subprocess of its own process group."""

    def __init__(self, data_dir, coap_port=None, http_port=None, host="127.0.0.1", extra_args=(),
                 log_path=None, env=None):
        self.data_dir = str(data_dir)
        self.host = host
        self.coap_port = coap_port or free_port(socket.SOCK_DGRAM, host)
        self.http_port = http_port or free_port(socket.SOCK_STREAM, host)
        self.extra_args = list(extra_args)
        self.log_path = log_path or os.path.join(self.data_dir, "gateway.log")
        self.env = env
        self.proc = None
        self.api = Api("http://%s:%d" % (host, self.http_port))

    @property
    def coap(self):
        return (self.host, self.coap_port)

    @property
    def http_url(self):
        return self.api.base

    def cmdline(self):
        return [sys.executable, "-m", "eclor.tools.cli", "gateway",
                "--coap", "%s:%d" % (self.host, self.coap_port),
                "--http", "%s:%d" % (self.host, self.http_port),
                "--data", self.data_dir] + self.extra_args

    def start(self, timeout=20):
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(self.cmdline(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=child_setup, env=env)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited with %s; log %s:\n%s" % (
                    self.proc.returncode, self.log_path, self.log_tail()))
            if self.api.ok():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway not ready after %ss; log:\n%s" % (timeout, self.log_tail()))

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_mb(self):
        """Resident set of the gateway process (MB), from /proc."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except (OSError, AttributeError):
            pass
        return None

    def stop(self, timeout=8, kill=False):
        """SIGTERM (or SIGKILL when kill) to the process group; returns the
        exit status. Escalates to SIGKILL after timeout."""
        p = self.proc
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        try:
            os.killpg(p.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return p.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
