"""The bin's duty cycle: one wake = measure, maybe transmit, deep sleep.

Every wake measures (ranger burst while the DS18B20 converts, tilt,
battery) and evaluates the events. It transmits only when something is worth
the radio: an event, a fill change of at least `step_pct` since the last
queued level, a due heartbeat, a pending backlog whose retry time has come,
or a `report` request. Otherwise the wake costs ~0.8 s of CPU and no radio.

A transmission first puts this wake's pack (SenML CBOR) into the outbox in
flash, so it survives a power cut, then: Wi-Fi on (saved channel/BSSID),
register or update in queue mode (b=UQ), POST the backlog to /dp in packs of
at most MAX_POST bytes (oldest first; each 2.04 acks exactly the items it
carried), apply the commands the gateway put in the /dp answer and POST the
results to /cr in the same wake, radio off, deep sleep. No answer, 5.03 or
no Wi-Fi: the items stay queued and the next attempt waits an exponential
back-off (backoff_s doubling up to backoff_max_s, or the gateway's Max-Age),
and measurements keep being queued meanwhile (the outbox drops the oldest
beyond its bound and counts them; "dropped" is reported).

Energy accounting (waste/sense.py finish()). awake_ms = _BOOT_MS + hal
ticks from the start of the wake to deep sleep; radio_ms = ticks from Wi-Fi on to Wi-Fi off. On the
board these are real times. On the host the common sim HAL's clock moves only
by documented physical durations (Wi-Fi association, sleep_ms, ping flights,
DS18B20 conversion), and waste/link.py adds the ones it owns: _RTT_MS per CoAP
exchange and, for each retransmission or final timeout, the expected wait of
the configured ACK_TIMEOUT schedule. Totals go to the state file and, since
the last heartbeat, into the heartbeat (awake_ms, radio_ms, wakes).

State kept across deep sleep: data/bin.json (atomic, dev.store): last fill
and temperature, latched events, last queued fill and heartbeat time,
back-off, saved Wi-Fi parameters, registration location, energy counters.
"""
import asyncio
import struct
from micropython import const
import hal
from dev import store

_MAX_CMD_ROUNDS = const(4)  # answers (/dp, then /cr) whose commands are applied
# kept for the next session's endpoint: its 1,153-byte receive buffer
# (coap.endpoint _RX) and what Endpoint() allocates before it (parameters
# dict, socket); 1,153 alone left the buffer without a hole at times
_HOLE = const(2048)
STATE = "data/bin.json"


