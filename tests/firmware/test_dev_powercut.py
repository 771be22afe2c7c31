# Power cut at every single flash write, on a real LittleFS2 (vfs.VfsLfs2
# over a RAM block device that silently drops every program/erase after the
# cut, then is mounted afresh as after a reboot): dev.store leaves the old or
# the new file, dev.outbox loses nothing already queued.
import os
import vfs
from dev import store
from dev.outbox import Outbox

HEAPSIZE = 262144  # the RAM "flash" and its copy live on the test's heap (not the firmware's)


class CutFlash:
    """Block device; after `budget` program/erase operations nothing more reaches the flash."""

    def __init__(self, blocks=32, bs=512):
        self.bs = bs
        self.data = bytearray(blocks * bs)
        self.budget = -1
        self.ops = 0

    def _go(self):
        self.ops += 1
        if self.budget == 0:
            return False
        if self.budget > 0:
            self.budget -= 1
        return True

    def readblocks(self, b, buf, off=0):
        a = b * self.bs + off
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, b, buf, off=0):
        if self._go():
            a = b * self.bs + off
            self.data[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.bs
        if op == 5:
            return self.bs
        if op == 6:
            if self._go():
                a = arg * self.bs
                self.data[a:a + self.bs] = b"\xff" * self.bs
        return 0


HOME = os.getcwd()


def _mount(dev):
    vfs.mount(vfs.VfsLfs2(dev), "/flash")
    os.chdir("/flash")


def _umount():
    os.chdir(HOME)
    vfs.umount("/flash")



def test_power_cut_at_every_flash_write_on_littlefs():
    dev = CutFlash()
    vfs.VfsLfs2.mkfs(dev)
    old = {"v": "old", "pad": "o" * 700}  # more than a block: several programs
    new = {"v": "new", "pad": "n" * 900}
    _mount(dev)
    store.save_json("cfg.json", {"v": "older"})
    store.save_json("cfg.json", old)  # so the cut write also replaces an existing .bak
    _umount()
    base = bytes(dev.data)
    _mount(dev)
    n0 = dev.ops
    store.save_json("cfg.json", new)
    total = dev.ops - n0
    _umount()
    assert total >= 3, total
    seen = set()
    for cut in range(total + 1):
        dev.data[:] = base
        dev.budget = cut
        _mount(dev)
        try:
            store.save_json("cfg.json", new)
        except OSError:
            pass  # a device that lost power may also report errors
        _umount()
        dev.budget = -1
        _mount(dev)  # the reboot: a fresh mount of what reached the flash
        got = store.load_json("cfg.json")
        _umount()
        assert got == old or got == new, (cut, got)
        seen.add(got["v"])
    assert seen == {"old", "new"}, seen


def test_power_cut_during_push_on_littlefs():
    dev = CutFlash(blocks=48)
    vfs.VfsLfs2.mkfs(dev)
    _mount(dev)
    ob = Outbox(bound=8)
    for i in range(3):
        ob.push(b"old%d" % i + b"." * 300)
    _umount()
    base = bytes(dev.data)
    _mount(dev)
    n0 = dev.ops
    Outbox(bound=8).push(b"new" + b"." * 600)
    total = dev.ops - n0
    _umount()
    outcomes = set()
    for cut in range(total + 1):
        dev.data[:] = base
        dev.budget = cut
        _mount(dev)
        try:
            Outbox(bound=8).push(b"new" + b"." * 600)
        except OSError:
            pass
        _umount()
        dev.budget = -1
        _mount(dev)
        items = [d[:4] for _, d in Outbox(bound=8).peek(10)]
        _umount()
        assert items[:3] == [b"old0", b"old1", b"old2"], (cut, items)
        assert items[3:] in ([], [b"new."]), (cut, items)
        outcomes.add(len(items))
    assert outcomes == {3, 4}


def test_power_cut_during_a_push_that_drops_keeps_the_count_exact():
    dev = CutFlash(blocks=48)
    vfs.VfsLfs2.mkfs(dev)
    _mount(dev)
    ob = Outbox(bound=3)
    for i in range(3):
        ob.push(b"old%d" % i + b"." * 200)
    _umount()
    base = bytes(dev.data)
    _mount(dev)
    n0 = dev.ops
    Outbox(bound=3).push(b"new." + b"." * 200)
    total = dev.ops - n0
    _umount()
    seen = set()
    for cut in range(total + 1):
        dev.data[:] = base
        dev.budget = cut
        _mount(dev)
        try:
            Outbox(bound=3).push(b"new." + b"." * 200)
        except OSError:
            pass
        _umount()
        dev.budget = -1
        _mount(dev)
        ob = Outbox(bound=3)  # the reboot
        items = [d[:4] for _, d in ob.peek(10)]
        ob2 = Outbox(bound=3)  # and the one after: nothing changes any more
        again = ([d[:4] for _, d in ob2.peek(10)], ob2.dropped)
        _umount()
        pushed = 4 if b"new." in items else 3
        assert len(items) + ob.dropped == pushed, (cut, items, ob.dropped)  # every reading: queued or counted
        assert items == [b"old0", b"old1", b"old2", b"new."][pushed - len(items):pushed], (cut, items)
        assert again == (items, ob.dropped), (cut, again)
        seen.add((len(items), ob.dropped))
    assert (3, 0) in seen and (3, 1) in seen, seen
