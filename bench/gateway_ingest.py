"""Ingest benchmark: how much of aiocoap's own speed is left once readings are durable.

One load generator (bench/loadgen.py: raw-UDP CoAP, one socket and one
registration per simulated device, confirmable SenML CBOR ``POST /dp``, a
window of outstanding requests) is run, in the same invocation and with the
same parameters, against

1. ``bare``:    a bare aiocoap resource that only answers 2.04 (subprocess), and
2. ``gateway``: the real daemon (``eclor gateway`` subprocess, fresh data dir),
                where a 2.04 means the readings are committed to SQLite.

Both servers run alone, one after the other, on 127.0.0.1.  Server CPU time
comes from /proc/PID/stat (all threads, so the SQLite writer is included),
read at the start and end of the measured window.  The load generator's own
CPU is reported too (``client_cpu_frac`` near 1.0 would mean the client, not
the server, set the pace).  After the gateway run, the readings of one device
are read back through the HTTP API and compared with what was acknowledged.

    python bench/gateway_ingest.py [--seconds 10] [--devices 16] [--window 16] [--records 1]

Last line: JSON with bare_per_s, gateway_per_s, ratio, p50_ms, p99_ms,
cpu_us_per_reading (gateway) and the details of both runs.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import loadgen  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime, stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Measured(loadgen.LoadGen):
    pid = None

    def on_measure_start(self):
        self.cpu0 = cpu_seconds(self.pid)

    def on_measure_end(self):
        self.server_cpu = cpu_seconds(self.pid) - self.cpu0


def drive(pid, port, a, keep_acked=False):
    lg = Measured("127.0.0.1", port, a.devices, a.window, a.records, keep_acked=keep_acked,
                  ack_timeout=a.ack_timeout)
    lg.pid = pid
    try:
        lg.register_all()
        res = lg.run(a.seconds, warmup=a.warmup)
    except BaseException:
        lg.close()
        raise
    res["server_cpu_s"] = round(lg.server_cpu, 3)
    res["server_cpu_frac"] = round(lg.server_cpu / res["wall_s"], 3)
    readings = res["ok"] * a.records
    res["server_cpu_us_per_reading"] = round(lg.server_cpu / readings * 1e6, 1) if readings else None
    res["server_cpu_us_per_req"] = round(lg.server_cpu / res["ok"] * 1e6, 1) if res["ok"] else None
    return lg, res


def wait_line(proc, prefix, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise RuntimeError("server did not print %r (exit %s)" % (prefix, proc.poll()))


def stop(proc, timeout=10.0):
    """SIGTERM, then the exit status and how long it took."""
    if proc.poll() is not None:
        return proc.returncode, 0.0
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return rc, round(time.monotonic() - t0, 3)


def run_bare(a):
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "loadgen.py"),
                             "--serve-bare", "127.0.0.1:%d" % port],
                            stdout=subprocess.PIPE, text=True)
    try:
        wait_line(proc, "READY", 20)
        lg, res = drive(proc.pid, port, a)
        lg.close()
        return res
    finally:
        stop(proc)


def run_gateway(a):
    from eclor.tools.fleet import gwproc  # the shared "gateway as a subprocess" helper

    data = tempfile.mkdtemp(prefix="eclor-bench-")
    gw = gwproc.Gateway(data, extra_args=["--log-level", "warning"])
    try:
        gw.start(30)
        lg, res = drive(gw.proc.pid, gw.coap_port, a, keep_acked=True)
        # Read back one device: every acknowledged reading must be there, once.
        dev = lg.devices[0]
        lg.close()
        acked = len(dev.acked) * a.records
        stored = 0
        for i in range(a.records):  # per name: the API returns at most 10000 rows a query
            rows = gwproc.items(gw.api.get("/api/devices/%s/readings" % dev.ep, name=loadgen.record_name(i)[0],
                                           limit=min(10000, len(dev.acked) + 100)), "readings")
            stored += len(rows)
        res["readback"] = {"device": dev.ep, "acked_readings": acked, "stored": stored}
        res["storage"] = storage_figures(gw.api.get("/metrics"))
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        res["sigterm_exit"] = gw.proc.wait(10)
        res["sigterm_s"] = round(time.monotonic() - t0, 3)
        return res
    finally:
        gw.stop()
        if a.keep:
            sys.stderr.write("gateway data kept in %s\n" % data)
        else:
            shutil.rmtree(data, ignore_errors=True)


def storage_figures(text):
    """Group-commit figures from the gateway's /metrics (whole run, warm-up included)."""
    m = {}
    for line in text.splitlines() if isinstance(text, str) else ():
        if line.startswith("eclor_") and "{" not in line:
            k, _, v = line.partition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
    commits = m.get("eclor_storage_commit_seconds_count") or m.get("eclor_storage_batches_total")
    stored = m.get("eclor_readings_stored_total")
    out = {"commits": commits, "readings_stored": stored}
    if commits:
        out["readings_per_commit"] = round(stored / commits, 2) if stored else None
        s = m.get("eclor_storage_commit_seconds_sum")
        out["commit_ms_mean"] = round(s / commits * 1000, 3) if s is not None else None
    return out


