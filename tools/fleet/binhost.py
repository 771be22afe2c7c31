"""Many bins in ONE unix MicroPython process, each wake the real firmware.

Run by tools/fleet/firmware.py (`eclor sim --mode firmware --bins-per-process N`):

    MICROPYPATH=<firmware tree> micropython -X heapsize=H binhost.py HOST.json

HOST.json: {"speed": x, "world_utc": UTC now in the simulated world,
"wake_speed": optional clock speed inside a wake (default: speed; 0: the
wake's simulated durations -- Wi-Fi association, pings, DS18B20 -- move its
clock without real sleeping, so a wake costs only its CPU time),
"devices": [{"ep", "dir" (absolute: the bin's flash dir, as a one-process
bin uses it: config.json, secrets.json, data/, .sim_rtc.json), "inputs"
(its ECLOR_SIM_FILE), "id" (machine id)}]}.

Each bin is due when the simulated world reaches the wake time its last
deep sleep saved in .sim_rtc.json (no file: power-on, due now). For a due
bin the host does what a fresh process running firmware/main.py would:
- os.chdir() into its directory (every firmware path is relative to the cwd);
- sets the bin's ECLOR_SIM_TIME (the world's UTC now), ECLOR_SIM_FILE (its
  inputs), ECLOR_SIM_ID and ECLOR_SIM_SPEED with os.putenv;
- forgets every module the previous wake loaded -- hal, hal.sim, app, dev.*,
  waste.*, coap.*, fmt.* -- and gc: their globals (hal.sim's clock, RTC,
  RTC memory, inputs, reset cause; app.cfg, dev.clock.source, the config
  schema...) start clean, as after a real boot. Importing hal.sim again is
  its reset: its module init reads the environment and the state file
  .sim_rtc.json in the cwd (the RTC, RTC memory and "deepsleep" cause the
  last sleep saved), exactly as in a new process;
- a new asyncio event loop, then `import app; app.main()` -- the real boot:
  config, boot counter, role, waste.app.run(): measure, maybe transmit on
  its own UDP socket (opened and closed inside the wake), deep sleep;
- hal.sim.on_deepsleep / on_reboot raise Slept / Rebooted (BaseException:
  app.main() catches Exception) after the state file is written: the wake
  returns here, the host chdirs back and goes on with the next bin.

Output: every line the firmware prints goes to stdout between
"@binhost begin EP" and "@binhost end EP RESULT" (RESULT: deepsleep MS |
reboot CAUSE | crash | returned), which the supervisor splits into each
bin's console.log and counts. One wake at a time: a wake is ~0.1-1 s of
CPU, a bin sleeps minutes, so one process serves many bins.
"""
import asyncio
import gc
import json
import os
import sys
import time

STATE = ".sim_rtc.json"
RESCAN_S = 1.0       # re-read the state files (a power-cycle removes one)
IDLE_MAX_S = 0.5     # longest real sleep between scans


class Slept(BaseException):
    pass


class Rebooted(BaseException):
    pass


def _slept(ms):
    raise Slept(ms)


def _rebooted(cause):
    raise Rebooted(cause)


def _now_s():
    try:
        return time.time_ns() / 1e9
    except AttributeError:
        return time.time()


class Host:
    def __init__(self, conf):
        self.speed = float(conf.get("speed") or 0)
        ws = conf.get("wake_speed")
        self.wake_speed = self.speed if ws is None else float(ws)
        self.utc0 = float(conf["world_utc"])
        self.real0 = _now_s()
        self.devices = conf["devices"]
        self.home = os.getcwd()
        self.base = set(sys.modules)        # the host's own modules (asyncio, json...)
        self.due = {}
        self.wakes = 0

    def world(self):
        return self.utc0 + (_now_s() - self.real0) * self.speed

    def scan(self):
        for d in self.devices:
            try:
                with open(d["dir"] + "/" + STATE) as f:
                    # an int: a small int is no heap object (a float is), so
                    # the host's lasting data do not fragment the wakes' heap
                    self.due[d["ep"]] = int(json.load(f)["utc"])
            except (OSError, ValueError, KeyError):
                self.due[d["ep"]] = 0       # power-on (or a half-written file): now

    def forget(self):
        for name in list(sys.modules):
            if name not in self.base:
                del sys.modules[name]
        gc.collect()

    def wake(self, d, reboot_cause=None):
        """One wake of bin d; returns the result text."""
        print("@binhost begin %s" % d["ep"])
        self.forget()
        os.chdir(d["dir"])
        res = "returned"
        try:
            os.putenv("ECLOR_SIM_TIME", "%.3f" % self.world())
            os.putenv("ECLOR_SIM_FILE", d.get("inputs") or "")
            os.putenv("ECLOR_SIM_ID", d.get("id") or "")
            os.putenv("ECLOR_SIM_SPEED", repr(self.wake_speed))
            import hal.sim
            hal.sim.on_deepsleep = _slept
            hal.sim.on_reboot = _rebooted
            asyncio.new_event_loop()
            import app
            app.main()
        except Slept as e:
            res = "deepsleep %d" % e.args[0]
        except Rebooted as e:
            res = "reboot %s" % e.args[0]
        except Exception as e:
            sys.print_exception(e)
            res = "crash"
        finally:
            os.chdir(self.home)
        self.wakes += 1
        print("@binhost end %s %s" % (d["ep"], res))
        return res

    def run(self):
        self.scan()
        last_scan = _now_s()
        while True:
            now = self.world()
            ran = False
            for d in self.devices:
                if self.due.get(d["ep"], 0) <= now:
                    res = self.wake(d)
                    ran = True
                    if res.startswith("deepsleep") or res.startswith("reboot"):
                        self.scan_one(d)
                    else:
                        # no state saved (crash, no config): retry later, like
                        # the supervisor's restart back-off
                        self.due[d["ep"]] = int(self.world() + 30 * max(1.0, self.speed))
                    now = self.world()
            if _now_s() - last_scan >= RESCAN_S:
                self.scan()
                last_scan = _now_s()
            if not ran:
                nxt = min(self.due.values()) if self.due else now + 60
                wait = (nxt - self.world()) / self.speed if self.speed else IDLE_MAX_S
                if wait > 0:
                    time.sleep(min(IDLE_MAX_S, wait))

    def scan_one(self, d):
        try:
            with open(d["dir"] + "/" + STATE) as f:
                self.due[d["ep"]] = int(json.load(f)["utc"])
        except (OSError, ValueError, KeyError):
            self.due[d["ep"]] = 0


def main(argv):
    with open(argv[1]) as f:
        conf = json.load(f)
    Host(conf).run()


if __name__ == "__main__":
    main(sys.argv)
