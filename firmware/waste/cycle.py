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
from micropython import const
import hal

_MAX_CMD_ROUNDS = const(4)  # answers (/dp, then /cr) whose commands are applied
# kept for the next session's endpoint: its 385-byte receive buffer
# (waste/link.py _MAX_MSG + 1), 13 GC blocks of 32 B (64-bit), no more. Measured
# (bench scans by 256 B): 2,048 B, room for what Endpoint() allocates
# before the buffer too, was often not to be had in one piece after the
# first session (its names and state are scattered), and when it was, the
# command code held along with it failed for want of those 864 B
_HOLE = const(416)
STATE = "data/bin.json"


class Cycle:
    # __init__, the measurement, the queueing of a pack and the back-off
    # bookkeeping are in waste/sense.py and waste/queue.py: the radio phase
    # holds this module throughout (wake() runs), not them
    def __init__(self, cfg, secrets=None, hw=None):
        from waste import sense
        sense.init(self, cfg, secrets, hw)

    def outbox(self):
        if self.ob is None:
            from dev.outbox import Outbox
            self.ob = Outbox("data/outbox", self.s["outbox"])
        return self.ob

    async def wake(self):
        """Measure, queue, maybe transmit; returns the ms to deep-sleep.

        The radio phase is in here rather than in a method of its own: its
        coroutine frame and function would be held all through it, the
        peak of the wake's heap (~0.5 KB). Commands in the gateway's
        answers are applied between two CoAP sessions (waste/link.py
        window()), with the link and CoAP code dropped: the command code
        (dev.commands, waste.actions, waste.conf) and the CoAP stack are
        never on the heap together. Wi-Fi stays on throughout."""
        from waste import sense
        go = sense.run(self)
        sense = None
        if go:
            # the radio phase needs the CoAP stack: drop the rest of the
            # measurement code (reloaded if used again)
            self.ob = None          # re-opened after the registration
            unload("waste.sense", "waste.queue", "dev.outbox", "fmt.cbor", "fmt")
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
                unload("waste.link", "waste.cr", "waste.dp", "coap.endpoint", "coap.codec")
                if not cmds or rounds == _MAX_CMD_ROUNDS:
                    break
                rounds += 1
                # the outbox is empty here (the /dp session took it all): its
                # code goes first, and a `report` command re-opens it
                self.ob = None
                unload("dev.outbox")
                # the heap is at its cleanest now: keep one block for the next
                # session's endpoint buffer, which the command code's leftovers
                # (new settings, results, names) would otherwise split up;
                # link.window() lets go of it as it makes the endpoint
                # (only a help: a heap without room for it may still fit the
                # session)
                # (held in self.ep, which no session uses in between: one
                # attribute fewer for the cycle, waste/sense.py init())
                try:
                    self.ep = bytearray(_HOLE)
                except MemoryError:
                    pass
                try:
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
                    unload("waste.actions", "waste.setconf", "waste.conf", "dev.commands", "fmt.cbor", "fmt")
                if res is None:          # the answers held no command after all
                    break
            hal.wifi_off()
            t_on = hal.ticks_diff(hal.ticks_ms(), t_on)   # the radio time now
            # the back-off (waste/sense.py, loaded again now)
            from waste import sense
            sense.backoff(self, cmds is not None)
        else:
            t_on = 0
        if self.packed is not None:
            # the clock could not be set: queue with the RTC's time anyway
            # rather than lose the reading
            from waste.queue import queue
            queue(self, int(hal.time()), self.packed[2])
            queue = None
        from waste import sense   # again after a transmission
        return sense.finish(self, t_on)

    def sleep(self, ms):
        if self.hw is None:
            from waste.sense import open_hw   # loaded by finish() already
            self.hw = open_hw(self.cfg)
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
