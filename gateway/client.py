"""Operator CLI over the gateway's HTTP API: `eclor devices|readings|send|commands|events`.

The CLI is a thin, dependency-free HTTP client (stdlib urllib only) so that it
runs on any box that can reach the API, including one without aiocoap.  It
knows nothing of SQLite or CoAP: everything goes through the same JSON API
that a dashboard or a script would use, so what an operator sees is what the
API says.

Output is an aligned table for humans, or the API's JSON unchanged with
``--json`` (stable for scripts: ``eclor devices --json | jq``).

Exit status, so that shell scripts can tell the cases apart:
  0  success
  1  the API answered with an error (its message is printed on one line),
     or a command sent with ``--wait`` ended failed/expired
  2  the gateway could not be reached (or answered something that is not HTTP/JSON)
"""
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_API = "http://127.0.0.1:8080"
FINAL_STATES = ("done", "failed", "expired")


class ApiError(Exception):
    """The gateway answered with an HTTP error; str() is its message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Unreachable(Exception):
    """No usable answer from the gateway (connection refused, timeout, not JSON)."""


class UsageError(ValueError):
    """Bad user input caught before any request is made."""


# ---------------------------------------------------------------------------
# HTTP


def _error_message(body, reason):
    # The API's errors are JSON with a message; fall back to whatever text came.
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text.splitlines()[0] if text else reason
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            if data.get(key):
                return str(data[key])
    return json.dumps(data)


def request(api, method, path, query=None, body=None, timeout=10.0):
    """One API call; returns the decoded JSON (None for an empty body)."""
    url = api.rstrip("/") + path
    if query:
        q = {k: v for k, v in query.items() if v is not None}
        if q:
            url += "?" + urllib.parse.urlencode(q)
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raw = e.read() or b""
        raise ApiError(e.code, "%d %s" % (e.code, _error_message(raw, e.reason))) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Unreachable("cannot reach the gateway at %s: %s" % (api, reason)) from None
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise Unreachable("%s %s: answer is not JSON" % (method, url)) from None


def _items(data, *keys):
    """The list inside an API answer: a bare list, or {"devices": [...]} etc."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for k in keys + ("items", "results", "data"):
            if isinstance(data.get(k), list):
                return data[k]
        return [data]
    return []


