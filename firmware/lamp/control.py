"""The lamp controller: schedule -> dimmer -> relay, with metering, fault
detection, energy counters and reports. No networking here: lamp/app.py
runs step() in its loop and sends what lands in the outbox, so the light
never depends on the gateway, and tests drive step() with a simulated clock.

Each step() (about once a second):
1. the level: while the time is unknown, the fail-safe -- the default level
   (lamp "default_level", 100 %), or, when the board has a light sensor,
   default level when dark (< lux_on) and off when bright (> lux_off),
   with hysteresis; an operator override still applies. Once the time is
   known: schedule.evaluate(calendar, UTC, overrides, presence). Safe mode
   ignores the presence input (an optional feature).
2. the dimmer fades toward it; relay switch-on/off feed the energy counters;
3. the meter feeds energy (Wh, hours) and fault detection; events go to
   the outbox at once, in their own small SenML pack;
4. every report_s (x 0.8..1.2, random, so a district does not report in the
   same second; the first one at a random point of the first period) a
   SenML report is queued.

Persistence: the calendar (data/calendar.cbor, lamp/calcheck.py) and the
overrides (data/override.json, lamp/admin.py) are written only when the operator changes
them; energy by its own policy (lamp/energy.py); reports by dev/outbox.

Names: every attribute, method, argument and global name, and every string of
<= 10 characters, is a qstr interned for good when the .mpy loads (docs/lamp.md
"Qstrs"), so constants are private const()s and the state's attribute names
reuse names the firmware interns anyway (keys, methods of other objects).
"""
import random
import hal
from micropython import const
from lamp import schedule, use

# dev.clock's "time known" (its _MIN_VALID, 2024-01-01): read here from the
# RTC directly, each step, rather than keeping dev.clock on the heap for it
_MIN_VALID = const(1704067200)

# Controller.mono, the step's state in one list (lamp/setup.py): five small
# values as attributes made 22, over the 17 of an instance dict's smaller
# table (416 -> 320 B with the object, measured on the 64-bit host)
_S = const(0)  # monotonic seconds
_MS = const(1)  # ms not yet counted in _S
_TK = const(2)  # ticks_ms of the last step
_NEXT = const(3)  # the next report's time (UTC s), None before the first
_PRES = const(4)  # the last accepted motion (RTC s), None
_RELAY = const(5)  # the dimmer's relay as of the previous step
_FADING = const(6)  # the dimmer's fade as of the previous step
_DARK = const(7)  # the fail-safe's light sensor state (hysteresis)

# the Controller's methods loaded on use (see __getattr__): module -> names
_ON_USE = const((("state", ("readings", "now", "pack", "report", "push", "on_event")),
                 ("admin", ("set_override", "resume", "selftest", "status", "level", "net_ok", "log", "reboot")),
                 ("calcheck", ("set_calendar", "calendar_cbor")),
                 ("settings", ("set_type", "set_config", "lamp_type"))))


class Controller:
    def __init__(self, cfg, safe=False, hw=None, outbox=None):
        use("setup", "controller", self, cfg, safe, hw, outbox)  # one-shot: lamp/setup.py

    # ---- the loop body -------------------------------------------------------

    def step(self, report=True):
        # report False: a step inside an operator command (lamp/admin.py,
        # lamp/calcheck.py) applies the new level at once but leaves a due
        # report to the loop's next step (one tick later), so that the
        # report's code (lamp/state.py, fmt.senml) is not loaded on top of
        # the command's (dev.commands, the calendar...): the night's peak
        m = self.mono  # the step's state: see lamp/setup.py and the _S.. indices
        now_ms = hal.ticks_ms()
        dt = hal.ticks_diff(now_ms, m[_TK])
        m[_TK] = now_ms
        ms = m[_MS] + dt
        m[_S] += ms // 1000  # int seconds: a float32 would stall after 194 days
        m[_MS] = ms % 1000
        mono = m[_S]
        rtc = hal.time()
        utc = rtc if rtc >= _MIN_VALID else None  # dev.clock.now()
        hw = self.hw
        if not self.safe and hw.presence():
            gap = self.cal[4][2] if self.cal[4] else 0
            if m[_PRES] is None or rtc - m[_PRES] >= gap:
                m[_PRES] = rtc  # the last accepted motion
        if utc is None:
            lvl = schedule.override(self.overrides, rtc)
            src = "override"
            if lvl is None:
                lvl = self.failsafe()
                src = "failsafe"
        else:
            c = self.cfg
            lvl, src = schedule.evaluate(self.cal, int(utc), self.overrides, m[_PRES],
                                         c.get("lat", 49.47), c.get("lon", 5.93),
                                         self.p["tz_std"], self.p["dst"])
        changed = src != self.src
        self.src = src
        d = self.dim
        if lvl != d.target:
            d.set(lvl)
            changed = True
        d.step(dt)
        if d.relay != m[_RELAY]:  # the relay as of the previous step
            m[_RELAY] = d.relay
            self.energy.switched(d.relay, mono)
            changed = True
        if d.fading() != m[_FADING]:
            m[_FADING] = not m[_FADING]
            changed = True
        self.power = pw = hw.power()
        self.voltage = hw.voltage()
        self.energy.tick(mono, dt, pw, d.relay)
        self.faults.check(mono, d.relay, d.level, m[_FADING], d.frac(), pw, self.voltage,
                          hw.supply(), hw.relay_fb(), hw.current())
        if "supplyLoss" in self.faults.active and self.energy._dirty:
            self.energy.save(mono)  # last gasp
        if utc is not None and report:
            # int arithmetic: a float32 of today's UTC has a 128 s step
            rs = self.cfg.get("report_s", 900)
            if m[_NEXT] is None:  # the next report's time
                m[_NEXT] = int(utc) + int(rs * random.random())
            elif utc >= m[_NEXT]:
                m[_NEXT] = int(utc) + int(rs * (0.8 + 0.4 * random.random()))
                self.report()
        if changed and self.on_change:
            self.on_change()

    def failsafe(self):
        lux = self.hw.light()
        if lux is not None:
            m = self.mono
            if lux < self.p["lux_on"]:
                m[_DARK] = True
            elif lux > self.p["lux_off"]:
                m[_DARK] = False
            if not m[_DARK]:
                return 0
        return self.p["default_level"]

    # readings(), now(), pack(r), report(), push(r), on_event(name, active):
    # lamp/state.py; status(), net_ok(), level(x) (eclor.level), log(n),
    # set_override(level, duration), resume(): lamp/admin.py; see __getattr__

    def __getattr__(self, name):
        # The reports, events and operator actions are lamp/state.py's,
        # lamp/admin.py's, lamp/calcheck.py's and lamp/settings.py's, loaded
        # for the call (lamp.use): their code (SenML, validation,
        # persistence, self-test, the shell's status) is not on the heap
        # between a report, an event or a command and the next.
        for m, names in _ON_USE:
            if name in names:
                def call(*a, **k):
                    r = use(m, name, self, *a, **k)
                    if r is not None and r is self.on_change:
                        # lamp/state.py's report(), push(), on_event(): the
                        # observe notification now, with that module, fmt.senml
                        # and the pack off the heap (use() dropped them)
                        r()
                        r = None
                    return r
                return call
        raise AttributeError(name)
