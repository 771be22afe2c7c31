# MicroPython side helpers for the fmt property tests (run through
# tests/mpbridge.py with this directory on MICROPYPATH). Objects travel as
# CBOR bytes so that types (int keys, bytes, floats) survive the JSON bridge.
from fmt import cbor, senml

_w = cbor.Writer(64)


def reencode(data):
    """CBOR in -> firmware decode -> firmware encode -> CBOR out."""
    return cbor.dumps(cbor.loads(data))


def safe_loads(data):
    """['ok', re-encoded] or ['err', exception type name, message]."""
    try:
        return ["ok", cbor.dumps(cbor.loads(data))]
    except ValueError as e:
        return ["err", "ValueError", str(e)]
    except Exception as e:  # anything else is a bug the test reports
        return ["err", type(e).__name__, str(e)]


def writer_reencode(data):
    """The same through the reusable Writer (reset between uses)."""
    _w.reset().any(cbor.loads(data))
    return bytes(_w.value())


def senml_encode(readings_cbor, bn, bt):
    return bytes(senml.encode(cbor.loads(readings_cbor), bn, bt, _w))


def senml_encode_json(readings_cbor, bn, bt):
    return senml.encode_json(cbor.loads(readings_cbor), bn, bt)


def senml_decode(data, ct):
    """['ok', CBOR of the resolved list] or ['err', type, message]."""
    try:
        return ["ok", cbor.dumps(senml.decode(data, ct))]
    except ValueError as e:
        return ["err", "ValueError", str(e)]
    except Exception as e:
        return ["err", type(e).__name__, str(e)]


def senml_concat(packs):
    return senml.concat(packs)


# --- dev.outbox model test helpers (the bridge process works in a temp dir) ---
_ob = None
_bound = 0


def ob_reset(path, bound):
    import os
    global _ob, _bound
    os.chdir(path)
    from dev.outbox import Outbox
    _bound = bound
    _ob = Outbox("ob", bound)
    return True


def ob_push(data):
    return _ob.push(data)


def ob_ack_nth(k):
    items = _ob.peek(k + 1)
    if len(items) > k:
        _ob.ack(items[k][0])
    return True


def ob_reopen(cut=False):
    """A reboot / deep-sleep wake; cut=True: a push was cut after its tmp file."""
    global _ob
    from dev.outbox import Outbox
    if cut:
        with open("ob/%08d.tmp" % _ob.next, "wb") as f:
            f.write(b"torn")
    _ob = Outbox("ob", _bound)
    return True


def ob_state():
    return [[d for _, d in _ob.peek(10000)], _ob.dropped, len(_ob)]


# --- dev.config / dev.commands robustness helpers ---
def cfg_apply(path, cur, changes_cbor):
    """Apply CBOR-encoded changes to cur in dir path; reports the outcome and
    whether config.json is byte-identical after a refusal."""
    import os
    from dev import config, store
    os.chdir(path)
    store.save_json("config.json", cur)
    before = store.read("config.json")
    try:
        changes = cbor.loads(changes_cbor)
    except ValueError:
        return ["skip"]
    try:
        new = config.apply(cur, changes)
    except ValueError as e:
        return ["err", "ValueError", str(e), store.read("config.json") == before]
    except Exception as e:
        return ["err", type(e).__name__, str(e), False]
    config.validate(new)
    return ["ok", config.load() == new]


_cm = None


def cmd_apply(path, cmd_cbor):
    import os
    global _cm
    from dev.commands import Commands
    os.chdir(path)
    try:
        os.remove("cmds.json")  # each example on a device that has seen no command
    except OSError:
        pass
    _cm = Commands({"level": _level, "none": lambda p: None}, "cmds.json", now=lambda: 1790000000)
    try:
        r = _cm.apply(cbor.loads(cmd_cbor))
    except Exception as e:
        return ["raised", type(e).__name__, str(e)]
    return ["ok", cbor.dumps(r)]


def _level(p):
    lv = p.get("level")
    if not isinstance(lv, int) or isinstance(lv, bool) or not 0 <= lv <= 100:
        raise ValueError("level 0..100")
    return lv
