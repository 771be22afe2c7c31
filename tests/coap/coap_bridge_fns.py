# MicroPython side helpers for the CoAP property tests (imported through
# tests/mpbridge.py; this directory is put on MICROPYPATH).  They turn the
# firmware codec's objects into plain lists that travel as JSON.
from coap import codec
from coap.codec import Msg

_buf = bytearray(4096)


def dec(data):
    m = codec.decode(data)
    if isinstance(m, str):
        return m
    return [m.mtype, m.code, m.mid, m.token, [[o[0], o[1]] for o in m.options], m.payload]


def enc(mtype, code, mid, token, opts, payload):
    n = codec.encode(Msg(mtype, code, mid, token, [list(o) for o in opts], payload), _buf)
    return bytes(_buf[:n])
