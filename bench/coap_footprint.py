"""Footprint of the firmware CoAP stack, measured the way the design brief
measured microCoAPy.

* mpy_bytes: the stack as shipped (.mpy, -march=xtensawin): codec, endpoint,
  observe, watch, block, linkformat, rd, register (+ the package marker).
* heap_after_import: gc.mem_alloc() in unix MicroPython after importing the
  stack (asyncio and socket included: the stack needs them) — every module
  of the stack at once, and the client-only part (codec + endpoint)
  separately.
* min_heap_bytes: the smallest `-X heapsize` at which 50 confirmable POSTs
  to a local aiocoap server all succeed, found by bisection (256-byte
  resolution) and confirmed: that size passes again and so do the two
  sizes above it (a lucky pass at the edge does not count).  "client": what a device that only POSTs loads (block,
  observe... stay unloaded until used); "all": what an always-on device
  (a lamp) does with every feature available, each loaded the way the
  stack loads it: an observable resource served, a Registration running in
  its own task (POST /rd with the link-format payload, answered 2.01), the
  server (the "gateway") observing that resource from the registration on,
  and a notification after every 5th POST while the 50 POSTs run; a run
  passes only when all 50 POSTs, the registration and the observation
  (still registered at the end: its CON notifications were ACKed)
  succeeded.  Block-wise is loaded by the stack only for a body larger
  than one block, which these messages are not.
* romfs: heap_after_import and the two min heaps again with the same .mpy
  files in a ROMFS image imported in place (tools/romfs.py: the image is
  mapped outside the GC heap like a board's ROMFS partition), i.e. what a
  ROMFS-enabled firmware gives (`eclor build --romfs`). min_heap_bytes
  itself stays the LittleFS figure (the stock firmware).
* ms_per_request: one CON POST round trip with a 100 KB heap (mean over 200),
  client run; ms_per_request_all: the same in the "all" run (with its
  notifications going out meanwhile).

The unix port is 64-bit: objects there are about twice their size on the
ESP32, so these heap figures are pessimistic for the board (the reference
numbers were taken the same way).  microCoAPy itself is not available on
this machine; its figures from the design brief are printed beside ours as
ratios, or measured in the same run when MICROCOAPY=/path/to/its/dir is set.

    python bench/coap_footprint.py
    MICROCOAPY=/path/to/microCoAPy/microcoapy python bench/coap_footprint.py
    python bench/coap_footprint.py --scan all 32512 35328   # passes per size, six layouts

Last line: JSON.
"""
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiocoap
import aiocoap.resource

from eclor.tools import mpy, romfs

N_POSTS = 50
STACK = ["__init__", "codec", "endpoint", "observe", "watch", "block", "linkformat", "rd", "register"]
# microCoAPy as measured for the design brief (.mpy code, heap after import,
# heap needed for 50 CON POSTs: 24-28 KB, the upper end is taken)
REFERENCE = {"mpy_bytes": 8700, "heap_after_import": 18200, "min_heap_bytes": 28 * 1024}

CLIENT = """
import gc, time
gc.collect()
import asyncio
from coap import codec
from coap.endpoint import Endpoint, addr
%(imports)s
gc.collect()
print("IMPORTED", gc.mem_alloc())

async def main():
    # local server, no loss: a short timeout makes a starved run fail fast
    ep = %(cls)s(params={"ACK_TIMEOUT": 300, "MAX_RETRANSMIT": 2})
%(setup)s
    asyncio.create_task(ep.run())
    a = addr("127.0.0.1", %(port)d)
    body = b"\\x81\\xa3\\x21\\x6aurn:dev:x:\\x00\\x65power\\x02\\x18\\x2a"
%(wait)s
    ok = 0
    t0 = time.ticks_ms()
    for i in range(%(n)d):
        r = await ep.request(codec.POST, a, "dp", body, ct=112)
        if r.code == codec.CHANGED:
            ok += 1
%(each)s
    dt = time.ticks_diff(time.ticks_ms(), t0)
%(check)s
    gc.collect()
    print("RESULT", ok, dt, gc.mem_alloc())
    ep.close()

asyncio.run(main())
"""
# what the "all features resident" run adds (the client run has none of it,
# so that neither pays for the other's script)
STACK_IMPORTS = "from coap import block, observe, watch, linkformat, rd, register"
ALL_IMPORTS = "from coap.rd import Registration\nfrom coap.observe import Server"
ALL_SETUP = """    ep.add("state", lambda r: (codec.CONTENT, b"%%d" %% ok, 0), obs=True, attrs=b'rt="x"')
    reg = Registration(ep, ("127.0.0.1", %(port)d), "bench", "eclor.lamp", 60)
    reg.start()"""