def gwproc_error():
    from eclor.tools.fleet.gwproc import ApiError
    return ApiError


def _line(side, r):
    line = ("%-7s %8.1f req/s  p50 %.2f ms  p99 %.2f ms  server %.0f us/req (cpu %.0f%%)  client cpu %.0f%%"
            % (side, r["per_s"], r["p50_ms"] or 0, r["p99_ms"] or 0, r["server_cpu_us_per_req"] or 0,
               100 * r["server_cpu_frac"], 100 * (r["client_cpu_frac"] or 0)))
    if r["errors"] or r["timeouts"]:
        line += "  errors %s timeouts %d" % (r["errors"], r["timeouts"])
    if "readback" in r:
        line += "  readback %d/%d  SIGTERM exit %s in %.2f s" % (
            r["readback"]["stored"], r["readback"]["acked_readings"], r["sigterm_exit"], r["sigterm_s"])
        st = r.get("storage") or {}
        if st.get("commits"):
            line += "  %.1f readings/commit, %.2f ms/commit" % (st["readings_per_commit"] or 0,
                                                               st["commit_ms_mean"] or 0)
    print(line, flush=True)


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def main(argv=None):
    ap = argparse.ArgumentParser(description="bare aiocoap vs ECLOR gateway, CON SenML POSTs")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per side")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate bare/gateway this many times; medians are reported "
                         "(steadier on a shared machine)")
    ap.add_argument("--devices", type=int, default=16, help="simulated devices (own socket each)")
    ap.add_argument("--window", type=int, default=16, help="requests outstanding in total")
    ap.add_argument("--records", type=int, default=1, help="SenML records per POST")
    ap.add_argument("--ack-timeout", type=float, default=2.0)
    ap.add_argument("--only", choices=("bare", "gateway"))
    ap.add_argument("--keep", action="store_true", help="keep the gateway data dir")
    a = ap.parse_args(argv)

    out = {"seconds": a.seconds, "devices": a.devices, "window": a.window, "records": a.records,
           "rounds": a.rounds}
    bares, gws = [], []
    for _ in range(a.rounds):
        if a.only != "gateway":
            bares.append(run_bare(a))
            _line("bare", bares[-1])
        if a.only != "bare":
            try:
                gws.append(run_gateway(a))
            except (RuntimeError, OSError, gwproc_error()) as e:
                out["gateway_error"] = str(e)
                print("gateway: %s" % e)
                break
            _line("gateway", gws[-1])
    bare_ps = _median([r["per_s"] for r in bares])
    gw_ps = _median([r["per_s"] for r in gws])
    out["bare_per_s"] = bare_ps
    out["gateway_per_s"] = gw_ps
    out["ratio"] = round(gw_ps / bare_ps, 3) if bare_ps and gw_ps else None
    out["p50_ms"] = _median([r["p50_ms"] for r in gws])
    out["p99_ms"] = _median([r["p99_ms"] for r in gws])
    out["cpu_us_per_reading"] = _median([r["server_cpu_us_per_reading"] for r in gws])
    # Server CPU per request, bare over gateway: the same question as `ratio`
    # when both servers are CPU-bound, but much less sensitive to other load
    # on the machine.
    b_us = _median([r["server_cpu_us_per_req"] for r in bares])
    g_us = _median([r["server_cpu_us_per_req"] for r in gws])
    out["cpu_ratio"] = round(b_us / g_us, 3) if b_us and g_us else None
    out["bare_cpu_us_per_req"] = b_us
    # What the load generator could sustain if the server cost nothing: it
    # must stay well above both servers' rates, or the client set the pace.
    c_us = _median([r["client_us_per_req"] for r in bares + gws])
    out["client_capacity_per_s"] = round(1e6 / c_us) if c_us else None
    out["lost_acknowledged"] = sum(r["readback"]["acked_readings"] - r["readback"]["stored"] for r in gws)
    out["bare"], out["gateway"] = bares, gws
    print(json.dumps(out, sort_keys=True))
    return 0 if (gws or a.only == "bare") else 1


if __name__ == "__main__":
    sys.exit(main())
