"""What a wake measures, whether it is worth the radio, and its SenML pack.

measure(c): the ranger burst while the DS18B20 converts (the temperature
is only needed to turn echo times into metres), tilt, battery, then the
events (waste/events.py). decide(c, now): queue this wake's pack when there
is an event, a fill change >= step_pct since the last queued level, a status
change, a due heartbeat or a `report` request, and say whether to transmit.
run(c) is the wake's part before the radio (measure, decide); init(c) the
cycle's set-up, backoff(c, ok) the bookkeeping after the radio, finish(c)
the energy accounting at the end.

A module of its own so the wake can drop it (with ranger and events) before
the radio phase loads the CoAP stack: RAM is the scarce resource there. So
the pack is built here, before that, with its time patched in when it is
queued (waste/queue.py): after a power-on the RTC is only set in the radio
phase, by which time this module is gone.
"""
import struct
from micropython import const

_BOOT_MS = const(270)  # ROM + bootloader + MicroPython start before main.py


def init(c, cfg, secrets, hw):
    """Cycle(cfg, secrets, hw)'s set-up (waste/cycle.py): here, so that the
    radio phase, which holds waste.cycle throughout, does not hold it."""
    import hal
    from dev import store
    from waste.cycle import STATE, unload
    c.t0 = hal.ticks_ms()
    c.cfg = cfg
    c.secrets = secrets or {}
    # the bin HAL first, before the settings: its names may bring the 301st
    # of the run, which allocates a 3.5 KB qstr pool block for good; the
    # settings' copies below (floats, long key strings) are made amid the
    # garbage of the originals and leave the free space above them in
    # pieces, where that block found no room (wakes failed at 49.6 KB)
    c._own_hw = hw is None
    if hw is None:
        hw = open_hw(cfg)
    c.hw = hw
    from waste import conf
    c.s, c.cfg_error = conf.from_config(cfg)
    conf = None
    unload("waste.conf")     # the command code reloads it to validate changes
    c.s = _settled(c.s)
    # 22 attributes in all: an instance dict holds them in a 23-slot table
    # (416 B with the object on the 64-bit port), held through the whole
    # wake; 24..29 take a 29-slot one (512 B). So the ranger is not kept
    # here (ranger() below), the radio time is a local of Cycle.wake(), a
    # pack waiting for the time carries its heartbeat flag itself
    # (`packed`), the port and last message ID of the sessions are one
    # tuple (`sess`), and `ep` holds the block kept for the next session's
    # endpoint between sessions (waste/cycle.py)
    c.st = store.load_json(STATE, None) or {}
    c.ob = None
    c.reading = None
    c.changes = []
    # this wake's pack (pack() below) as (bytes, offset of its time), not
    # queued yet; (bytes, offset, heartbeat flag) while it waits for the
    # time (after a power-on: waste/queue.py queues it once it is known)
    c.packed = None
    c.sent = 0            # packs acknowledged this wake
    c.bytes = 0           # CoAP payload bytes sent this wake
    c.reboot = False
    c.error = None        # why the last transmission failed
    # (local UDP port, last CoAP message ID) of this wake's sessions, once
    # one has run: the next one continues them (waste/link.py)
    c.sess = None
    c.rereg = False       # re-registered on a 4.04 to /dp (once per wake)
    c.safe = False
    c.queued = False      # this wake's pack is in the outbox
    # a CoAP session's endpoint and gateway address (waste/link.py); between
    # sessions `ep` holds the room kept for the next one's endpoint
    c.ep = c.gw = None


def _settled(d):
    """A copy of the settings dict d, keys and float values included, made
    after the code that built it was dropped and collected. waste.conf
    parses its table into ~20 key strings and floats amid its own garbage,
    at the top of the heap: kept there, they split the free space the CoAP
    stack loads into later into ~350-byte pieces (the endpoint needs one
    1,153-byte block). Made now, the copies fill the low holes; the
    originals go. "%s" % k gives the interned name where there is one."""
    n = {}
    for k, v in d.items():
        n["%s" % k] = v + 0
    return n


