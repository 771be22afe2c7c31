"""RFC 9176 registration client (the subset of the ECLOR wire contract)."""
#
#     reg = Registration(ep, gw, "lamp-0001", "eclor.lamp", lt=3600)
#     reg.start()                   # background task: register, update, retry
#     ... or, in a wake window:  ok = await reg.ensure()
#
# * register (the exchange itself: coap/register.py):
#   POST /rd?ep=NAME&lt=LT&et=ET[&b=UQ], link-format payload (ct 40)
#   of the device's resources (`ep.links()` of a coap.observe Server with
#   resources, unless `links` is given);
#   2.01 Created with Location-Path -> `reg.location` ("rd/ID").
# * update: POST /<location> with no payload at 3/4 of the lifetime (at least
#   UPDATE_MARGIN_S before it runs out) -> 2.04; 4.04 means the gateway forgot
#   us: register again at once (also on any other 4.xx; 5.xx backs off).
#   `registered` stays True after a failed update until the lifetime ends.
# * while the gateway is unreachable: exponential back-off from BACKOFF_MIN_MS
#   to BACKOFF_MAX_MS with random jitter (50-100 %), so a fleet that lost its
#   gateway does not come back in lock-step.
# * a MemoryError on our side is retried after 200 ms, without back-off.
# * `ensure()` never raises; `run()`/`start()` keep it going in their own task
#   so the application is never blocked by an absent gateway.
# * `kick()` forces an update at the next chance (e.g. after Wi-Fi came back
#   with a new address: the gateway learns the new address and NAT binding).
import asyncio
import random
import sys
import time

from micropython import const

_DELETE = const(4)
_DELETED = const(66)

BACKOFF_MIN_MS = 5000  # a module global so that tests can shorten it
_BACKOFF_MAX_MS = const(900000)
_UPDATE_MARGIN_S = const(30)
_OOM_RETRY_MS = const(200)  # after a MemoryError on our side


class Registration:
    def __init__(self, ep, gw, name, et, lt=3600, links=None, queue=False):
        self.ep = ep
        self.gw = gw
        self.name = name
        self.et = et
        self.lt = lt
        self.links = links
        self.queue = queue
        self.location = None
        self.registered = False
        self.fails = 0
        self.last_code = None
        self._busy = False
        self._due = time.ticks_ms()  # next register/update
        self._expires = self._due  # when the gateway drops us without update

    def kick(self):
        self._due = time.ticks_ms()

    def due_ms(self):
        """Milliseconds until ensure() has work to do (0: now)."""
        return max(0, time.ticks_diff(self._due, time.ticks_ms()))

    async def ensure(self):
        """Register or update if due.  Returns True when registered."""
        now = time.ticks_ms()
        if self.registered and time.ticks_diff(self._expires, now) <= 0:
            self.registered = False
        if time.ticks_diff(self._due, now) > 0 or self._busy:
            return self.registered  # not due, or another task is at it
        self._busy = True
        try:
            # the exchange's code (coap/register.py) is loaded for it and
            # dropped after: it runs once in 3/4 of a lifetime, and resident
            # it cost the bench's "all" run 0.5 KB of live heap
            from coap.register import register
            ok, self.location, self.last_code = await register(
                self.ep, self.gw, self.location, self.name, self.et, self.lt, self.queue, self.links)
        except MemoryError:  # no heap for the exchange's code or frame
            ok, self.last_code = False, "MemoryError"
        finally:
            self._busy = False
            register = None
            if sys.modules.pop("coap.register", None):
                try:
                    delattr(sys.modules["coap"], "register")
                except (AttributeError, KeyError):
                    pass
        if not self.location:
            self.registered = False  # forgotten (a 4.xx to the update), or never
        oom = self.last_code == "MemoryError"
        now = time.ticks_ms()
        if ok:
            self.fails = 0
            self.registered = True
            self._expires = time.ticks_add(now, self.lt * 1000)
            self._due = time.ticks_add(now, min(self.lt * 750, max(self.lt - _UPDATE_MARGIN_S, 1) * 1000))
        elif oom:
            # no heap for the request here: not the gateway's fault, so no
            # back-off from it; the heap moves on, try again soon
            self._due = time.ticks_add(now, _OOM_RETRY_MS)
        else:
            self.fails += 1
            b = min(_BACKOFF_MAX_MS, BACKOFF_MIN_MS << min(self.fails - 1, 12))
            self._due = time.ticks_add(now, b // 2 + random.getrandbits(16) * (b // 2) // 65536)
        return self.registered

    async def run(self):
        """ensure() forever, sleeping until the next one is due."""
        while True:
            await self.ensure()
            await asyncio.sleep_ms(min(self.due_ms(), 5000) or 10)

    def start(self):
        return asyncio.create_task(self.run())

    async def deregister(self):
        """DELETE the registration (best effort).  Returns True on 2.02."""
        loc, self.location, self.registered = self.location, None, False
        if not loc:
            return False
        try:
            r = await self.ep.request(_DELETE, self.gw, loc)
            self.last_code = r.code
            return r.code == _DELETED
        except Exception:
            return False
