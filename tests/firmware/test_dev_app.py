# app.main(): boot counter, safe mode after 3 unhealthy boots, crash -> log
# -> reboot, healthy minute, deep-sleep wakes not counted, no config -> REPL.
# The role is a stand-in package written to the flash dir, so these tests do
# not depend on the lamp/bin code.
import sys
from dev import store

ROLE = """
import app, hal
from dev import store
def make(cfg, safe=False):
    return Obj(safe)
class Obj:
    def __init__(self, safe): self.safe = safe
    def status(self): return {"fake": 1}
def run(cfg, safe):
    store.write("seen_safe", "1" if safe else "0")
    app.current = Obj(safe)
    how = store.read("how").decode()
    if how == "crash":
        raise RuntimeError("role exploded")
    if how == "healthy":
        app.mark_healthy()
        return None
    if how == "sleep":
        hal.deepsleep(60000)
    if how.startswith("async"):
        return body(how)
async def body(how):
    import asyncio
    await asyncio.sleep_ms(80)
    if how == "async-crash":
        raise OSError(5)
"""

CFG = {"ep": "lamp-1", "role": "lamp", "gateway": {"host": "127.0.0.1", "port": 5683}, "wdt_ms": 30000}


def _setup(how):
    store.makedirs("fakerole")
    store.write("fakerole/__init__.py", "")
    store.write("fakerole/app.py", ROLE)
    store.write("how", how)
    store.save_json("config.json", CFG)
    if "" not in sys.path:
        sys.path.insert(0, "")


def _fresh_app():
    for m in ("app", "hal", "hal.sim"):
        if m in sys.modules:
            del sys.modules[m]
    import app
    _role("fakerole.app")
    return app


def _role(name):
    # the role -> module table is dev.boot's: app.main() imports dev.boot,
    # finds this one already loaded (patched) and forgets it after the boot
    from dev import boot
    boot.ROLES["lamp"] = name


def _boot():
    """One boot: returns the SystemExit code, or None when main() returned."""
    app = _fresh_app()
    try:
        app.main()
    except SystemExit as e:
        return e.args[0]
    return None


def test_crash_is_logged_then_reboot_and_safe_mode_after_3_unhealthy_boots():
    _setup("crash")
    from dev import log
    safes = []
    waits = []
    for i in range(5):
        import hal
        t0 = hal.time()  # the RTC survives the simulated reboot
        assert _boot() == 4  # hal.sim reboot status
        import hal
        waits.append(round(hal.time() - t0))
        safes.append(store.read("seen_safe"))
    assert safes == [b"0", b"0", b"0", b"1", b"1"]
    assert waits == [5, 10, 20, 40, 80], waits  # back-off before each reboot
    assert store.read("data/boots") == b"5"
    text = "\n".join(log.recent(50))
    assert "role crashed" in text and "RuntimeError: role exploded" in text and "SAFE MODE" in text
    import hal
    assert hal.reset_cause() == "soft"
    # a boot that goes well clears the counter: normal mode again next time
    store.write("how", "healthy")
    assert _boot() is None and store.read("data/boots") == b"0"
    assert _boot() is None and store.read("seen_safe") == b"0"


def test_async_role_marked_healthy_after_the_healthy_time():
    _setup("async")
    app = _fresh_app()
    app.HEALTHY_MS = 20
    store.write("data/boots", "2")
    app.main()
    assert store.read("data/boots") == b"0"
    assert app.current.status() == {"fake": 1}


def test_async_role_crash_reboots_without_healthy_mark():
    _setup("async-crash")
    store.write("data/boots", "1")
    assert _boot() == 4
    assert store.read("data/boots") == b"2"


def test_deep_sleep_wake_is_not_counted_and_writes_nothing():
    _setup("sleep")
    assert _boot() == 3  # deep sleep is not a crash: no reboot, no log of a crash
    assert store.read("data/boots") == b"1"
    assert _boot() == 3
    assert store.read("data/boots") == b"1"
    from dev import log
    assert "role crashed" not in "\n".join(log.recent(50))
    assert "cause=deepsleep" in "\n".join(log.recent(50))


def test_watchdog_enabled_from_config():
    _setup("healthy")
    app = _fresh_app()
    import hal
    armed = []
    real = hal.wdt_enable
    hal.wdt_enable = lambda ms: armed.append(ms) or real(ms)
    app.main()
    assert armed == [30000]


def test_no_valid_config_returns_to_the_repl():
    app = _fresh_app()
    assert app.main() is None  # no reboot loop
    store.write("config.json", '{"ep": "x", "role": "lamp"}')
    assert app.main() is None
    from dev import log
    assert "gateway: missing" in "\n".join(log.recent(5))


def test_unknown_role_module_is_a_crash_not_a_hang():
    _setup("healthy")
    app = _fresh_app()
    _role("no_such_role.app")
    try:
        app.main()
        assert False
    except SystemExit as e:
        assert e.args[0] == 4


def test_restart_delay_is_capped():
    # 5 s doubled per unhealthy boot in a row (above), at most 10 min
    _setup("crash")
    store.write("data/boots", "99")
    import hal
    t0 = hal.time()
    assert _boot() == 4
    import hal
    assert round(hal.time() - t0) == 600  # MAX_RESTART_DELAY_MS


def test_unwritable_boot_counter_does_not_stop_the_role():
    _setup("healthy")
    store.makedirs("data/boots.tmp")  # the counter cannot be written (EISDIR on its tmp file)
    assert _boot() is None
    assert store.read("seen_safe") == b"0"  # the role ran, in normal mode
    from dev import log
    text = "\n".join(log.recent(5))
    assert "boot counter not saved" in text and "boot counter not cleared" not in text


def test_role_gets_the_validated_config_with_defaults():
    # dev.boot hands over a copy of the loaded config made after the boot's
    # collect (low in the heap): equal to what dev.config.load() returns
    _setup("healthy")
    assert _boot() is None
    import app
    from dev import config
    assert app.cfg == config.load() and app.cfg["gateway"] == CFG["gateway"]
    assert app.cfg["role"] == "lamp" and app.cfg["wdt_ms"] == 30000