class Cycle:
    def __init__(self, cfg, secrets=None, hw=None):
        self.t0 = hal.ticks_ms()
        self.cfg = cfg
        self.secrets = secrets or {}
        from waste import conf
        self.s, self.cfg_error = conf.from_config(cfg)
        conf = None
        unload("waste.conf")     # the command code reloads it to validate changes
        self.s = _settled(self.s)
        self._own_hw = hw is None
        if hw is None:
            hw = _open_hw(cfg)
        self.hw = hw
        self.ranger = None
        self.st = store.load_json(STATE, None) or {}
        self.ob = None
        self.radio_ms = 0
        self.reading = None
        self.changes = []
        self.packed = None       # this wake's pack (waste/sense.py), not queued yet
        self.sent = 0            # packs acknowledged this wake
        self.bytes = 0           # CoAP payload bytes sent this wake
        self.reboot = False
        self.error = None        # why the last transmission failed
        self.deferred = None     # heartbeat flag of a pack waiting for the time
        self.port = 0            # local UDP port of this wake's CoAP sessions
        self.mid = None          # last CoAP message ID of the previous session
        self.rereg = False       # re-registered on a 4.04 to /dp (once per wake)
        self.safe = False
        self.queued = False      # this wake's pack is in the outbox
        self.hole = None         # room kept for the next session's endpoint

    def outbox(self):
        if self.ob is None:
            from dev.outbox import Outbox
            self.ob = Outbox("data/outbox", self.s["outbox"])
        return self.ob

    def queue(self, now, hb):
        """Persist this wake's pack, at time now, in the outbox and the
        state that goes with it."""
        st, r = self.st, self.reading
        p = self.packed
        if p is None:
            # a "report" command after a wake that only retried its backlog
            from waste.sense import pack
            p = pack(self, hb)
        self.packed = self.deferred = None
        self.queued = True
        struct.pack_into(">I", p[0], p[1], now)
        self.outbox().push(p[0])
        if r["fill"] is not None:
            st["sent_fill"] = r["fill"]
        st["sent_status"] = r["status"]
        st["force"] = 0
        if hb:
            st["hb"] = now
            st["hb_awake"] = st["hb_radio"] = st["hb_wakes"] = 0
        store.save_json(STATE, st)

    async def wake(self):
        """Measure, queue, maybe transmit; returns the ms to deep-sleep."""
        st = self.st
        if hal.reset_cause() != "deepsleep":
            st["force"] = 1          # announce ourselves after power-on or reset
        from waste import sense
        sense.measure(self)
        now = int(hal.time())
        # the ranger, the events and the bin HAL are done: their code makes
        # room for the pack's (the HAL is re-opened for the deep sleep)
        self.ranger = None
        hwmod = None
        if self._own_hw:
            hwmod = self.hw.__class__.__module__
            self.hw = None
        unload("waste.ranger", "waste.events", hwmod)
        go = sense.decide(self, now)
        sense = None
        if go:
            # the radio phase needs the CoAP stack: drop the rest of the
            # measurement code (reloaded if used again)
            self.ob = None          # re-opened after the registration
            unload("waste.sense", "dev.outbox", "fmt.cbor")
            await self.transmit()
        if self.deferred is not None:
            # the clock could not be set: queue with the RTC's time anyway
            # rather than lose the reading
            self.queue(int(hal.time()), self.deferred)
        from waste import sense   # again after a transmission
        return sense.finish(self)

    async def transmit(self):
        """The wake window (waste/link.py), then the back-off bookkeeping.

        Commands in the gateway's answers are applied between two CoAP
        sessions, with the link and CoAP code dropped: the command code
        (dev.commands, waste.actions, waste.conf) and the CoAP stack are
        never on the heap together, which made the peak of a wake that gets
        commands. Wi-Fi stays on throughout."""
        t_on = hal.ticks_ms()
        res = None
        rounds = 0
        while True:
            try:
                from waste import link
                cmds = await link.window(self, res)
            except Exception as e:   # MemoryError loading it: never skip the deep sleep
                self.error = "%s: %s" % (type(e).__name__, e)
                cmds = None
            link = None
            # let the endpoint's cancelled receive task end (it holds the
            # CoAP code), then forget the modules
            await asyncio.sleep_ms(0)
            unload("waste.link", "waste.dp", "coap.endpoint", "coap.codec")
            if not cmds or rounds == _MAX_CMD_ROUNDS:
                break
            rounds += 1
            # the heap is at its cleanest now: keep one block for the next
            # session's endpoint buffer, which the command code's leftovers
            # (new settings, results, names) would otherwise split up;
            # link._session frees it just before it makes the endpoint
            # (only a help: a heap without room for it may still fit the session)
            try:
                self.hole = bytearray(_HOLE)
            except MemoryError:
                pass
            try:
                # the outbox is empty here (the /dp session took it all): its
                # code goes first, and a `report` command re-opens it
                self.ob = None
                unload("dev.outbox")
                from waste import actions
                res = actions.run(self, cmds)
                # no dead slot may keep the command code alive for the GC
                # (it scans stacks conservatively)
                actions = None
            except Exception as e:   # MemoryError...: never skip the deep sleep
                self.error = "%s: %s" % (type(e).__name__, e)
                cmds = None
                break
            finally:
                unload("waste.actions", "waste.setconf", "waste.conf", "dev.commands", "fmt.cbor")
                self.s = _settled(self.s)
            if res is None:          # the answers held no command after all
                break
        hal.wifi_off()
        self.radio_ms += hal.ticks_diff(hal.ticks_ms(), t_on)
        st, s = self.st, self.s
        if cmds is not None:
            st["fails"] = 0
            st["next_try"] = 0
        else:
            n = st.get("fails", 0)
            st["fails"] = n + 1
            wait = s["backoff_s"] << n if n < 16 else s["backoff_max_s"]
            if wait > s["backoff_max_s"]:
                wait = s["backoff_max_s"]
            if self.error and self.error.startswith("max-age "):
                wait = max(int(self.error[8:]), s["backoff_s"])
            st["next_try"] = int(hal.time()) + wait
        st["tot_tx"] = st.get("tot_tx", 0) + 1

    def sleep(self, ms):
        if self.hw is None:
            self.hw = _open_hw(self.cfg)
        self.hw.arm_tilt_wake(True)
        hal.wifi_off()
        if self.reboot:
            hal.reboot()
        hal.deepsleep(ms)


def unload(*names):
    """Forget modules (dev.forget) and collect, so the GC reclaims their code
    (RAM on a board that loads .mpy from flash). Re-imported if needed again."""
    import gc
    from dev import forget
    for n in names:
        if n:
            forget(n)
    gc.collect()


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


def _open_hw(cfg):
    import sys
    if sys.platform == "esp32":
        from hal import bin_esp32 as m
    else:
        from hal import bin_sim as m
    return m.open(cfg.get("pins"))
