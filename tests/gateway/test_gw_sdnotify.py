"""sd_notify against a real AF_UNIX datagram socket, path and abstract names."""
import asyncio
import os
import socket
import uuid

import pytest

from eclor.gateway import sdnotify


def _listener(tmp_path, abstract):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "eclor-test-" + uuid.uuid4().hex
        s.bind("\0" + name)
        env_value = "@" + name
    else:
        path = str(tmp_path / "notify.sock")
        s.bind(path)
        env_value = path
    s.settimeout(2)
    return s, env_value


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_reaches_socket(tmp_path, abstract):
    s, addr = _listener(tmp_path, abstract)
    try:
        n = sdnotify.Notifier({"NOTIFY_SOCKET": addr})
        assert n.enabled
        assert n.notify("READY=1\nSTATUS=listening") is True
        assert s.recv(4096) == b"READY=1\nSTATUS=listening"
        assert n.status("two\nlines")
        assert s.recv(4096) == b"STATUS=two lines"
        n.close()
    finally:
        s.close()


def test_noop_without_socket():
    n = sdnotify.Notifier({})
    assert not n.enabled
    assert n.notify("READY=1") is False
    assert n.watchdog_interval() is None


def test_no_watchdog_task_without_socket():
    async def main():
        return sdnotify.Notifier({"WATCHDOG_USEC": "1000000"}).start_watchdog()
    assert asyncio.run(main()) is None


def test_gone_socket_does_not_raise(tmp_path):
    n = sdnotify.Notifier({"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})
    assert n.notify("READY=1") is False  # ENOENT swallowed, daemon keeps running


def test_watchdog_interval_and_pid():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000"}
    assert sdnotify.Notifier(env).watchdog_interval() == 1.5
    env["WATCHDOG_PID"] = str(os.getpid())
    assert sdnotify.Notifier(env).watchdog_interval() == 1.5
    env["WATCHDOG_PID"] = str(os.getpid() + 1)  # meant for another process
    assert sdnotify.Notifier(env).watchdog_interval() is None
    assert sdnotify.Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval() is None
    assert sdnotify.Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None


def test_watchdog_pings(tmp_path):
    s, addr = _listener(tmp_path, abstract=True)
    s.setblocking(False)

    async def main():
        n = sdnotify.Notifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "100000"})
        task = n.start_watchdog()
        assert task is not None
        await asyncio.sleep(0.32)  # pings at 0, 50, 100 ... ms
        task.cancel()
        n.close()

    try:
        asyncio.run(main())
        got = []
        while True:
            try:
                got.append(s.recv(64))
            except BlockingIOError:
                break
        assert got and set(got) == {b"WATCHDOG=1"}
        assert len(got) >= 3
    finally:
        s.close()


def test_monotonic_usec():
    a = sdnotify.monotonic_usec()
    b = sdnotify.monotonic_usec()
    assert isinstance(a, int) and 0 < a <= b
