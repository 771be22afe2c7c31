# The lamp's sender (lamp/app.py) naps in asyncio.sleep_ms() and is woken at
# once by the controller's change callback (lamp.app.waker), which moves its
# task in asyncio's queue to now -- no asyncio.Event / wait_for_ms, whose
# modules would stay on the heap all night.
import asyncio
import time
from lamp import app as lamp_app


class Outbox:
    # dev.outbox's interface as the sender uses it: len, peek(n), ack(seq), seqs
    def __init__(self):
        self.q = []

    def __len__(self):
        return len(self.q)

    @property
    def seqs(self):
        return [s for s, _ in self.q]

    def peek(self, n):
        return self.q[:n]

    def ack(self, seq):
        self.q = [e for e in self.q if e[0] > seq]


class Ep:
    def __init__(self):
        self.sent = []  # (ticks_ms, path, body)
        self.notified = 0

    def notify(self, path):
        assert path == "lamp/state"
        self.notified += 1

    async def request(self, method, peer, path, body, ct=None):
        assert method == 2 and ct == 112
        self.sent.append((time.ticks_ms(), path, bytes(body)))

        class R:
            code = 68  # 2.04
        return R()


class Reg:
    registered = True

    def kick(self):
        pass


class Ctl:
    def __init__(self):
        self.outbox = Outbox()


async def test_sender_nap_cut_short_by_a_change():
    ctl, ep, wake = Ctl(), Ep(), [None]
    changed = lamp_app.waker(ep, wake)
    t = asyncio.create_task(lamp_app.sender(ctl, ep, Reg(), ("127.0.0.1", 5683), wake))
    await asyncio.sleep_ms(50)
    assert wake[0] is t  # idle: napping (2 s)
    ctl.outbox.q.append((1, b"\x81\xa1\x00\x61x"))
    t0 = time.ticks_ms()
    changed()  # an event was queued: send now, not at the nap's end
    assert wake[0] is None and ep.notified == 1
    for _ in range(50):
        await asyncio.sleep_ms(10)
        if ep.sent:
            break
    assert ep.sent and ep.sent[0][1] == "dp"
    assert time.ticks_diff(ep.sent[0][0], t0) < 500, ep.sent
    assert not ctl.outbox.q  # acked on 2.04
    await asyncio.sleep_ms(50)
    assert wake[0] is t  # napping again
    changed()
    changed()  # nobody napping any more: only the notification
    assert ep.notified == 3
    await asyncio.sleep_ms(20)
    t.cancel()
    await asyncio.sleep_ms(20)
    assert wake[0] is None  # cancelled in its nap: the waker will not touch it
    changed()
    assert ep.notified == 4
