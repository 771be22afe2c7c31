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

Persistence: the calendar (data/calendar.cbor, lamp/admin.py) and the
overrides (data/override.json) are written only when the operator changes
them; energy by its own policy (lamp/energy.py); reports by dev/outbox.

Names: every attribute, method, argument and global name, and every string of
<= 10 characters, is a qstr interned for good when the .mpy loads (docs/lamp.md
"Qstrs"), so constants are private const()s and the state's attribute names
reuse names the firmware interns anyway (keys, methods of other objects).
"""
import random
import hal
from dev import store, log, clock
from fmt import senml
from micropython import const
from lamp import schedule, use

_OVR = const("data/override.json")  # read at boot by lamp/setup.py
# the operator actions of lamp/admin.py, lamp/calcheck.py and lamp/settings.py
# (see __getattr__)
_ADMIN = const(("selftest", "status", "level", "net_ok"))
_CALENDAR = const(("set_calendar", "calendar_cbor"))
_SETTINGS = const(("set_type", "set_config", "lamp_type"))


class Controller:
    def __init__(self, cfg, safe=False, hw=None, outbox=None):
        use("setup", "controller", self, cfg, safe, hw, outbox)  # one-shot: lamp/setup.py

    # ---- the loop body -------------------------------------------------------

    def step(self):
        now_ms = hal.ticks_ms()
        dt = hal.ticks_diff(now_ms, self._t)
        self._t = now_ms
        ms = self._mono_ms + dt
        self.mono += ms // 1000  # int seconds: a float32 would stall after 194 days
        self._mono_ms = ms % 1000
        mono = self.mono
        rtc = hal.time()
        utc = clock.now()
        hw = self.hw
        if not self.safe and hw.presence():
            gap = self.cal[4][2] if self.cal[4] else 0
            if self.presence is None or rtc - self.presence >= gap:
                self.presence = rtc  # the last accepted motion
        if utc is None:
            lvl = schedule.override(self.overrides, rtc)
            src = "override"
            if lvl is None:
                lvl = self.failsafe()
                src = "failsafe"
        else:
            c = self.cfg
            lvl, src = schedule.evaluate(self.cal, int(utc), self.overrides, self.presence,
                                         c.get("lat", 49.47), c.get("lon", 5.93),
                                         self.p["tz_std"], self.p["dst"])
        changed = src != self.src
        self.src = src
        d = self.dim
        if lvl != d.target:
            d.set(lvl)
            changed = True
        d.step(dt)
        if d.relay != self.relay:  # the relay as of the previous step
            self.relay = d.relay
            self.energy.switched(d.relay, mono)
            changed = True
        if d.fading() != self.fading:
            self.fading = not self.fading
            changed = True
        self.power = pw = hw.power()
        self.voltage = hw.voltage()
        self.energy.tick(mono, dt, pw, d.relay)
        self.faults.check(mono, d.relay, d.level, self.fading, d.frac(), pw, self.voltage,
                          hw.supply(), hw.relay_fb(), self.current and self.current())
        if "supplyLoss" in self.faults.active and self.energy._dirty:
            self.energy.save(mono)  # last gasp
        if utc is not None:
            # int arithmetic: a float32 of today's UTC has a 128 s step
            rs = self.cfg.get("report_s", 900)
            if self.next is None:  # the next report's time
                self.next = int(utc) + int(rs * random.random())
            elif utc >= self.next:
                self.next = int(utc) + int(rs * (0.8 + 0.4 * random.random()))
                self.report()
        if changed and self.on_change:
            self.on_change()

    def failsafe(self):
        lux = self.hw.light()
        if lux is not None:
            if lux < self.p["lux_on"]:
                self.dark = True
            elif lux > self.p["lux_off"]:
                self.dark = False
            if not self.dark:
                return 0
        return self.p["default_level"]

    # ---- reports and events --------------------------------------------------

    def readings(self):
        d = self.dim
        e = self.energy
        r = [("level", "%", int(d.level + 0.5), None), ("target", "%", d.target, None),
             ("relay", None, d.relay, None), ("energy", "Wh", round(e.wh, 2), None),
             ("hours", "s", int(e.on_s), None), ("switch_on", None, e.switch_on, None),
             ("mode", None, "safe" if self.safe else "normal", None)]
        if self.power is not None:
            r.append(("power", "W", round(self.power, 1), None))
        if self.voltage is not None:
            r.append(("voltage", "V", round(self.voltage, 1), None))
        if self.outbox.dropped:
            r.append(("dropped", None, self.outbox.dropped, None))
        return r

    def now(self):
        """The UTC time as an int, None while unknown."""
        t = clock.now()
        return int(t) if t is not None else None

    def pack(self, readings):
        return senml.encode(readings, self.bn, self.now(), self.w)

    def report(self):
        """Queue a report now (also the `report` command)."""
        self.push(self.readings())

    def push(self, readings):
        try:
            self.outbox.push(self.pack(readings))
        except OSError as e:
            log.error("outbox push: %s" % e)
        if self.on_change:
            self.on_change()

    def on_event(self, name, active):
        # lamp/faults.py's callback: a fault raised or cleared
        log.event("%s %s" % ("RAISED" if active else "cleared", name), "W" if active else "I")
        self.push([("ev:" + name, None, active, None)])

    # ---- role object for app.py / eclor.py -------------------------------------

    # status(), net_ok(), level(x) (eclor.level): lamp/admin.py, see __getattr__

    def log(self, n=20):
        return log.recent(n)

    # ---- operator actions (commands, resources, shell) -------------------------

    def set_override(self, level, duration=0):
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
            raise ValueError("level must be an integer 0..100")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
            raise ValueError("duration must be seconds >= 0")
        t = int(hal.time())
        self.overrides = [[level, t, t + duration if duration else 0]]
        store.save_json(_OVR, self.overrides)
        log.event("override %d%% for %d s" % (level, duration) if duration else "override %d%% until resume" % level)
        self.step()

    def resume(self):
        self.overrides = []
        store.save_json(_OVR, self.overrides)
        self.step()

    def __getattr__(self, name):
        # The other operator actions are lamp/admin.py's, lamp/calcheck.py's
        # and lamp/settings.py's, loaded for the call (lamp.use):
        # their code (validation, persistence, self-test, the shell's
        # status) is not on the heap of a lamp that nobody talks to.
        if name in _ADMIN:
            return lambda *a, **k: use("admin", name, self, *a, **k)
        if name in _CALENDAR:
            return lambda *a: use("calcheck", name, self, *a)
        if name in _SETTINGS:
            return lambda *a: use("settings", name, self, *a)
        raise AttributeError(name)
