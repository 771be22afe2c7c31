"""What the first session POSTs (loaded by waste/link.py after the
registration): the backlog to /dp; and the commands in the answers, for
the cycle (a later session's /cr POST: waste/cr.py).

A module of its own so that the registration, the peak of a wake's heap
(coap.register loaded), does not hold this code: it comes after that was
dropped, and the cycle drops it with the link (docs/bin.md "Memory").
"""
from micropython import const
from waste.link import post
from waste.cycle import unload
from dev import store

_MAX_POST = const(1024)    # bytes per /dp POST: one datagram, no block-wise
_CHANGED = const(68)       # 2.04 (coap.codec.CHANGED)
_MAX_AGE = const(14)       # the Max-Age option (coap.codec.MAX_AGE)
_CT_CBOR = const(60)


async def flush(c):
    """POST the backlog to /dp in cycle c's session (waste/link.py); returns
    the commands in the answers ([] if none), or None when the gateway did
    not take everything."""
    # the outbox opened (dev.outbox: the listing, leftovers, its bound),
    # then only its list of items kept: the /dp POSTs read and delete
    # them here (dev.store's numbered items, as the Outbox does), without
    # the Outbox code (1.9 KB of heap) held through the exchanges,
    # the peak of the wake's heap
    ob = c.outbox()
    seqs, path = ob.seqs, ob.path
    ob = c.ob = None       # re-opened on use (a refused pack, a `report`)
    unload("dev.outbox")
    cmds = []
    while seqs:
        body, n, last = _body(store.read_items(path, seqs[:16]))
        r = post(c, "dp", body, 112)    # SenML CBOR
        body = None   # not held through the exchange (post() drops it too)
        r = await r
        if r is None:
            return None
        if r.code == 163:   # 5.03: keep them, retry after Max-Age
            c.error = "max-age %d" % r.uopt(_MAX_AGE, 60)
            return None
        if r.code == 132 and not c.rereg:
            # 4.04: the gateway does not know this address (NAT
            # rebinding, its data reset): register anew, resend the same
            c.rereg = True
            c.st.pop("rd", None)
            from waste.reg import register
            ok = await register(c)
            register = None
            unload("waste.reg", "coap.register")
            if not ok:
                return None
            continue
        if 128 <= r.code < 160:
            ob = c.outbox()     # counted as dropped (dev.outbox)
            ob.dropped += n
            ob.ack(last)
            seqs = ob.seqs
            ob = None
            c.error = "refused %d" % r.code
            continue
        if r.code != _CHANGED:
            c.error = "dp %d" % r.code
            return None
        store.remove_items(path, seqs, last)    # durable at the gateway: never sent again
        c.sent += n
        cmds += _cmds(r)
    return cmds


def _body(items):
    """(payload, n, seq of the last) for the oldest packs that fit in one
    /dp POST (_MAX_POST bytes). Several packs are joined into one SenML
    array: same as fmt.senml.concat for the packs the wake makes (fewer
    than 24 records: one-byte array head), written once into a buffer of
    the right size, without fmt.senml or fmt.cbor on the heap (a wake
    without commands does not load them). SenML base values hold until
    changed, so the joined array means exactly the union of the packs."""
    size = recs = n = 0
    for seq, data in items:
        if n and size + len(data) > _MAX_POST:
            break
        size += len(data)
        recs += data[0] & 0x1F
        n += 1
    if n == 1:
        return items[0][1], 1, items[0][0]
    # CBOR array head: < 24 items in the initial byte, else one more byte
    # (a 1024-byte body holds fewer than 256 records of at least 5 bytes)
    h = 1 if recs < 24 else 2
    body = bytearray(h + size - n)
    if h == 1:
        body[0] = 0x80 | recs
    else:
        body[0] = 0x98
        body[1] = recs
    for i in range(n):
        d = items[i][1]
        body[h:h + len(d) - 1] = memoryview(d)[1:]
        h += len(d) - 1
    return body, n, items[n - 1][0]


def _cmds(r):
    """[(payload, content-format)] of an answer that carries commands (CBOR
    or JSON), else []. The cycle parses them once the CoAP stack is dropped."""
    if not r.payload or r.ct not in (50, _CT_CBOR):
        return []
    return [(r.payload, r.ct)]
