"""`eclor gateway` as a real subprocess: TOML config + command-line overrides,
JSON logs, run.json, SIGHUP reload (a bad file is refused, the old config kept),
SIGTERM -> exit 0 quickly, and `eclor gateway import` (HTTP and --offline)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from eclor.gateway import config, inventory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ECLOR = [sys.executable, "-m", "eclor.tools.cli"]


def start(data, *extra, config_file=None):
    args = ECLOR + ["gateway", "--coap", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", str(data)]
    if config_file:
        args += ["--config", str(config_file)]
    p = subprocess.Popen(args + list(extra), stderr=subprocess.PIPE, text=True, cwd=ROOT)
    run_json = os.path.join(str(data), "run.json")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if os.path.exists(run_json):
            info = json.load(open(run_json))
            if info["pid"] == p.pid:
                return p, info
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.05)
    p.kill()
    raise AssertionError("gateway did not start: " + p.stderr.read())


def api(info, method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (info["http_port"], path),
                                 None if body is None else json.dumps(body).encode(),
                                 {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def stop(p):
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rc = p.wait(10)
    return rc, time.monotonic() - t0, p.stderr.read()


def test_config_reload_json_logs_and_sigterm(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('allow_undeclared = false\nlog_format = "json"\ncollection_threshold = 70\n')
    # the command line wins over the file
    p, info = start(tmp_path / "data", "--collection-threshold", "60", config_file=cfg)
    try:
        st, _ = api(info, "POST", "/api/devices", {"ep": "bin-9", "type": "bin"})
        assert st == 201
        st, col = api(info, "GET", "/api/collection")
        assert st == 200 and col["threshold"] == 60.0
        # a broken file on SIGHUP: refused, old config kept, daemon serving
        cfg.write_text("allow_undeclared = 'maybe'\n")
        p.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert api(info, "GET", "/healthz")[0] == 200
        # a good file: applied (still overridden by the command line where given)
        cfg.write_text('log_format = "json"\nbattery_low_v = 3.0\ncollection_threshold = 10\n')
        p.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert api(info, "GET", "/api/collection")[1]["threshold"] == 60.0
    finally:
        rc, dt, err = stop(p)
    assert rc == 0 and dt < 5, (rc, dt, err)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    msgs = [x["msg"] for x in lines]
    assert any("config reload refused" in m and "allow_undeclared" in m for m in msgs), msgs
    assert any(m.startswith("config reloaded") and "battery_low_v" in m for m in msgs), msgs
    assert any(m == "stopped" for m in msgs)


def test_bad_config_refused_at_start(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text("retention_days = -3\n")
    r = subprocess.run(ECLOR + ["gateway", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "retention_days must be > 0" in r.stderr
    cfg.write_text("no_such_key = 1\n")
    r = subprocess.run(ECLOR + ["gateway", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown key 'no_such_key'" in r.stderr
    r = subprocess.run(ECLOR + ["gateway", "--coap", "nonsense"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "coap" in r.stderr


def test_config_module_precedence(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[gateway]\nretention_days = 7\nhttp = "127.0.0.1:9000"\n')
    c = config.load(str(f), {"retention_days": 3.0, "http": None})
    assert c["retention_days"] == 3.0 and c["http"] == "127.0.0.1:9000" and c["coap"] == "[::]:5683"
    assert config.parse_hostport("[::]:5683", "x") == ("::", 5683)
    assert config.parse_hostport("0.0.0.0:1", "x") == ("0.0.0.0", 1)
    for bad in ("[::1]5683", "host", "h:99999"):
        with pytest.raises(config.ConfigError):
            config.parse_hostport(bad, "x")


INV_CSV = """ep,type,zone,commune,lat,lon,tags,pole
lamp-vil-0001,lamp,centre,Villerupt,49.467,5.929,rue-a;led,P17
bin-aud-0001,bin,gare,Audun-le-Tiche,49.472,5.955,,
"""


def test_inventory_import(tmp_path):
    good = tmp_path / "inv.csv"
    good.write_text(INV_CSV)
    bad = tmp_path / "bad.csv"
    bad.write_text("ep,type,lat\nok-1,lamp,49\nbad one,lamp,1\nok-2,toaster,2\nok-3,bin,95\n")
    with pytest.raises(inventory.InventoryError) as e:
        inventory.load(str(bad))
    text = str(e.value)
    assert "3 error(s)" in text and "line 3: invalid ep" in text and "line 4" in text and "line 5" in text
    data = tmp_path / "data"
    # offline import (gateway stopped), then the gateway sees it
    r = subprocess.run(ECLOR + ["gateway", "--data", str(data), "import", str(good), "--offline"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(ECLOR + ["gateway", "--data", str(data), "import", str(bad), "--offline"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "nothing imported" in r.stderr
    p, info = start(data, "--no-allow-undeclared")
    try:
        st, d = api(info, "GET", "/api/devices/lamp-vil-0001")
        assert st == 200 and d["commune"] == "Villerupt" and d["tags"] == ["rue-a", "led"]
        assert d["meta"] == {"pole": "P17"} and d["declared"] and not d["online"] and d["lat"] == 49.467
        # import through the running gateway's HTTP API (JSON file this time)
        j = tmp_path / "more.json"
        j.write_text(json.dumps([{"ep": "lamp-thil-0002", "type": "lamp", "zone": "nord", "commune": "Thil"}]))
        r = subprocess.run(ECLOR + ["gateway", "--http", "127.0.0.1:%d" % info["http_port"], "import", str(j)],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0 and "imported 1" in r.stdout, r.stderr
        st, lst = api(info, "GET", "/api/devices?commune=Thil")
        assert [x["ep"] for x in lst["devices"]] == ["lamp-thil-0002"]
        st, lst = api(info, "GET", "/api/devices?type=bin&online=false")
        assert [x["ep"] for x in lst["devices"]] == ["bin-aud-0001"]
    finally:
        rc, dt, err = stop(p)
    assert rc == 0, err
    # unreachable gateway: clear message, exit 1
    r = subprocess.run(ECLOR + ["gateway", "--http", "127.0.0.1:1", "import", str(good)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "cannot reach the gateway" in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run(ECLOR + ["gateway", "--coap", "127.0.0.1:0", "--http", "127.0.0.1:%d" % port,
                                    "--data", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=30)
    finally:
        s.close()
    assert r.returncode == 1 and "cannot start" in r.stderr and "address already in use" in r.stderr
