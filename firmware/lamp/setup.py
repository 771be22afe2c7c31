"""One-shot construction of the lamp role: the controller's state
(Controller.__init__) and the network (endpoint, resources, registration,
tasks). Loaded at boot through lamp.use() and dropped afterwards: this code
runs once, its heap is better used by the night's work. Its names are
interned for good all the same (docs/lamp.md "Qstrs"): the controller's
attribute names reuse names the firmware has anyway, see lamp/control.py.
"""
import asyncio
import hal
from dev import store
from dev.outbox import Outbox
from lamp import schedule, use
from lamp.dimmer import Dimmer
from lamp.faults import Faults
from lamp.energy import Energy
from micropython import const

# the lamp's resources (lamp/resources.py) and their link-format attributes
_RES = const((
        ("lamp/state", b'rt="eclor.lamp.state";ct=112;obs'), ("lamp/override", b'rt="eclor.lamp.override"'),
        ("lamp/calendar", b'rt="eclor.lamp.calendar";ct="60 50"'), ("lamp/type", b'rt="eclor.lamp.type"'),
        ("dev/info", b'rt="eclor.dev.info";ct=60'), ("dev/config", b'rt="eclor.dev.config"'),
        ("dev/reboot", b'rt="eclor.dev.reboot"'), ("cmd", b'rt="eclor.cmd";ct=60')))

DEFAULTS = {"wattage": 60, "tolerance": 0.2, "warmup_s": 30, "min_level": 10, "ramp_ms": 2000,
            "curve": "linear", "default_level": 100, "debounce_s": 30, "lux_on": 20, "lux_off": 50,
            "tz_std": 3600, "dst": True, "save_s": 900, "outbox": 64}


def controller(ctl, cfg, safe, hw, outbox):
    """Controller.__init__ (lamp/control.py). Its attributes, 17 with ep and
    reg (lamp/app.py), fit the 17 slots of an instance dict's smaller table:
    an 18th would grow it to 23 slots (the object 320 -> 416 B on the
    64-bit host), so the step's small state is one list, ctl.mono."""
    ctl.cfg = cfg
    ctl.safe = safe
    ctl.p = p = dict(DEFAULTS)
    p.update(cfg.get("lamp") or {})
    if hw is None:
        import sys
        pins = p.get("pins")
        # the lamp HAL of the board; by its module name, a string > 10
        # characters (no qstr): the simulator never loads hal.lamp_esp32
        m = "hal.lamp_sim"
        if sys.platform == "esp32":
            m = "hal.lamp_esp32"
            pins = pins or (store.load_json("board.json", {}).get("pins") or {}).get("lamp", {})
        __import__(m)
        hw = sys.modules[m].Lamp(pins, p.get("meter"))
    ctl.hw = hw
    # a "switch" lamp (no dimming input): any level above 0 is full on
    ctl.dim = Dimmer(ctl.hw, p["ramp_ms"], 100 if p.get("control") == "switch" else p["min_level"],
                      p["curve"])
    ctl.faults = Faults(p, ctl.on_event)
    ctl.energy = Energy(save_s=p["save_s"])
    # only the compact validated form stays in RAM; GET reads the file
    ctl.cal = use("calcheck", "load", ctl)
    # today's sun events (of the RTC's day, known or not): lamp.astro loads
    # once now, on the boot's unfragmented heap, where its new qstrs may
    # grow the qstr pool (one contiguous block), rather than first when the
    # time becomes known on a busy heap
    schedule.night(int(hal.time()) // 86400, cfg.get("lat", 49.47), cfg.get("lon", 5.93), p["tz_std"],
                   p["dst"])
    ov = store.load_json("data/override.json", [])  # lamp/control.py's _OVR
    ctl.overrides = ov if isinstance(ov, list) else []
    ctl.outbox = outbox or Outbox("data/outbox", p["outbox"])
    ctl.src = "boot"
    ctl.power = None
    ctl.voltage = None
    ctl.on_change = None  # () -> None: observe notification, sender wake-up
    # the step's state (lamp/control.py, its _S.. indices): [monotonic
    # seconds for debouncing and write pacing (the RTC jumps when the time
    # is set after a power cut, ticks_ms wraps on the board), ms not yet
    # counted in them, ticks_ms of the last step, the next report's time
    # (UTC s), the last accepted motion (RTC s), the dimmer's relay and fade
    # as of the previous step, dark (the fail-safe's light sensor)]
    ctl.mono = [0, 0, hal.ticks_ms(), None, None, False, False, True]


def network(ctl, cfg, tasks):
    """The CoAP endpoint, resources, registration and the network tasks of
    lamp/app.py; returns the endpoint."""
    import gc
    gc.collect()  # the CoAP stack's code packs low, after the controller's boot garbage
    from coap.endpoint import addr
    # the serving endpoint (resources, Observe): a plain coap.endpoint.Endpoint
    # is a client only
    from coap.observe import Server as Endpoint
    from coap.rd import Registration
    from lamp.resources import Server
    from lamp.app import sender, upkeep, _wifi, waker
    import sys
    p = ctl.p
    sec = store.load_json("secrets.json", {})   # no dev.config (schema) on the heap
    if sec.get("ssid"):
        _wifi(cfg, sec)
    ep = ctl.ep = Endpoint(port=p.get("port", 5683 if sys.platform == "esp32" else 0), params=p.get("coap"))
    g = cfg["gateway"]
    gw = addr(g["host"], g["port"])
    # No closure here: a function defined in this module would keep the
    # whole module (its globals, so every function of it) alive after
    # lamp.use() drops it -- the on_change waker is lamp/app.py's, the
    # reboot lamp/admin.py's.
    wake = [None]  # the sender's task while it naps (lamp/app.py waker)
    srv = Server(ctl)  # the handler of every path and the command table
    for path, attrs in _RES:
        ep.add(path, srv, obs=path == "lamp/state", attrs=attrs)
    reg = Registration(ep, gw, cfg["ep"], "eclor.lamp", cfg.get("lt", 3600))
    ctl.reg = reg
    tasks.append(asyncio.create_task(ep.run()))
    tasks.append(reg.start())
    tasks.append(asyncio.create_task(sender(ctl, ep, reg, gw, wake)))
    tasks.append(asyncio.create_task(upkeep(cfg, sec, ep, gw, reg, p.get("link_s", 30) * 1000)))
    ctl.on_change = waker(ep, wake)
    return ep