def open_hw(cfg):
    """The bin HAL of this platform (waste/cycle.py sleep() opens it again
    for the deep sleep: here, not in the module the radio phase holds)."""
    import sys
    if sys.platform == "esp32":
        from hal import bin_esp32 as m
    else:
        from hal import bin_sim as m
    return m.open(cfg.get("pins"))


def run(c):
    """The measuring part of cycle c's wake: measure, drop the measurement
    code, decide; True when a transmission is due."""
    import hal
    from waste.cycle import unload
    st = c.st
    if hal.reset_cause() != "deepsleep":
        st["force"] = 1          # announce ourselves after power-on or reset
    measure(c)
    now = int(hal.time())
    # the ranger, the events and the bin HAL are done: their code makes
    # room for the pack's (the HAL is re-opened for the deep sleep)
    hwmod = None
    if c._own_hw:
        hwmod = c.hw.__class__.__module__
        c.hw = None
    unload("waste.ranger", "waste.events", hwmod)
    return decide(c, now)


def backoff(c, ok):
    """After cycle c's radio phase (ok: every session went through): the
    back-off of the next attempt, or none."""
    import hal
    st, s = c.st, c.s
    if ok:
        st["fails"] = 0
        st["next_try"] = 0
    else:
        n = st.get("fails", 0)
        st["fails"] = n + 1
        wait = s["backoff_s"] << n if n < 16 else s["backoff_max_s"]
        if wait > s["backoff_max_s"]:
            wait = s["backoff_max_s"]
        if c.error and c.error.startswith("max-age "):
            wait = max(int(c.error[8:]), s["backoff_s"])
        st["next_try"] = int(hal.time()) + wait
    st["tot_tx"] = st.get("tot_tx", 0) + 1


def ranger(c):
    """A ranger (waste/ranger.py) on cycle c's HAL: a wake measures once, so
    the cycle does not keep it (one attribute fewer, see init())."""
    import hal
    from waste.ranger import Ranger
    return Ranger(c.hw, hal.sleep_ms)


def measure(c):
    """One measurement with events; returns the reading dict."""
    hw, s, st = c.hw, c.s, c.st
    from waste import events
    rg = ranger(c)
    hw.temp_start()
    rg.pings(s)
    temp = hw.temp_read()
    t_c = temp if temp is not None else st.get("temp", 15.0)
    res = rg.evaluate(s, t_c)
    if rg.more(s, res):
        rg.pings(s, 2)
        res = rg.evaluate(s, t_c)
    dist, fill, n, why = res
    rg = None
    tilted = hw.tilted()
    batt = hw.battery_v()
    changes, status = events.evaluate(st, fill, temp, tilted, hw.tilt_wake(), batt, s)
    c.changes = changes
    c.reading = r = {"fill": fill, "distance": dist, "temp": temp, "battery": batt,
                      "status": status, "echoes": n, "why": why, "tilted": tilted}
    return r


def finish(c, radio_ms=0):
    """Energy accounting, state save for cycle c (radio_ms: Wi-Fi on time of
    this wake); returns the deep-sleep time (ms). Here rather than in waste/cycle.py: the radio phase does
    not hold it (reloaded after a transmission), nor intern its names
    before the registration."""
    import hal
    from dev import store
    from waste.cycle import STATE
    st, s = c.st, c.s
    awake = _BOOT_MS + hal.ticks_diff(hal.ticks_ms(), c.t0)
    for k, v in (("hb_awake", awake), ("hb_radio", radio_ms), ("hb_wakes", 1),
                 ("tot_awake", awake), ("tot_radio", radio_ms), ("tot_wakes", 1),
                 ("tot_bytes", c.bytes), ("tot_sent", c.sent)):
        st[k] = st.get(k, 0) + v
    st["err"] = c.error
    st["last_awake"] = awake
    st["last_radio"] = radio_ms
    store.save_json(STATE, st)
    return max(1000, s["measure_s"] * 1000 - awake)


