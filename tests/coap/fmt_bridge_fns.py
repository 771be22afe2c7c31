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
