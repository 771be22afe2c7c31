"""`eclor demo` as an operator runs it: it starts, says where to look, runs
the real firmware against a real gateway, and stops without leaving a
single process behind -- on --duration, on Ctrl-C, and even when the demo
itself is killed with SIGKILL."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eclor.tools.fleet import gwproc

pytestmark = pytest.mark.slow


def processes_under(path):
    """PIDs whose command line or cwd mentions path (the demo's children)."""
    path = str(path)
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink(p / "cwd")
        except OSError:
            continue
        if path in cmd or cwd.startswith(path):
            out.append((int(p.name), cmd[:200]))
    return out


def start_demo(tmp_path, *extra):
    data = tmp_path / "demo"
    coap = gwproc.free_port()
    http = gwproc.free_port(kind=__import__("socket").SOCK_STREAM)
    cmd = [sys.executable, "-m", "eclor.tools.cli", "demo", "--lamps", "2", "--bins", "2", "--data", str(data),
           "--coap", "127.0.0.1:%d" % coap, "--http", "127.0.0.1:%d" % http, "--speed", "60"] + list(extra)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return p, data, "http://127.0.0.1:%d" % http


def read_until(p, marker, timeout):
    """Read the demo's output (in a thread: the pipe blocks) until marker."""
    buf = []

    def pump():
        for line in p.stdout:
            buf.append(line)
    threading.Thread(target=pump, daemon=True).start()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker in "".join(buf):
            return "".join(buf)
        if p.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail("no %r in the demo's output within %ss:\n%s" % (marker, timeout, "".join(buf)))


def wait_gone(data, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = processes_under(data)
        if not left:
            return
        time.sleep(0.2)
    pytest.fail("processes left behind: %s" % left)


def test_demo_runs_and_stops_by_itself(tmp_path):
    p, data, api = start_demo(tmp_path, "--duration", "25")
    try:
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, out
    assert api + "/api/devices" in out and "eclor send" in out and "Ctrl-C" in out
    assert "devices started 4/4" in out
    assert str(data) in out
    assert (data / "gateway" / "eclor.db").exists()
    assert len(os.listdir(data / "fleet" / "devices")) == 4
    assert "demo: stopped (gateway exit 0)" in out
    wait_gone(data, 5)


def test_ctrl_c_stops_everything(tmp_path):
    """...after the banner's example commands worked against the running demo."""
    p, data, api = start_demo(tmp_path)
    try:
        out = read_until(p, "  stop        Ctrl-C", 120)
        assert len(processes_under(data)) >= 3     # gateway + micropython devices
        words = next(line.split() for line in out.splitlines() if "eclor readings" in line)
        lamp = words[words.index("readings") + 1]
        env = dict(os.environ, ECLOR_API=api)
        cli = [sys.executable, "-m", "eclor.tools.cli"]
        r = subprocess.run(cli + ["send", lamp, "level", "level=20", "duration=600", "--wait", "30"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "done" in r.stdout, r.stdout + r.stderr
        r = subprocess.run(cli + ["devices"], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and lamp in r.stdout, r.stdout + r.stderr
        os.killpg(p.pid, signal.SIGINT)            # what Ctrl-C in a terminal does
        p.wait(30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0
    wait_gone(data)


def test_killed_demo_leaves_no_orphan(tmp_path):
    p, data, api = start_demo(tmp_path)
    try:
        read_until(p, "devices started 4/4", 90)
        assert len(processes_under(data)) >= 3
        os.kill(p.pid, signal.SIGKILL)             # no chance to clean up
        p.wait(10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    wait_gone(data)
