"""`eclor devices|readings|send|commands|events` against a recording HTTP server.

These pin the CLI's side of the contract (URLs, query strings, request bodies,
tables, --json, exit statuses) without the daemon; the same commands against
the real gateway are in test_gw_blackbox_cli.py.
"""
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from eclor.gateway import client
from eclor.tools import cli


class Api:
    """Answers from a route table; records every request."""

    def __init__(self):
        self.routes = {}
        self.seen = []
        self.raw_paths = []
        api = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _do(self):
                u = urlsplit(self.path)
                api.raw_paths.append(u.path)
                u = u._replace(path=unquote(u.path))
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                api.seen.append((self.command, u.path, parse_qs(u.query), body))
                status, data = api.routes.get((self.command, u.path), (404, {"error": "no route " + u.path}))
                if callable(data):
                    data = data()
                raw = data if isinstance(data, bytes) else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _do

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    a = Api()
    yield a
    a.close()


def eclor(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


DEVICES = [
    {"ep": "lamp-villerupt-0001", "type": "lamp", "zone": "centre", "commune": "Villerupt", "online": True},
    {"ep": "bin-thil-0002", "type": "bin", "zone": "gare", "commune": "Thil", "online": False,
     "queue_mode": True, "last_seen": 1764300000.25},
]


def test_devices_table_and_filters(api, capsys):
    api.routes[("GET", "/api/devices")] = (200, {"devices": DEVICES})
    rc, out, err = eclor(capsys, "devices", "--api", api.url, "--type", "lamp", "--commune", "Villerupt", "--online")
    assert rc == 0, err
    _, path, q, _ = api.seen[-1]
    assert q == {"type": ["lamp"], "commune": ["Villerupt"], "online": ["true"]}
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["EP", "TYPE", "ZONE", "COMMUNE", "ONLINE"]
    assert lines[1].split()[:5] == ["lamp-villerupt-0001", "lamp", "centre", "Villerupt", "yes"]
    assert lines[2].split() == ["bin-thil-0002", "bin", "gare", "Thil", "no", "yes", "2025-11-28", "03:20:00"]
    # aligned: every column starts at the same offset on every line
    col = lines[0].index("TYPE")
    assert lines[1][col:].startswith("lamp") and lines[2][col:].startswith("bin")


def test_devices_json_is_api_json(api, capsys):
    api.routes[("GET", "/api/devices")] = (200, DEVICES)
    rc, out, _ = eclor(capsys, "devices", "--api", api.url, "--json")
    assert rc == 0
    assert json.loads(out) == DEVICES


def test_env_api(api, capsys, monkeypatch):
    api.routes[("GET", "/api/devices")] = (200, [])
    monkeypatch.setenv("ECLOR_API", api.url)
    # argparse defaults are computed when the parser is built, i.e. now
    rc, out, _ = eclor(capsys, "devices")
    assert rc == 0 and out.strip() == "(none)"
    assert api.seen


def test_readings_query(api, capsys):
    rows = [{"name": "power", "v": 41.5, "vs": None, "vb": None, "unit": "W", "t": 1764300000},
            {"name": "status", "v": None, "vs": "lidOpen", "vb": None, "unit": None, "t": 1764300001}]
    api.routes[("GET", "/api/devices/lamp 1/readings")] = (200, {"readings": rows})
    rc, out, err = eclor(capsys, "readings", "lamp 1", "--api", api.url, "--name", "power",
                         "--since", "1764290000", "--until", "2025-11-28T04:00:00Z", "--limit", "5")
    assert rc == 0, err
    _, path, q, _ = api.seen[-1]
    assert q == {"name": ["power"], "since": ["1764290000"], "until": ["1764302400"], "limit": ["5"]}
    assert api.raw_paths[-1] == "/api/devices/lamp%201/readings"  # ep quoted, cannot escape the path
    lines = out.splitlines()
    assert lines[0].split() == ["T", "NAME", "VALUE", "UNIT"]
    assert lines[1].split() == ["2025-11-28", "03:20:00", "power", "41.5", "W"]
    assert lines[2].split() == ["2025-11-28", "03:20:01", "status", "lidOpen"]


def test_readings_bad_time_is_usage_error(api, capsys):
    rc, _, err = eclor(capsys, "readings", "x", "--api", api.url, "--since", "yesterday-ish")
    assert rc == 1 and "bad time" in err and not api.seen


@pytest.mark.parametrize("text,expected", [
    ("level=50", ("level", 50)),
    ("pf=0.9", ("pf", 0.9)),
    ("energy=1234567.8", ("energy", 1234567.8)),
    ("on=true", ("on", True)),
    ("name=centre", ("name", "centre")),
    ("zone=\"007\"", ("zone", "007")),
    ("c={\"rules\":[1]}", ("c", {"rules": [1]})),
    ("empty=", ("empty", "")),
    ("a=b=c", ("a", "b=c")),
])
def test_parse_param(text, expected):
    assert client.parse_param(text) == expected


@pytest.mark.parametrize("v,text", [(1234567.8, "1234567.8"), (41.5, "41.5"), (0.1 + 0.2, "0.3"),
                                    (2.0, "2"), (True, "yes"), (None, ""), ({"a": [1]}, '{"a":[1]}')])
def test_cells(v, text):
    assert client._cell(v) == text


def test_parse_param_rejects():
    with pytest.raises(client.UsageError):
        client.parse_param("level")
    with pytest.raises(client.UsageError):
        client.parse_param("=5")


def test_send_body_and_id(api, capsys):
    api.routes[("POST", "/api/devices/lamp-1/commands")] = (201, {"id": "c-42", "state": "sent"})
    rc, out, err = eclor(capsys, "send", "lamp-1", "level", "level=30", "duration=600", "--ttl", "120", "--api", api.url)
    assert rc == 0, err
    assert api.seen[-1][3] == {"action": "level", "params": {"level": 30, "duration": 600}, "ttl": 120}
    assert out.split() == ["c-42", "sent"]


def test_send_wait_polls_to_final_state(api, capsys):
    states = iter(["sent", "sent", "done"])
    api.routes[("POST", "/api/devices/lamp-1/commands")] = (201, {"id": "c-7"})
    api.routes[("GET", "/api/commands/c-7")] = (200, lambda: {"id": "c-7", "state": next(states), "result": {"level": 30}})
    rc, out, err = eclor(capsys, "send", "lamp-1", "level", "level=30", "--wait", "10", "--api", api.url, "--json")
    assert rc == 0, err
    assert json.loads(out)["state"] == "done"
    assert [s[1] for s in api.seen].count("/api/commands/c-7") == 3
    assert api.seen[0][3]["wait"] == 10  # the API may hold the answer; polling covers the rest


def test_send_wait_failed_exits_1(api, capsys):
    api.routes[("POST", "/api/devices/lamp-1/commands")] = (201, {"id": "c-8"})
    api.routes[("GET", "/api/commands/c-8")] = (200, {"id": "c-8", "state": "failed", "result": "relay stuck"})
    rc, out, _ = eclor(capsys, "send", "lamp-1", "reboot", "--wait", "--api", api.url)
    assert rc == 1 and "failed" in out and "relay stuck" in out


def test_api_error_one_line_exit_1(api, capsys):
    api.routes[("POST", "/api/devices/bin-1/commands")] = (400, {"error": "action 'level' is not valid for a bin"})
    rc, out, err = eclor(capsys, "send", "bin-1", "level", "level=3", "--api", api.url)
    assert rc == 1 and out == ""
    assert err == "eclor send: 400 action 'level' is not valid for a bin\n"


def test_api_error_plain_text(api, capsys):
    api.routes[("GET", "/api/devices")] = (500, b"Internal Server Error\nTraceback ...")
    rc, _, err = eclor(capsys, "devices", "--api", api.url)
    assert rc == 1 and err == "eclor devices: 500 Internal Server Error\n"


def test_not_json_is_exit_2(api, capsys):
    api.routes[("GET", "/api/events")] = (200, b"<html>proxy login</html>")
    rc, _, err = eclor(capsys, "events", "--api", api.url)
    assert rc == 2 and "not JSON" in err and len(err.splitlines()) == 1


def test_commands_and_events(api, capsys):
    api.routes[("GET", "/api/commands")] = (200, [{"id": "c-1", "ep": "bin-1", "action": "report", "state": "queued"}])
    api.routes[("GET", "/api/events")] = (200, {"events": [{"ep": "bin-1", "kind": "expired", "t": 1764300000, "id": 3}]})
    rc, out, _ = eclor(capsys, "commands", "--device", "bin-1", "--state", "queued", "--api", api.url)
    assert rc == 0 and api.seen[-1][2] == {"device": ["bin-1"], "state": ["queued"], "limit": ["100"]}
    assert out.splitlines()[1].split() == ["c-1", "bin-1", "report", "queued"]
    rc, out, _ = eclor(capsys, "events", "--api", api.url)
    assert rc == 0 and out.splitlines()[1].split() == ["2025-11-28", "03:20:00", "bin-1", "expired"]


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_exit_2_real_entry_point():
    # The installed console script, as an operator runs it; nothing listens there.
    url = "http://127.0.0.1:%d" % _free_port()
    p = subprocess.run([sys.executable, "-m", "eclor.tools.cli", "devices", "--api", url],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.startswith("eclor devices: cannot reach the gateway at " + url)
    assert len(p.stderr.splitlines()) == 1
