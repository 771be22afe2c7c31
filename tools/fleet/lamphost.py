"""Many lamps in ONE unix MicroPython process, each the real firmware.

Run by tools/fleet/firmware.py (`eclor sim --mode firmware --lamps-per-process N`):

    MICROPYPATH=<firmware tree> micropython -X heapsize=H lamphost.py HOST.json

HOST.json: {"speed": x, "world_utc": UTC now in the simulated world,
"devices": [{"ep", "dir" (absolute: the lamp's flash dir), "inputs" (its
ECLOR_SIM_FILE), "id" (machine id)}]}.

A lamp is always on: its life is asyncio tasks (the CoAP endpoint, the
control loop, reports, registration upkeep) that never end. The firmware
keeps its state in module globals (hal.sim's clock, RTC and inputs, app.cfg,
lamp.app.current, dev.clock's time source...) and names its files relative
to the cwd, as on a board. So each lamp here gets what a process would give
it, and the host switches between them at every step of their tasks:

- its own copy of every firmware module: the host boots lamp k with the
  firmware modules of the others out of sys.modules and its ECLOR_SIM_*
  set (os.putenv), so `import hal.sim` / `import app` run the module inits
  for k alone; the functions of a copy keep that copy's globals;
- its own context: every task a lamp creates (asyncio.create_task, also
  inside wait_for) runs wrapped in a generator that, around each step of the
  task, chdirs into the lamp's flash dir and puts the lamp's modules in
  sys.modules (so a module the firmware imports on use is the lamp's own,
  or becomes it) -- and takes them out again after the step;
- its own socket: the firmware's endpoint opens it, as on a board.

Boot: the real `app.main()`: config, boot counter, watchdog, role, until it
calls asyncio.run(...) on the role's coroutine; the host's asyncio.run
stand-in takes that coroutine and starts it as the lamp's first task instead
of running a loop of its own (there is one loop, the host's). A reboot
(hal.sim.reboot(), a watchdog reset: the on_reboot hook) or a crash of the
role (what app.main would log and reboot after) cancels every task of the
lamp, drops its modules and boots it again: a fresh copy, like a new
process. The RTC state file is in the lamp's dir as usual.

Output: each line the firmware prints goes to stdout prefixed by
"@lamphost EP " (the supervisor splits them into each lamp's console.log);
"@lamphost EP @start", "@lamphost EP @reboot CAUSE", "@lamphost EP @crash"
count its lives.
"""
import asyncio
import builtins
import gc
import json
import os
import sys
import time

_core = asyncio.core if hasattr(asyncio, "core") else __import__("asyncio.core").core
_create_task = _core.create_task
_run = asyncio.run
_print = builtins.print


class Rebooted(BaseException):
    pass


class Started(BaseException):
    pass


class Lamp:
    def __init__(self, d):
        self.ep = d["ep"]
        self.dir = d["dir"]
        self.inputs = d.get("inputs") or ""
        self.id = d.get("id") or ""
        self.mods = {}          # its firmware modules while it is not running
        self.tasks = []
        self.lives = 0
        self.restart = None     # cause when it must boot again


