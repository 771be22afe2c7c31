"""Bridge for property-based tests: hypothesis runs on CPython, the firmware
code under test runs in one long-lived unix-port MicroPython process.

    with MicroBridge() as mp:
        mp.call("coap.codec.decode", b"...")

Arguments and results travel as JSON lines; bytes as {"$b": hex}. An exception
inside MicroPython comes back as MicroPythonError("Type: message"), so a
hypothesis test can assert on it and shrink failing inputs as usual.
"""
import binascii
import json
import subprocess
import tempfile
from pathlib import Path

from eclor.tools import mpy

HERE = Path(__file__).resolve().parent


class MicroPythonError(Exception):
    pass


def _enc(x):
    if isinstance(x, (bytes, bytearray, memoryview)):
        return {"$b": bytes(x).hex()}
    if isinstance(x, dict):
        return {str(k): _enc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_enc(v) for v in x]
    return x


def _dec(x):
    if isinstance(x, dict):
        if "$b" in x:
            return binascii.unhexlify(x["$b"])
        return {k: _dec(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec(v) for v in x]
    return x


class MicroBridge:
    def __init__(self, heapsize=mpy.ESP32_HEAP, firmware=None, extra_path=()):
        fw = firmware or mpy.firmware_dir()
        # stderr goes to a file, not a pipe: MicroPython warns on stderr (e.g.
        # on bytes/str comparisons) and an unread pipe would fill and deadlock.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            mpy.micropython_cmd([str(HERE / "firmware" / "_bridge.py")], heapsize),
            env=mpy.micropython_env([fw, HERE / "firmware", *extra_path]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
        )

    def call(self, func, *args):
        self.proc.stdin.write(json.dumps({"f": func, "a": _enc(list(args))}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self._stderr.seek(0)
            raise RuntimeError("MicroPython bridge died: " + self._stderr.read()[-4000:])
        out = json.loads(line)
        if "e" in out:
            raise MicroPythonError(out["e"])
        return _dec(out["r"])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
