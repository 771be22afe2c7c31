"""Bounded persisted queue of report packs (encoded SenML), oldest first.

Layout: one file per item in a directory (default data/outbox/), named by a
zero-padded sequence number, written with dev.store.write (tmp + rename) so
a power cut leaves the item whole or absent. A file "meta" keeps the
cumulative dropped counter, the next sequence number and "low", the oldest
sequence still wanted; it is written only when items are dropped (rare), not
per push or ack. Dropping writes meta first, then deletes the files below
"low": a cut in between leaves files that the next open deletes without
counting them again, and a cut before the meta write leaves one item too
many, which the next open drops and counts -- the counter stays exact.

At open the directory is listed: leftover *.tmp files (a cut during a push)
are removed, the item files give head and tail. The queue survives deep
sleep, reboots and power loss; in RAM it keeps only the list of sequence
numbers (a few bytes per item).

push(data) appends; beyond `bound` items the oldest is deleted and `dropped`
grows (reported by the roles as SenML "dropped"). peek(n) gives the oldest n
as (seq, bytes); ack(seq) deletes every item up to seq -- call it only after
the gateway's 2.04 (readings durable there), so nothing unacknowledged is
lost while the bound holds and nothing acknowledged is sent again.

Flash wear: per report one file create (data + metadata commit) and one
delete on ack; LittleFS's dynamic wear levelling spreads these over the
whole filesystem (2 MB = 512 blocks on a 4 MB board). At 4 reports an hour
that is ~35 k small writes a year, far below 100 k erase cycles per block.
Items must stay small (_MAX_ITEM bytes) to keep RAM use bounded on send.
"""
import os
from micropython import const
from dev import store

_MAX_ITEM = const(1024)


class Outbox:
    def __init__(self, path="data/outbox", bound=64):
        if bound < 1:
            raise ValueError("outbox: bound must be at least 1")
        self.path = path
        self.bound = bound
        store.makedirs(path)
        meta = store.load_json(path + "/meta", {})
        self.dropped = meta.get("dropped", 0)
        nxt = meta.get("next", 0)
        low = meta.get("low", 0)
        seqs = []
        for ent in os.ilistdir(path):
            name = ent[0]
            if name.isdigit() and int(name) >= low:
                seqs.append(int(name))
            elif name != "meta" and name != "meta.bak":
                # a cut while pushing (*.tmp) or while dropping (already counted)
                store.remove(path + "/" + name)
        seqs.sort()
        self.seqs = seqs
        self.next = max(nxt, seqs[-1] + 1) if seqs else nxt
        if len(seqs) > bound:
            self._drop()

    def __len__(self):
        return len(self.seqs)

    def _file(self, seq):
        return store.item(self.path, seq)

    def _drop(self):
        k = len(self.seqs) - self.bound
        gone = self.seqs[:k]
        del self.seqs[:k]
        self.dropped += k
        store.save_json(self.path + "/meta", {"dropped": self.dropped, "next": self.next, "low": self.seqs[0]})
        for seq in gone:
            store.remove(self._file(seq))

    def push(self, data):
        """Persist one item (bytes-like, <= MAX_ITEM); returns its sequence number."""
        if len(data) > _MAX_ITEM:
            raise ValueError("outbox: item larger than %d bytes" % _MAX_ITEM)
        seq = self.next
        self.next = seq + 1
        store.write(self._file(seq), data)
        self.seqs.append(seq)
        if len(self.seqs) > self.bound:
            self._drop()
        return seq

    def peek(self, n=1):
        """The oldest n items as a list of (seq, bytes); unreadable ones are skipped."""
        return store.read_items(self.path, self.seqs[:n])

    def ack(self, seq):
        """The gateway holds every item up to seq: delete them."""
        store.remove_items(self.path, self.seqs, seq)
