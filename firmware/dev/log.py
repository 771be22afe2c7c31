"""Persisted event log for the technician (eclor.log()) and post-mortems.

Lines "UTC_SECONDS LEVEL message" appended to data/log.txt; when the file
passes _MAX_BYTES (4 KB) it becomes data/log.1 (the previous log.1 is dropped), so
the log costs at most 2 x _MAX_BYTES of flash. Appends are for events only
(boot, faults, crashes, config changes), never per reading, which bounds
flash wear. Never raises: a log that cannot be written must not stop a lamp.
"""
import os
from micropython import const

PATH = "data/log.txt"
OLD = "data/log.1"
_MAX_BYTES = const(4096)


def event(msg, level="I"):
    try:
        print("[%s] %s" % (level, msg))
        try:
            size = os.stat(PATH)[6]
        except OSError:
            size = 0
            from dev import store
            store.makedirs("data")
        if size > _MAX_BYTES:
            try:
                os.remove(OLD)
            except OSError:
                pass
            os.rename(PATH, OLD)
        try:
            import hal
            t = int(hal.time())
        except Exception:
            t = 0
        with open(PATH, "a") as f:
            f.write("%d %s %s\n" % (t, level, msg))
    except Exception:
        pass


def error(msg):
    event(msg, "E")


def exception(msg, e):
    """Log msg with the exception's traceback text."""
    try:
        import io
        import sys
        buf = io.StringIO()
        sys.print_exception(e, buf)
        msg = msg + ": " + buf.getvalue().replace("\n", " | ")
    except Exception:
        msg = "%s: %r" % (msg, e)
    event(msg, "E")


def recent(n=20):
    """The last n lines (oldest first)."""
    out = []
    for p in (OLD, PATH):
        try:
            with open(p) as f:
                for line in f:
                    out.append(line.rstrip("\n"))
                    if len(out) > n:
                        out.pop(0)
        except OSError:
            pass
    return out