# registered, then observed by the server (it observes on registration),
# before the POSTs start: both stay in force while they run
ALL_WAIT = """    ok = 0
    for i in range(200):
        if reg.registered and ep.observers("state"):
            break
        await asyncio.sleep_ms(10)"""
ALL_EACH = """        if i % 5 == 4:
            ep.notify("state")"""
ALL_CHECK = """    await asyncio.sleep_ms(20)
    if not (reg.registered and ep.observers("state") == 1):
        ok = -1"""


# microCoAPy measured the same way, when MICROCOAPY points at its package
# directory (github insighio/microCoAPy, folder microcoapy/): a bare
# blocking client, polled every millisecond, no retransmission.
MICRO_CLIENT = """
import gc, socket, time
gc.collect()
import microcoapy
gc.collect()
print("IMPORTED", gc.mem_alloc())
c = microcoapy.Coap()
c.debug = False
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(socket.getaddrinfo("0.0.0.0", 0)[0][-1])
c.setCustomSocket(s)
got = [0]
def cb(packet, addr):
    if packet.method == 68:
        got[0] += 1
c.responseCallback = cb
body = bytearray(b"\\x81\\xa3\\x21\\x6aurn:dev:x:\\x00\\x65power\\x02\\x18\\x2a")
t0 = time.ticks_ms()
for i in range(%(n)d):
    c.post("127.0.0.1", %(port)d, "dp", body, None, 112)
    c.poll(2000, 1)
dt = time.ticks_diff(time.ticks_ms(), t0)
gc.collect()
print("RESULT", got[0], dt, gc.mem_alloc())
"""


class Dp(aiocoap.resource.Resource):
    def __init__(self):
        super().__init__()
        self.n = 0

    async def render_post(self, request):
        self.n += 1
        return aiocoap.Message(code=aiocoap.CHANGED)


class Rd(aiocoap.resource.Resource):
    """The registration directory of the "all" run: 2.01 rd/1, and the
    gateway's reaction to a registration, observing the device's state."""

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx  # [Context], set once it exists
        self.n = 0
        self.notes = 0
        self.obs = []

    async def render_post(self, request):
        self.n += 1
        self.stop()  # the previous run's device is gone
        msg = aiocoap.Message(code=aiocoap.GET, uri_path=("state",), observe=0)
        msg.remote = request.remote
        pr = self.ctx[0].request(msg)
        pr.observation.register_callback(self._note)
        pr.observation.register_errback(lambda e: None)
        self.obs.append(pr)
        return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", str(self.n)))

    def _note(self, m):
        self.notes += 1

    def stop(self):
        for pr in self.obs:
            if not pr.observation.cancelled:
                pr.observation.cancel()
        self.obs = []


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_client(fw, port, heap, n, all_, rom=None, pad=0):
    # Without ROMFS the script sits in the flash root beside coap/ and runs
    # with -m from there (sys.path ""), as on the board: each module interns
    # its board path ("coap/rd.mpy") as __file__, not a ~35-character host
    # temp path (7 modules and the path entries: ~0.3 KB of names)
    script = Path(fw if not rom else Path(fw).parent) / ("client_%s.py" % all_)
    if all_ == "micro":
        text = MICRO_CLIENT % {"port": port, "n": n}
    elif all_ == "stack":  # heap after importing every module, nothing run
        text = CLIENT % {"port": port, "n": n, "imports": STACK_IMPORTS, "setup": "", "cls": "Endpoint",
                         "wait": "", "each": "", "check": ""}
    else:
        text = CLIENT % {"port": port, "n": n, "imports": ALL_IMPORTS if all_ else "",
                         "cls": "Server" if all_ else "Endpoint",
                         "setup": ALL_SETUP % {"port": port} if all_ else "",
                         "wait": ALL_WAIT if all_ else "", "each": ALL_EACH if all_ else "",
                         "check": ALL_CHECK if all_ else ""}
    if pad:  # another heap layout: pad bytes allocated first and kept (--scan)
        text = text.replace("import gc, time\n", "import gc, time\n_pad = bytearray(%d)\n" % pad, 1)
    script.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        *mpy.micropython_cmd([str(script)] if rom else ["-m", script.stem], heap, romfs=rom),
        env=mpy.micropython_env([] if rom else [""]), cwd=None if rom else str(fw),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    res = {}
    for line in out.decode(errors="replace").splitlines():
        w = line.split()
        if w and w[0] == "IMPORTED":
            res["imported"] = int(w[1])
        elif w and w[0] == "RESULT":
            res["ok"], res["ms"], res["end"] = int(w[1]), int(w[2]), int(w[3])
    res["pass"] = proc.returncode == 0 and res.get("ok") == n
    return res


