# MicroPython side of the hypothesis bridge (see tests/mpbridge.py).
# Reads one JSON request per line on stdin: {"f": "module.function", "a": [args]}
# and answers one JSON line: {"r": result} or {"e": "ExcType: message"}.
# bytes travel as {"$b": "hex"} in both directions.
import sys
import json
import binascii
import gc


def _dec(x):
    if isinstance(x, dict):
        if "$b" in x:
            return binascii.unhexlify(x["$b"])
        return {k: _dec(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec(v) for v in x]
    return x


def _enc(x):
    if isinstance(x, (bytes, bytearray, memoryview)):
        return {"$b": binascii.hexlify(bytes(x)).decode()}
    if isinstance(x, dict):
        return {str(k): _enc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_enc(v) for v in x]
    return x


_cache = {}


def _func(name):
    f = _cache.get(name)
    if f is None:
        mod, _, attr = name.rpartition(".")
        m = __import__(mod)
        for part in mod.split(".")[1:]:
            m = getattr(m, part)
        f = _cache[name] = getattr(m, attr)
    return f


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        req = json.loads(line)
        out = {"r": _enc(_func(req["f"])(*_dec(req.get("a", []))))}
    except Exception as e:
        out = {"e": "%s: %s" % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(out))
    sys.stdout.write("\n")
    gc.collect()
