"""Interop with an independent C implementation, libcoap 4.3 (Debian
libcoap3-bin): coap-client-notls against the firmware server, the firmware
RD client against coap-rd-notls (registration and recovery; that sample RD
implements an older draft: no POST update, so the client re-registers).  Skipped when libcoap3-bin is absent
(tools/test.sh installs it when it can)."""
import shutil
import socket
import subprocess
import time

import pytest

from eclor.tools import mpy

CLIENT = shutil.which("coap-client-notls")
RD = shutil.which("coap-rd-notls")
pytestmark = pytest.mark.skipif(not CLIENT, reason="libcoap3-bin (coap-client-notls) not installed")

BIG = bytes((i * 31 + 7) & 255 for i in range(3072))

FW_SERVER = r"""
import asyncio, sys
from coap import codec
from coap.observe import Server

BIG = bytes((i * 31 + 7) & 255 for i in range(3072))
text = [b"init"]
state = [0]

def h_text(req):
    if req.method == codec.GET:
        return codec.CONTENT, text[0], 0
    if req.method in (codec.PUT, codec.POST):
        text[0] = bytes(req.payload)
        return codec.CHANGED, b"", None
    return codec.METHOD_NOT_ALLOWED, b"", None

async def main():
    ep = Server(port=int(sys.argv[1]), host="127.0.0.1")
    ep.add("text", h_text, attrs=b'rt="eclor.text";ct=0')
    ep.add("big", lambda req: (codec.CONTENT, BIG, 42))
    ep.add("upload", lambda req: (codec.CHANGED, b"%d:%d" % (len(req.payload), req.payload == BIG), 0))
    ep.add("state", lambda req: (codec.CONTENT, b"s%d" % state[0], 0), obs=True)
    asyncio.create_task(ep.run())
    print("READY")
    while True:
        await asyncio.sleep_ms(200)
        if ep.observers():
            state[0] += 1
            ep.notify("state")

asyncio.run(main())
"""


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fw_server(tmp_path):
    port = free_udp_port()
    script = tmp_path / "srv.py"
    script.write_text(FW_SERVER)
    proc = subprocess.Popen(mpy.micropython_cmd([str(script), str(port)]), env=mpy.micropython_env([mpy.firmware_dir()]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    yield "coap://127.0.0.1:%d/" % port
    proc.kill()
    proc.wait()


def coap_client(*args, timeout=20):
    """Run coap-client-notls; returns stdout (libcoap adds a newline to
    text it prints, so exact comparisons strip one)."""
    r = subprocess.run([CLIENT, "-B", "10"] + list(args), capture_output=True, timeout=timeout)
    out = r.stdout
    return out[:-1] if out.endswith(b"\n") and "-s" not in args else out


def test_libcoap_client_against_firmware_server(fw_server, tmp_path):
    assert coap_client(fw_server + "text") == b"init"
    coap_client("-m", "put", "-e", "hello libcoap", fw_server + "text")
    assert coap_client(fw_server + "text") == b"hello libcoap"
    # Block2, with libcoap asking for 256-byte blocks (SZX negotiation)
    out = tmp_path / "big.bin"
    coap_client("-o", str(out), fw_server + "big")
    assert out.read_bytes() == BIG
    coap_client("-b", "256", "-o", str(out), fw_server + "big")
    assert out.read_bytes() == BIG
    # Block1 upload of 3 KB in 512-byte blocks
    src = tmp_path / "up.bin"
    src.write_bytes(BIG)
    assert coap_client("-m", "put", "-b", "512", "-f", str(src), fw_server + "upload") == b"3072:1"
    wk = coap_client(fw_server + ".well-known/core")
    assert b'</text>;rt="eclor.text";ct=0' in wk and b"</state>;obs" in wk, wk
    # observe for ~2 s: several notifications, increasing
    notes = coap_client("-s", "2", "-w", fw_server + "state", timeout=30).split()
    nums = [int(n[1:]) for n in notes if n.startswith(b"s")]
    assert len(nums) >= 4 and nums == sorted(nums), notes


@pytest.mark.skipif(not RD, reason="coap-rd-notls not installed")
def test_firmware_rd_client_against_libcoap_rd(tmp_path):
    port = free_udp_port()
    rd = subprocess.Popen([RD, "-A", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        script = tmp_path / "reg.py"
        script.write_text(r"""
import asyncio, sys
from coap import codec, rd
from coap.observe import Server

async def main():
    ep = Server(params={"ACK_TIMEOUT": 500})
    ep.add("state", lambda r: (codec.CONTENT, b"", None), obs=True, attrs=b'rt="eclor.lamp.state";ct=112')
    asyncio.create_task(ep.run())
    gw = ("127.0.0.1", int(sys.argv[1]))
    reg = rd.Registration(ep, gw, "lamp-libcoap", "eclor.lamp", lt=60)
    ok = await reg.ensure()
    print("REG", ok, reg.location, reg.last_code)
    reg.kick()
    ok = await reg.ensure()
    print("UPD", ok, reg.last_code)
    r = await ep.request(codec.GET, gw, ".well-known/core")
    print("WK", r.payload.decode())
    print("LOC", reg.location)

asyncio.run(main())
""")
        out = mpy.run([str(script), str(port)], [mpy.firmware_dir()], timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = dict(l.split(" ", 1) for l in out.stdout.splitlines() if " " in l)
        reg = lines["REG"].split()
        assert reg[0] == "True" and reg[1].startswith("rd/") and reg[2] == "65", out.stdout
        # libcoap's sample RD (4.3.1, an older draft) has no POST update: it
        # answers 4.05, and the client recovers by registering again (2.01)
        assert lines["UPD"].split() in (["True", "68"], ["True", "65"]), out.stdout
        assert "</%s>" % lines["LOC"] in lines["WK"], out.stdout
    finally:
        rd.kill()
        rd.wait()