# ---------------------------------------------------------------------------
# Output


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        # not %g: an energy counter of 1234567.8 Wh must not print as 1.23457e+06
        return ("%.6f" % v).rstrip("0").rstrip(".") if abs(v) < 1e15 else repr(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def table(rows, columns=None, out=None):
    """Aligned text table of the `columns` present in the rows (all keys when
    none of them is: an API newer than this CLI still shows something).
    --json is the place for every field."""
    out = out or sys.stdout
    if not rows:
        out.write("(none)\n")
        return
    cols = [c for c in (columns or ()) if any(c in r for r in rows)]
    if not cols:
        for r in rows:
            cols.extend(k for k in r if k not in cols)
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip()
    out.write(line + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def _emit(args, data, rows, columns):
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        table(rows, columns)


def _guard(fn):
    """Turn API/network errors into one line on stderr and an exit status."""

    def wrapper(args):
        prog = "eclor " + fn.__name__[len("run_"):]
        try:
            return fn(args)
        except ApiError as e:
            sys.stderr.write("%s: %s\n" % (prog, e))
            return 1
        except Unreachable as e:
            sys.stderr.write("%s: %s\n" % (prog, e))
            return 2
        except UsageError as e:
            sys.stderr.write("%s: %s\n" % (prog, e))
            return 1

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _common(p):
    p.add_argument("--api", default=os.environ.get("ECLOR_API", DEFAULT_API),
                   help="gateway HTTP API base URL (env ECLOR_API; default %s)" % DEFAULT_API)
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    p.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")


def _quote(s):
    return urllib.parse.quote(s, safe="")


# ---------------------------------------------------------------------------
# devices

DEVICE_COLUMNS = ("ep", "type", "zone", "commune", "status", "online", "queue_mode", "address", "last_seen")


def add_arguments_devices(p):
    _common(p)
    p.add_argument("ep", nargs="?", help="show one device")
    p.add_argument("--type", help="lamp or bin")
    p.add_argument("--zone")
    p.add_argument("--commune")
    p.add_argument("--status")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--online", dest="online", action="store_const", const="true",
                   help="only devices whose registration is alive")
    g.add_argument("--offline", dest="online", action="store_const", const="false")


@_guard
def run_devices(args):
    """List devices (or show one)."""
    if args.ep:
        data = request(args.api, "GET", "/api/devices/" + _quote(args.ep), timeout=args.timeout)
        if args.json:
            _emit(args, data, None, None)
        else:
            data = _human_time(data)
            width = max((len(str(k)) for k in data), default=0)
            for k, v in data.items():
                sys.stdout.write("%s  %s\n" % (str(k).ljust(width), _cell(v)))
        return 0
    q = {"type": args.type, "zone": args.zone, "commune": args.commune,
         "status": args.status, "online": args.online}
    data = request(args.api, "GET", "/api/devices", query=q, timeout=args.timeout)
    _emit(args, data, [_human_time(r) for r in _items(data, "devices")], DEVICE_COLUMNS)
    return 0


# ---------------------------------------------------------------------------
# readings

READING_COLUMNS = ("t", "name", "value", "unit")


def _when(s):
    """--since/--until: UNIX seconds, ISO 8601, or relative like 15m, 2h, 3d."""
    if s is None:
        return None
    s = s.strip()
    try:
        return float(s)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if s[-1:] in units:
        try:
            return time.time() - float(s[:-1]) * units[s[-1]]
        except ValueError:
            pass
    from datetime import datetime, timezone

    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("bad time %r: use UNIX seconds, ISO 8601 or 15m/2h/3d" % s) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def add_arguments_readings(p):
    _common(p)
    p.add_argument("ep", help="device endpoint name")
    p.add_argument("--name", help="reading name, e.g. power, fill, ev:fire")
    p.add_argument("--since", help="UNIX seconds, ISO 8601, or relative (15m, 2h, 3d)")
    p.add_argument("--until", help="UNIX seconds, ISO 8601, or relative")
    p.add_argument("--limit", type=int, default=100)


def _fmt_num(v):
    return None if v is None else ("%d" % v if float(v).is_integer() else "%.3f" % v)


@_guard
def run_readings(args):
    """Readings of one device, newest as the API orders them."""
    q = {"name": args.name, "since": _fmt_num(_when(args.since)),
         "until": _fmt_num(_when(args.until)), "limit": args.limit}
    data = request(args.api, "GET", "/api/devices/%s/readings" % _quote(args.ep),
                   query=q, timeout=args.timeout)
    rows = _items(data, "readings")
    if not args.json:
        rows = [_human_time(_value(r)) for r in rows]
    _emit(args, data, rows, READING_COLUMNS)
    return 0


def _value(row):
    # one VALUE column for the table: a reading has exactly one of v / vs / vb
    r = dict(row)
    r["value"] = next((r[k] for k in ("v", "vs", "vb") if r.get(k) is not None), None)
    return r


def _human_time(row):
    r = dict(row)
    for k in ("t", "created", "updated", "expires", "last_seen", "registered"):
        if isinstance(r.get(k), (int, float)) and r[k] > 1e8:
            r[k] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r[k]))
    return r


# ---------------------------------------------------------------------------
# send


