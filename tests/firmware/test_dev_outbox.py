# dev.outbox: bounded persisted queue; survives re-open (deep sleep, reboot),
# drops the oldest beyond the bound with a persisted counter, removes only on
# ack (the power cut at every flash write is in test_dev_powercut.py).
import os
from dev.outbox import Outbox


def test_fifo_ack_and_reopen():
    ob = Outbox(bound=10)
    seqs = [ob.push(b"pack%d" % i) for i in range(5)]
    assert len(ob) == 5 and [d for _, d in ob.peek(3)] == [b"pack0", b"pack1", b"pack2"]
    ob.ack(seqs[1])
    assert [d for _, d in ob.peek(10)] == [b"pack2", b"pack3", b"pack4"]
    ob2 = Outbox(bound=10)  # the next wake / boot
    assert [d for _, d in ob2.peek(10)] == [b"pack2", b"pack3", b"pack4"]
    s = ob2.push(b"pack5")
    assert s > seqs[-1]
    ob2.ack(ob2.peek(10)[-1][0])
    assert len(ob2) == 0 and len(Outbox(bound=10)) == 0


def test_bound_drops_oldest_and_counts_persistently():
    ob = Outbox(bound=4)
    for i in range(10):
        ob.push(b"r%d" % i)
    assert len(ob) == 4 and ob.dropped == 6
    assert [d for _, d in ob.peek(10)] == [b"r6", b"r7", b"r8", b"r9"]
    ob = Outbox(bound=4)
    assert ob.dropped == 6 and len(ob) == 4
    ob.push(b"r10")
    assert ob.dropped == 7 and Outbox(bound=4).dropped == 7
    assert len(os.listdir("data/outbox")) <= 4 + 2  # items + meta (+ its .bak): flash use is bounded


def test_ack_of_unknown_or_old_seq_is_harmless():
    ob = Outbox()
    a = ob.push(b"a")
    ob.ack(a - 1)
    assert len(ob) == 1
    ob.ack(a)
    ob.ack(a)
    assert len(ob) == 0 and ob.peek(5) == []


def test_item_size_bound():
    ob = Outbox()
    try:
        ob.push(bytes(2000))
        assert False
    except ValueError as e:
        assert "larger" in str(e)
    assert len(ob) == 0


def test_leftover_tmp_from_a_cut_is_ignored_and_cleaned():
    ob = Outbox()
    ob.push(b"kept")
    with open("data/outbox/%08d.tmp" % ob.next, "wb") as f:
        f.write(b"half")
    ob = Outbox()
    assert [d for _, d in ob.peek(5)] == [b"kept"]
    assert not any(n.endswith(".tmp") for n in os.listdir("data/outbox"))