def decide(c, now):
    """Queue this wake's pack if worth sending; True when a transmission is due."""
    s, st, r = c.s, c.st, c.reading
    # due within half a period: waiting for the next wake would stretch
    # the heartbeat by a whole measurement interval
    hb = now - st.get("hb", 0) >= s["heartbeat_s"] - s["measure_s"] // 2
    why = None
    if c.changes:
        why = "event"
    elif r["fill"] is not None and (st.get("sent_fill") is None
                                     or abs(r["fill"] - st["sent_fill"]) >= s["step_pct"]):
        why = "change"
    elif r["status"] != st.get("sent_status", "ok") and r["status"] != "unknown":
        why = "status"
    elif hb:
        why = "heartbeat"
    elif st.get("force"):
        why = "report"
    if why:
        p = pack(c, hb)
        if now < 1704067200:
            # RTC unknown (power-on): the pack waits for the clock that
            # the wake window sets (NTP or GET /time), see waste/queue.py
            c.packed = (p[0], p[1], hb)
            return True
        c.packed = p
        p = None
        from waste.queue import queue
        queue(c, now, hb)
    # (a pack queued now: the outbox holds it, no need to re-open it)
    if not c.queued and not len(c.outbox()):
        return False
    # a fresh event goes out now even during back-off; a routine reading waits
    return why == "event" or now >= st.get("next_try", 0)


def pack(c, heartbeat):
    """This wake's SenML CBOR pack, names per docs/architecture.md, as
    (bytearray, offset of the 4-byte base time that waste/queue.py sets)."""
    r, st = c.reading, c.st
    recs = []
    if r["fill"] is not None:
        recs.append(("fill", "%", r["fill"]))
    if r["distance"] is not None:
        recs.append(("distance", "m", r["distance"]))
    if r["temp"] is not None:
        recs.append(("temp", "Cel", r["temp"]))
    if r["battery"] is not None:
        recs.append(("battery", "V", r["battery"]))
    recs.append(("status", None, r["status"]))
    if c.safe:
        recs.append(("mode", None, "safe"))
    for name, on in c.changes:
        recs.append(("ev:" + name, None, on))
    if heartbeat:
        recs.append(("awake_ms", "ms", st.get("hb_awake", 0)))
        recs.append(("radio_ms", "ms", st.get("hb_radio", 0)))
        recs.append(("wakes", None, st.get("hb_wakes", 0)))
        recs.append(("dropped", None, c.outbox().dropped))
    return senml_pack(recs, "urn:dev:ep:%s:" % c.cfg["ep"])


def senml_pack(recs, bn, bt=0):
    """SenML CBOR (RFC 8428) pack of (name, unit, value) records at time bt,
    as (bytearray, offset of bt's 4 bytes).

    The pack's shape is fixed (bn and bt on the first record, at most ~16
    records, numbers, text or booleans), so it is written straight with
    fmt.cbor instead of loading fmt.senml (~5 KB of heap) into every wake.
    bt is always written as a 4-byte unsigned integer (0x1a), which is its
    shortest CBOR form for any RTC reading (2000..2106), so it can be set
    later in place. Floats go out as float32: sensor values carry 4
    significant digits at most, and the ESP32's floats are 32-bit anyway.
    """
    from fmt import cbor
    w = cbor.Writer(160)
    w.array(len(recs))
    at = 0
    for name, unit, v in recs:
        w.map((4 if not at else 2) + (1 if unit else 0))
        if not at:
            w.int(-2)
            w.text(bn)
            w.raw(b"\x22\x1a\0\0\0\0")   # -3 (bt), uint32 set below
            at = w.n - 4
        w.int(0)
        w.text(name)
        if unit:
            w.int(1)
            w.text(unit)
        if v is True or v is False:
            w.int(4)
            w.simple(v)
        elif isinstance(v, str):
            w.int(3)
            w.text(v)
        elif isinstance(v, float):
            w.int(2)
            w.raw(b"\xfa" + struct.pack(">f", v))
        else:
            w.int(2)
            w.int(v)
    p = w.buf[:w.n]
    struct.pack_into(">I", p, at, bt)
    return p, at
