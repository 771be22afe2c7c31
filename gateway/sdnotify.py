"""Minimal sd_notify(3) for the gateway: READY, STOPPING, RELOADING, STATUS, WATCHDOG.

systemd's notification protocol is one AF_UNIX datagram per message, sent to
the path in $NOTIFY_SOCKET ("@name" means an abstract socket: leading NUL).
It is small enough to speak directly, which spares a dependency on
python-systemd / libsystemd on the gateway box.

Without NOTIFY_SOCKET (run from a shell, in tests, in a container without
systemd) every call is a silent no-op, so the daemon calls it unconditionally.

Usage in the daemon::

    from eclor.gateway import sdnotify
    n = sdnotify.Notifier()               # reads the environment once
    n.notify("READY=1")                   # after CoAP and HTTP are listening
    task = n.start_watchdog()             # asyncio task pinging at half WatchdogSec
    n.notify("RELOADING=1\\nMONOTONIC_USEC=%d" % sdnotify.monotonic_usec())  # on SIGHUP
    n.notify("READY=1")                   # reload done
    n.notify("STOPPING=1")                # on SIGTERM

The watchdog pings come from the event loop itself: if the loop is blocked
(the thing WatchdogSec is meant to catch) the pings stop and systemd restarts
the service.
"""
import asyncio
import os
import socket
import time


def monotonic_usec():
    """CLOCK_MONOTONIC in µs, as systemd wants with RELOADING=1 (Type=notify-reload)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _address(path):
    if path.startswith("@"):
        return "\0" + path[1:]
    return path


class Notifier:
    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address and not (self.address.startswith("/") or self.address.startswith("@")):
            # vsock:/other forms are not used for a local daemon; treat as absent.
            self.address = None
        self.watchdog_usec = self._watchdog(env)
        self._sock = None

    @staticmethod
    def _watchdog(env):
        usec = env.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = env.get("WATCHDOG_PID")
        # WATCHDOG_PID, when set, names the process that must ping; a child
        # we started must not think the watchdog is meant for it.
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            usec = int(usec)
        except ValueError:
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self):
        return self.address is not None

    def watchdog_interval(self):
        """Seconds between WATCHDOG=1 pings (half the timeout), or None if not asked for."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def notify(self, state):
        """Send one notification (str, several lines allowed). Returns True if sent.

        Never raises: a missing or restarted systemd must not take the daemon down.
        """
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode() if isinstance(state, str) else state,
                              _address(self.address))
            return True
        except OSError:
            return False

    def status(self, text):
        return self.notify("STATUS=" + text.replace("\n", " "))

    async def watchdog_loop(self):
        interval = self.watchdog_interval()
        if interval is None or self.address is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def start_watchdog(self):
        """Start the ping task on the running loop; None if no watchdog was requested."""
        if self.watchdog_interval() is None or self.address is None:
            return None
        return asyncio.get_running_loop().create_task(self.watchdog_loop())

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_default = None


def notify(state):
    """Module-level shortcut on a Notifier built from os.environ on first use."""
    global _default
    if _default is None:
        _default = Notifier()
    return _default.notify(state)


def watchdog_interval():
    global _default
    if _default is None:
        _default = Notifier()
    return _default.watchdog_interval()
