"""Technician shell (mpremote REPL): `import eclor`, then

  eclor.status()              summary: device, time, heap, boots, role state
  eclor.config()              show the config (secrets are in secrets.json, never shown)
  eclor.config("report_s", 300) / eclor.config("gateway.port", 5683)   set: validated, persisted
                              (applied live through the role's set_config(changes) when it has one)
  eclor.log(20)               recent events from the persisted log
  eclor.selftest()            role self-test (relay/power/clock/gateway | ranger/battery/...)
  eclor.level(50)             lamp: override the level
  eclor.measure()             bin: measure now

Generic functions delegate to the running role object (app.current, set by
the role) or, at a REPL with nothing running, to one built by the role
module's make(cfg). Kept tiny on purpose: it is imported on a busy heap
(a running lamp), so dev.config and dev.log are loaded for the call that
needs them and forgotten after it (unless a role holds them), not held for
as long as the shell is imported.
"""
import app
import hal

_out = print  # where the shell writes (tests capture it)


def _use(mod, name, *a):
    # dev.<mod>.<name>(*a), the module loaded for the call
    import sys
    full = "dev." + mod
    held = full in sys.modules
    m = getattr(__import__(full, None, None, (name,)), name)
    try:
        return m(*a)
    finally:
        m = None
        if not held:
            from dev import forget
            forget(full)


def _cfg():
    if app.cfg is None:
        app.cfg = _use("config", "load")
    return app.cfg


def _role():
    if app.current is None:
        # the role's module from dev.boot's table, loaded for the lookup (the
        # table is not resident in app)
        from dev import boot, forget
        try:
            m = boot.role(_cfg()["role"])
        finally:
            forget("dev.boot")
        app.current = m.make(_cfg(), app.safe)
    return app.current


def _call(name, *a):
    f = getattr(_role(), name, None)
    if f is None:
        _out("not available for role", _cfg()["role"])
        return None
    return f(*a)


def status():
    import version
    from dev import clock
    c = _cfg()
    t = hal.time()
    _out("ep       ", c["ep"], "(%s)" % c["role"], "firmware", version.VERSION)
    _out("mode     ", "SAFE" if app.safe else "normal", "boots", app.boots, "reset", hal.reset_cause())
    src = clock.source
    if src is None:
        import sys  # a lamp loads dev.clock per sync and keeps the answer in lamp.app
        src = getattr(sys.modules.get("lamp.app"), "source", None)
    _out("time     ", clock.iso(t), "" if clock.time_known() else "(NOT KNOWN)", src or "")
    _out("heap free", hal.free_heap(), "rssi", hal.rssi())
    _out("gateway  ", c["gateway"]["host"], c["gateway"]["port"])
    try:
        st = _call("status")
    except Exception as e:  # role not importable yet: the generic part still helps
        _out("role      unavailable:", e)
        st = None
    if isinstance(st, dict):
        for k in sorted(st):
            _out("%-9s" % k, st[k])


def config(key=None, value=None):
    c = _cfg()
    if key is None:
        for k in sorted(c):
            _out(k, "=", c[k])
        return None
    parts = key.split(".")
    if value is None:
        v = c
        for p in parts:
            v = v.get(p) if isinstance(v, dict) else None
        return v
    ch = value
    for p in reversed(parts):
        ch = {p: ch}
    live = getattr(app.current, "set_config", None)
    try:
        if live is not None:
            live(ch)  # the running role validates, persists and applies it now
            app.cfg = getattr(app.current, "cfg", None) or _use("config", "load")
        else:  # nothing running: the file, used at the next start or wake
            app.cfg = _use("config", "apply", c, ch)
    except ValueError as e:
        _out("refused:", e)
        return False
    app._log("I", "config %s=%r (shell)" % (key, value))
    return True


def log(n=20):
    for line in _use("log", "recent", n):
        _out(line)


def selftest():
    return _call("selftest")


def level(x):
    return _call("level", x)


def measure():
    return _call("measure")
