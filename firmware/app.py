"""Boot: load the config, count boots, pick the role, run it, never die.

main.py does `import app; app.main()`. main():
1. loads config.json (dev.config: validated, falls back to config.json.bak);
   without a valid config it logs why and returns to the REPL, so a
   technician can provision the board (no reboot loop);
2. counts the boot in data/boots (consecutive boots without a healthy
   minute). A wake from deep sleep is not a new boot: the count is left as
   is, without a flash write. More than SAFE_AFTER (3) unhealthy boots in a
   row -> safe mode: the role runs with safe=True (its bare function: the
   lamp its schedule and CoAP only; reports carry mode "safe");
3. enables the watchdog (config "wdt_ms", default 60 s; 0 = off): the role
   must call hal.wdt_feed() from its main loop;
4. imports the role module by config "role": "lamp" -> lamp.app,
   "bin" -> waste.app, and calls `run(cfg, safe)`. run may be a plain
   function or return a coroutine (then app runs it with asyncio.run and
   marks the boot healthy after HEALTHY_MS of uptime while it still runs).
   A plain run (the bin's wake) calls app.mark_healthy() itself once its
   cycle went well, before it deep-sleeps;
5. an exception escaping the role is written to the persisted log (dev.log)
   and the board reboots after a delay -- never a dead loop. The delay is
   RESTART_DELAY_MS doubled for each unhealthy boot in a row, up to
   MAX_RESTART_DELAY_MS (10 min), so a board that cannot start does not wear its
   flash (boot counter + log line per boot) or flood the gateway, and a
   technician has time to press Ctrl-C. A KeyboardInterrupt returns to the REPL.

Role module contract (lamp/app.py, waste/app.py):
  run(cfg, safe) -> None or coroutine    the firmware's life
  make(cfg, safe=False) -> role object   built without starting it (eclor shell)
  The role sets `app.current = obj` when it runs. The object may provide
  status() -> dict, selftest() -> dict, level(x) (lamp), measure() (bin).
"""
import hal
from micropython import const

# the module's dict holds at most 12 entries (a 12-slot table; a 13th grows it
# to 17 slots, +96 B resident in both roles): const is folded by the compiler
# and not needed at run time, dev.store is imported where it is used (it is
# resident anyway), no global for the reset cause (hal.reset_cause())
del const

# Memory: the boot steps (dev/boot.py, with the role -> module table), dev.log
# and the config schema are loaded on use and dropped after (dev.forget): a
# boot logs one line, a crash one more; none of them needs its code resident
# while the role runs (the role imports dev.log itself if it logs). Constants are const() where
# nothing outside reads them.
HEALTHY_MS = 60000  # a global: tests shorten it
_RESTART_DELAY_MS = const(5000)
_MAX_RESTART_DELAY_MS = const(600000)

current = None  # the running role object (set by the role)
cfg = None
safe = False
boots = 0


def _log(level, msg, e=None):
    """One line in the persisted log (dev.log, loaded for it unless the role
    holds it already, then forgotten again)."""
    import sys
    held = "dev.log" in sys.modules
    from dev import log
    if e is not None:
        log.exception(msg, e)
    else:
        log.event(msg, level)
    if not held:
        from dev import forget
        forget("dev.log")


def mark_healthy():
    """The role runs well: clear the boot counter (one write, only if set). Never raises."""
    global boots
    from dev import store
    try:
        # the file, not `boots`: a counter the boot could not write stays
        # unwritten (and unlogged) here too
        if store.read("data/boots") not in (None, b"", b"0"):
            store.write("data/boots", "0")
    except OSError as e:
        _log("E", "boot counter not cleared: %r" % e)
    boots = 0


async def _supervise(coro):
    # coro: the role's coroutine, run with the healthy mark as a task beside
    # it; None: that task (one function for both: no nested coroutine)
    import asyncio
    if coro is None:
        await asyncio.sleep_ms(HEALTHY_MS)
        mark_healthy()
        _log("I", "healthy")
        return
    h = asyncio.create_task(_supervise(None))
    try:
        await coro
    finally:
        h.cancel()


def main():
    global cfg
    cfg = None
    try:
        # the boot steps (dev/boot.py) are one-shot code: loaded, run and
        # forgotten before the role starts. The imports' garbage (the
        # modules' top-level code) is collected first, so that the boot's
        # code and the config load low in the heap
        import gc
        gc.collect()
        from dev import boot
        m = boot.start()
        boot = None
        from dev import forget
        forget("dev.boot")
        if m is None:
            return  # no valid config: stay at the REPL
        # the boot's code is garbage now: collected before the role is
        # imported, so that the role's modules (resident while it runs) fill
        # the heap from the bottom instead of landing above that garbage and
        # leaving a hole below them once it is collected (fragmentation)
        gc.collect()
        # m: the role's module name (dev.boot.ROLES); a non-empty fromlist
        # makes __import__ return the module itself, not its package
        r = __import__(m, None, None, ("run",)).run(cfg, safe)
        if r is not None and hasattr(r, "send"):
            import asyncio
            asyncio.run(_supervise(r))
    except KeyboardInterrupt:  # Ctrl-C from the technician: back to the REPL
        raise
    except Exception as e:
        _log("E", "role crashed" if cfg is not None else "boot failed", e)
        # the back-off: RESTART_DELAY_MS doubled for each unhealthy boot in a
        # row, at most MAX_RESTART_DELAY_MS (inline: one function less resident)
        hal.sleep_ms(min(_RESTART_DELAY_MS << min(max(boots - 1, 0), 10), _MAX_RESTART_DELAY_MS))
        hal.reboot()

