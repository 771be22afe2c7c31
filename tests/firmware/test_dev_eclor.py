# eclor technician shell: status/config/log/selftest/level/measure, against a
# running role object or one built from the config at a bare REPL.
import sys
from dev import store

CFG = {"ep": "lamp-7", "role": "lamp", "gateway": {"host": "192.0.2.1", "port": 5683}}


class Role:
    def __init__(self):
        self.lv = None

    def status(self):
        return {"level": self.lv, "faults": []}

    def selftest(self):
        return {"relay": "ok", "clock": "ok"}

    def level(self, x):
        self.lv = x
        return x


def _capture(f, *a):
    import eclor
    lines = []
    eclor._out = lambda *x: lines.append(" ".join([str(v) for v in x]))
    try:
        r = f(*a)
    finally:
        eclor._out = print
    return r, "\n".join(lines)


def test_status_with_running_role():
    store.save_json("config.json", CFG)
    import app
    import eclor
    app.current = Role()
    eclor.level(42)
    _, out = _capture(eclor.status)
    assert "lamp-7" in out and "(NOT KNOWN)" in out and "level" in out and "42" in out, out
    assert eclor.selftest() == {"relay": "ok", "clock": "ok"}
    r, out = _capture(eclor.measure)
    assert r is None and "not available" in out


def test_status_shows_where_a_lamp_got_its_time():
    # a lamp loads dev.clock for each sync and drops it: the source it
    # answered is kept by lamp.app, and the shell shows that one
    store.save_json("config.json", CFG)
    import app
    import eclor
    from lamp import app as lamp_app
    app.current = Role()
    lamp_app.source = "gateway"
    _, out = _capture(eclor.status)
    line = [l for l in out.split("\n") if l.startswith("time")]
    assert line and line[0].endswith("gateway"), out


def test_status_without_a_loadable_role_still_prints_the_device():
    store.save_json("config.json", CFG)
    import app
    import eclor
    from dev import boot  # the role -> module table (eclor loads dev.boot for it)
    boot.ROLES["lamp"] = "no_such_role.app"
    _, out = _capture(eclor.status)
    assert "lamp-7" in out and "unavailable" in out, out


def test_bare_repl_builds_role_from_config():
    store.makedirs("fakerole")
    store.write("fakerole/__init__.py", "")
    store.write("fakerole/app.py", "class R:\n    def measure(self):\n        return 0.42\n"
                "def make(cfg, safe=False):\n    return R()\n")
    sys.path.insert(0, "")
    store.save_json("config.json", dict(CFG, role="bin"))
    import app
    import eclor
    from dev import boot
    boot.ROLES["bin"] = "fakerole.app"
    assert eclor.measure() == 0.42


def test_config_show_get_set_validated_and_persisted():
    store.save_json("config.json", CFG)
    import eclor
    from dev import config, log
    _, out = _capture(eclor.config)
    assert "ep = lamp-7" in out and "psk" not in out
    assert eclor.config("gateway.port") == 5683
    assert eclor.config("report_s", 300) is True and config.load()["report_s"] == 300
    r, out = _capture(eclor.config, "report_s", 1)
    assert r is False and "refused: report_s" in out and config.load()["report_s"] == 300
    assert eclor.config("gateway.port", 5684) is True and config.load()["gateway"]["host"] == "192.0.2.1"
    assert "config report_s=300 (shell)" in "\n".join(log.recent())


def test_log_prints_recent_events():
    from dev import log
    import eclor
    for i in range(30):
        log.event("event %d" % i)
    _, out = _capture(eclor.log, 5)
    lines = out.strip().split("\n")
    assert len(lines) == 5 and lines[-1].endswith("event 29") and lines[0].endswith("event 25")


def test_config_set_goes_through_the_running_role():
    store.save_json("config.json", CFG)
    import app
    import eclor
    from dev import config

    class Live(Role):
        def __init__(self):
            Role.__init__(self)
            self.cfg = config.load()
            self.seen = []

        def set_config(self, changes):
            self.seen.append(changes)
            self.cfg = config.apply(self.cfg, changes)

    app.current = Live()
    assert eclor.config("lamp.min_level", 12) is True
    assert app.current.seen == [{"lamp": {"min_level": 12}}]
    assert config.load()["lamp"] == {"min_level": 12} and app.cfg["lamp"] == {"min_level": 12}
    r, out = _capture(eclor.config, "report_s", 0)
    assert r is False and "refused" in out and app.current.cfg["report_s"] == 900