CONFIRM = 2  # 256-byte steps above the bisection's result that must pass too


async def bisect(fw, port, all_, lo=4096, hi=64 * 1024, rom=None):
    if not (await run_client(fw, port, hi, N_POSTS, all_, rom))["pass"]:
        raise SystemExit("50 POSTs fail even with a %d-byte heap" % hi)
    while hi - lo > 256:
        mid = (lo + hi) // 2 // 256 * 256
        r = await run_client(fw, port, mid, N_POSTS, all_, rom)
        if r and r["pass"]:
            hi = mid
        else:
            lo = mid
    # Near the edge a pass is not monotonic (fragmentation: a heap may pass
    # by luck with a larger one failing): the figure must pass again, and so
    # must the CONFIRM sizes above it, else the next size up is tried.
    async def passes(h):
        r = await run_client(fw, port, h, N_POSTS, all_, rom)
        return bool(r and r["pass"])
    while not all([await passes(hi + i * 256) for i in range(CONFIRM + 1)]):
        hi += 256
    return hi


PADS = (0, 48, 96, 160, 224, 320)  # the heap layouts of --scan


async def scan(fw, port, all_, lo, hi, step=256):
    """How many of the PADS layouts pass at each size lo..hi by step: how a
    change moves the edge, compared side by side with another tree
    (ECLOR_FIRMWARE). One bisection moves by +-512 B with any change of code
    size (where fragmentation puts things); the passes summed over sizes
    and layouts are steadier."""
    res = {}
    for h in range(lo, hi + 1, step):
        n = 0
        for pad in PADS:
            r = await run_client(fw, port, h, N_POSTS, all_, pad=pad)
            n += bool(r and r["pass"])
        res[h] = n
    return res


async def measure_microcoapy(src, tmp, port):
    """Compile microCoAPy like our stack and measure it in the same run."""
    import subprocess
    dst = tmp / "micro"
    pkg = dst / "microcoapy"
    pkg.mkdir(parents=True)
    size = 0
    for f in sorted(src.glob("*.py")):
        out = pkg / (f.stem + ".mpy")
        subprocess.run([mpy.mpy_cross_path(), "-march=xtensawin", "-o", str(out), str(f)], check=True)
        size += out.stat().st_size
    full = await run_client(dst, port, mpy.ESP32_HEAP, 200, "micro")
    assert full["pass"], full
    return {"mpy_bytes": size, "heap_after_import": full["imported"],
            "min_heap_bytes": await bisect(dst, port, "micro"),
            "ms_per_request": round(full["ms"] / 200, 3), "measured": True}


