# Real boots: main.py run as separate micropython processes (os.system) on
# one flash directory, like a board resetting. A stand-in `lamp` role package
# in the flash dir (first on the path) crashes, deep-sleeps or runs well on
# demand; the process exit statuses are hal.sim's documented ones.
import os
import sys
from dev import store

TIMEOUT = 60
ROLE = """
import app, hal
from dev import store
def make(cfg, safe=False):
    return None
def run(cfg, safe):
    n = int(store.read("runs") or b"0") + 1
    store.write("runs", str(n))
    store.write("safe%d" % n, "1" if safe else "0")
    how = store.read("how").decode()
    if how == "crash":
        raise MemoryError("simulated")
    if how == "sleep":
        app.mark_healthy()
        hal.deepsleep(900000)
    app.mark_healthy()
"""


def _boot():
    mp = sys.executable
    path = ".:" + os.getenv("MICROPYPATH")
    st = os.system("MICROPYPATH=%s %s -X heapsize=102400 main.py > console.txt 2>&1" % (path, mp))
    return st >> 8


def _setup(how):
    fw = os.getenv("MICROPYPATH").split(":")[0]
    with open(fw + "/main.py") as f:
        store.write("main.py", f.read())
    store.makedirs("lamp")
    store.write("lamp/__init__.py", "")
    store.write("lamp/app.py", ROLE)
    store.write("how", how)
    store.save_json("config.json", {"ep": "lamp-1", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": 5683}})


def test_crash_loop_real_processes_then_safe_mode():
    _setup("crash")
    codes = [_boot() for _ in range(4)]
    assert codes == [4, 4, 4, 4], codes  # each crash: logged, then hal.reboot()
    assert [store.read("safe%d" % i) for i in range(1, 5)] == [b"0", b"0", b"0", b"1"]
    with open("data/log.txt") as f:
        log = f.read()
    assert log.count("MemoryError: simulated") == 4 and "SAFE MODE" in log
    store.write("how", "ok")
    assert _boot() == 0 and store.read("data/boots") == b"0"
    assert _boot() == 0 and store.read("safe6") == b"0"


def test_deep_sleep_cycles_real_processes():
    _setup("sleep")
    for _ in range(3):
        assert _boot() == 3
    st = store.load_json(".sim_rtc.json")
    assert st["cause"] == "deepsleep"
    with open("data/log.txt") as f:
        log = f.read()
    assert log.count("cause=deepsleep") == 2 and log.count("cause=power_on") == 1
    assert store.read("data/boots") == b"0"