class Host:
    def __init__(self, conf):
        self.speed = float(conf.get("speed") or 0)
        self.utc0 = float(conf["world_utc"])
        self.real0 = time.ticks_ms()
        self.lamps = [Lamp(d) for d in conf["devices"]]
        self.home = os.getcwd()
        self.base = set(sys.modules)        # the host's own modules (asyncio, json...)
        self.cur = None                     # the lamp whose step runs
        self.wake = asyncio.Event()

    def world(self):
        return self.utc0 + time.ticks_diff(time.ticks_ms(), self.real0) / 1000 * self.speed

    # -- switching between lamps ------------------------------------------
    def enter(self, lamp):
        if self.cur is lamp:
            return None
        prev = self.cur
        if prev is not None:
            self.leave(prev)
        os.chdir(lamp.dir)
        sys.modules.update(lamp.mods)
        if lamp.id:
            os.putenv("ECLOR_SIM_ID", lamp.id)
        self.cur = lamp
        return prev

    def leave(self, lamp):
        mods = lamp.mods
        mods.clear()
        base = self.base
        for name in list(sys.modules):
            if name not in base:
                mods[name] = sys.modules.pop(name)
        os.chdir(self.home)
        self.cur = None

    def step(self, lamp, coro):
        """A generator running coro one step at a time inside lamp's context."""
        send, exc = None, None
        while True:
            prev = self.enter(lamp)
            try:
                y = coro.send(send) if exc is None else coro.throw(exc)
            except StopIteration as e:
                return e.value
            except Rebooted as e:
                self.fail(lamp, "reboot " + e.args[0])
                return None
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if coro is lamp.main:
                    # what app.main does with a role that dies: log it, reboot
                    sys.print_exception(e)
                    try:
                        from dev import log
                        log.exception("role crashed", e)
                    except Exception:
                        pass
                    self.fail(lamp, "crash")
                    return None
                raise
            finally:
                self.leave(lamp)
                if prev is not None:
                    self.enter(prev)
            try:
                send, exc = (yield y), None
            except BaseException as e:     # cancel, or an exception thrown in by asyncio
                send, exc = None, e

    def create_task(self, coro):
        lamp = self.cur
        if lamp is None:
            return _create_task(coro)
        t = _create_task(self.step(lamp, coro))
        lamp.tasks.append(t)
        if len(lamp.tasks) > 32:            # finished tasks (e.g. one per notification)
            lamp.tasks = [x for x in lamp.tasks if not x.done()]
        return t

    def fail(self, lamp, why):
        if lamp.restart is None:
            lamp.restart = why
            self.wake.set()

    # -- lives ------------------------------------------------------------
    def boot(self, lamp):
        lamp.lives += 1
        lamp.restart = None
        lamp.mods = {}
        lamp.main = None
        self.say(lamp, "@start")
        os.putenv("ECLOR_SIM_TIME", "%.3f" % self.world())
        os.putenv("ECLOR_SIM_FILE", lamp.inputs)
        os.putenv("ECLOR_SIM_SPEED", repr(self.speed))
        self.enter(lamp)
        try:
            import hal.sim

            def rebooted(cause):
                raise Rebooted(cause)
            hal.sim.on_reboot = rebooted
            import app
            app.main()
            self.say(lamp, "@crash app.main returned")      # no role coroutine (no config?)
            lamp.restart = "returned"
        except Started as s:
            lamp.main = s.args[0]
            t = _create_task(self.step(lamp, lamp.main))
            lamp.tasks.append(t)
        except Rebooted as e:
            lamp.restart = "reboot " + e.args[0]
        finally:
            self.leave(lamp)

    def kill(self, lamp):
        # its socket goes as a process's would: close the endpoint in its context
        self.enter(lamp)
        try:
            cur = getattr(sys.modules.get("app"), "current", None)
            ep = getattr(cur, "ep", None)
            if ep is not None:
                ep.close()
        except Exception as e:
            sys.print_exception(e)
        finally:
            self.leave(lamp)
        for t in lamp.tasks:
            if not t.done():
                t.cancel()
        lamp.tasks = []
        lamp.mods = {}
        gc.collect()

    def say(self, lamp, text):
        _print("@lamphost %s %s" % (lamp.ep, text))

    def commands(self, poller):
        """Lines from the supervisor on stdin: "reboot EP" (a power cycle)."""
        while poller.poll(0):
            line = sys.stdin.readline()
            if not line:
                poller.unregister(sys.stdin)
                return
            what, _, ep = line.strip().partition(" ")
            for lamp in self.lamps:
                if lamp.ep == ep and what == "reboot":
                    self.fail(lamp, "reboot power")

    async def supervise(self):
        import select
        poller = select.poll()
        poller.register(sys.stdin, select.POLLIN)
        while True:
            try:
                await asyncio.wait_for_ms(self.wake.wait(), 200)
            except asyncio.TimeoutError:
                self.commands(poller)
                continue
            self.wake.clear()
            for lamp in self.lamps:
                if lamp.restart is not None:
                    why = lamp.restart
                    self.say(lamp, "@" + why)
                    self.kill(lamp)
                    await asyncio.sleep_ms(0)      # let the cancelled tasks unwind
                    if why == "crash" or why == "returned":
                        await asyncio.sleep_ms(int(5000 / max(1.0, self.speed)))
                    self.boot(lamp)

    async def main(self):
        for lamp in self.lamps:
            self.boot(lamp)
            await asyncio.sleep_ms(0)
        await self.supervise()


def _fake_run(coro):
    raise Started(coro)


def _prefixed_print(host):
    def p(*args, **kw):
        lamp = host.cur
        if lamp is None or kw.get("file") is not None:
            return _print(*args, **kw)
        _print("@lamphost %s" % lamp.ep, *args, **kw)
    return p


def main(argv):
    with open(argv[1]) as f:
        conf = json.load(f)
    host = Host(conf)
    for name in ("Event", "wait_for_ms", "gather", "Lock"):   # asyncio's parts loaded on use: the host's
        getattr(asyncio, name, None)
    host.base = set(sys.modules)
    _core.create_task = host.create_task
    asyncio.create_task = host.create_task
    builtins.print = _prefixed_print(host)
    asyncio.run = _fake_run              # app.main's asyncio.run: becomes the lamp's first task
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_create_task(host.main()))


if __name__ == "__main__":
    main(sys.argv)