async def main():
    args = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        fw = Path(tmp) / "fw"
        mpy.compile_tree(fw)
        if args and args[0] == "--scan":  # --scan all|client LO HI
            port = free_udp_port()
            site = aiocoap.resource.Site()
            site.add_resource(["dp"], Dp())
            ctxref = []
            site.add_resource(["rd"], Rd(ctxref))
            ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
            ctxref.append(ctx)
            try:
                res = await scan(fw, port, args[1] == "all", int(args[2]), int(args[3]))
            finally:
                await ctx.shutdown()
            print(" ".join("%d:%d" % kv for kv in res.items()))
            print(json.dumps({"scan": res, "layouts": len(PADS), "passes": sum(res.values())}))
            return
        sizes = {m: (fw / "coap" / (m + ".mpy")).stat().st_size for m in STACK}
        mpy_bytes = sum(sizes.values())
        port = free_udp_port()
        site = aiocoap.resource.Site()
        dp = Dp()
        site.add_resource(["dp"], dp)
        ctxref = []
        rd = Rd(ctxref)
        site.add_resource(["rd"], rd)
        ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
        ctxref.append(ctx)
        try:
            stack = await run_client(fw, port, mpy.ESP32_HEAP, 1, "stack")
            full = await run_client(fw, port, mpy.ESP32_HEAP, 200, 1)
            client = await run_client(fw, port, mpy.ESP32_HEAP, 200, 0)
            assert stack["pass"] and full["pass"] and client["pass"], (stack, full, client)
            min_client = await bisect(fw, port, 0)
            min_all = await bisect(fw, port, 1)
            # the same .mpy files in a ROMFS image, imported in place (tools/romfs.py)
            rom = Path(tmp) / "fw.romfs"
            rom.write_bytes(romfs.tree_image(fw))
            rom_stack = await run_client(fw, port, mpy.ESP32_HEAP, 1, "stack", rom)
            assert rom_stack["pass"], rom_stack
            rom_client = await bisect(fw, port, 0, rom=rom)
            rom_all = await bisect(fw, port, 1, rom=rom)
            ref = REFERENCE
            if os.environ.get("MICROCOAPY"):
                ref = await measure_microcoapy(Path(os.environ["MICROCOAPY"]), Path(tmp), port)
        finally:
            await ctx.shutdown()
    out = {
        "mpy_bytes": mpy_bytes,
        "mpy_bytes_by_module": sizes,
        "heap_after_import": stack["imported"],
        "heap_after_import_client": client["imported"],
        "min_heap_bytes": min_all,
        "min_heap_bytes_client": min_client,
        "ms_per_request": round(client["ms"] / 200, 3),
        "ms_per_request_all": round(full["ms"] / 200, 3),
        "romfs": {"heap_after_import": rom_stack["imported"], "min_heap_bytes": rom_all,
                  "min_heap_bytes_client": rom_client},
        "posts_served": dp.n,
        "registrations": rd.n,
        "notifications_seen": rd.notes,
        "reference_microcoapy": ref,
        "ratio_vs_microcoapy": {
            "mpy_bytes": round(mpy_bytes / ref["mpy_bytes"], 2),
            "heap_after_import": round(stack["imported"] / ref["heap_after_import"], 2),
            "heap_after_import_client": round(client["imported"] / ref["heap_after_import"], 2),
            "min_heap_bytes": round(min_all / ref["min_heap_bytes"], 2),
            "min_heap_bytes_client": round(min_client / ref["min_heap_bytes"], 2),
        },
    }
    print("CoAP stack .mpy: %d bytes %s" % (mpy_bytes, sizes))
    print("heap after import: %d (every module), %d (client only)" % (stack["imported"], client["imported"]))
    print("min heap for %d CON POSTs: %d (all features in use), %d (client)" % (N_POSTS, min_all, min_client))
    print("ms per CON POST round trip: %.3f (client), %.3f (all)" % (out["ms_per_request"], out["ms_per_request_all"]))
    print("from ROMFS (in place): heap after import %d, min heap %d (all), %d (client)" % (
        rom_stack["imported"], rom_all, rom_client))
    print("microCoAPy (%s): %s" % ("measured in this run" if ref.get("measured") else "figures from the design brief", ref))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