def parse_param(text):
    """key=value -> (key, value); value is JSON when it parses, else the string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError("bad parameter %r: expected key=value" % text)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def add_arguments_send(p):
    _common(p)
    p.add_argument("ep", help="device endpoint name")
    p.add_argument("action", help="level, resume, calendar, config, report, reboot, thresholds...")
    p.add_argument("params", nargs="*", metavar="key=value",
                   help="parameters; values are JSON when they parse (50, true, {...}), else strings")
    p.add_argument("--ttl", type=float, help="seconds before the command expires")
    p.add_argument("--wait", nargs="?", type=float, const=60.0, default=None, metavar="SECONDS",
                   help="wait until the command is done/failed/expired (default 60 s)")


COMMAND_COLUMNS = ("id", "ep", "action", "params", "state", "updated", "result")


def _command_id(data):
    if isinstance(data, dict):
        for k in ("id", "command_id"):
            if data.get(k):
                return str(data[k])
        if isinstance(data.get("command"), dict):
            return _command_id(data["command"])
    raise Unreachable("the gateway accepted the command but returned no id: %r" % (data,))


@_guard
def run_send(args):
    """Send one command; print its id (and its final state with --wait)."""
    params = dict(parse_param(t) for t in args.params)
    body = {"action": args.action, "params": params}
    if args.ttl is not None:
        body["ttl"] = args.ttl
    timeout = args.timeout
    deadline = time.monotonic() + (args.wait or 0)
    if args.wait is not None:
        # The API can hold the answer until the command is final (<= 300 s);
        # polling below covers the rest and an API that ignores "wait".
        body["wait"] = min(args.wait, 300.0)
        timeout += body["wait"]
    data = request(args.api, "POST", "/api/devices/%s/commands" % _quote(args.ep),
                   body=body, timeout=timeout)
    cid = _command_id(data)
    if args.wait is None:
        if args.json:
            _emit(args, data, None, None)
        else:
            state = data.get("state") if isinstance(data, dict) else None
            sys.stdout.write("%s%s\n" % (cid, "  " + state if state else ""))
        return 0
    delay = 0.1
    cmd = data
    while True:
        state = cmd.get("state") if isinstance(cmd, dict) else None
        if state in FINAL_STATES or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
        cmd = request(args.api, "GET", "/api/commands/" + _quote(cid), timeout=args.timeout)
    if args.json:
        _emit(args, cmd, None, None)
    else:
        table([_human_time(cmd)], COMMAND_COLUMNS)
    if state == "done":
        return 0
    if state not in FINAL_STATES:
        sys.stderr.write("eclor send: %s still %s after %g s\n" % (cid, state, args.wait))
    return 1


# ---------------------------------------------------------------------------
# commands


def add_arguments_commands(p):
    _common(p)
    p.add_argument("id", nargs="?", help="show one command")
    p.add_argument("--device", help="only commands for this endpoint")
    p.add_argument("--state", choices=("queued", "sent", "done", "failed", "expired"))
    p.add_argument("--limit", type=int, default=100)


@_guard
def run_commands(args):
    """List commands with their states (or show one)."""
    if args.id:
        data = request(args.api, "GET", "/api/commands/" + _quote(args.id), timeout=args.timeout)
        rows = [data]
    else:
        q = {"device": args.device, "state": args.state, "limit": args.limit}
        data = request(args.api, "GET", "/api/commands", query=q, timeout=args.timeout)
        rows = _items(data, "commands")
    if not args.json:
        rows = [_human_time(r) for r in rows]
    _emit(args, data, rows, COMMAND_COLUMNS)
    return 0


# ---------------------------------------------------------------------------
# events

EVENT_COLUMNS = ("t", "ep", "kind", "detail")


def add_arguments_events(p):
    _common(p)
    p.add_argument("--device", help="only events of this endpoint")
    p.add_argument("--kind", help="only this kind, e.g. registered, expired, ev:fire")
    p.add_argument("--since", help="UNIX seconds, ISO 8601, or relative (15m, 2h, 3d)")
    p.add_argument("--limit", type=int, default=100)


@_guard
def run_events(args):
    """Recent events (registrations, expiries, device events)."""
    q = {"device": args.device, "kind": args.kind, "since": _fmt_num(_when(args.since)),
         "limit": args.limit}
    data = request(args.api, "GET", "/api/events", query=q, timeout=args.timeout)
    rows = _items(data, "events")
    if not args.json:
        rows = [_human_time(r) for r in rows]
    _emit(args, data, rows, EVENT_COLUMNS)
    return 0
