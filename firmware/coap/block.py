"""RFC 7959 block-wise transfers, loaded by the endpoint only when needed."""
#
# Client: `request` sends a large body as Block1 blocks (following a smaller
# SZX the server asks for in its 2.31 answers) and `fetch` collects a Block2
# response whole.  Server: `receive` reassembles Block1 request bodies into
# one buffer bounded by MAX_BODY (4.13 with Size1 beyond it, 4.08 when a block
# is out of order) and `slice2` cuts a large response into the Block2 block
# the client asked for.  The server keeps no Block2 state: each block request
# re-runs the handler (RFC 7959 §2.4, stateless server), so a handler must
# give the same representation while a transfer runs.
#
# SZX is negotiated both ways: the smaller of our SZX and the peer's wins.
from micropython import const

from coap.codec import Msg

_CON = const(0)
_ETAG = const(4)
_NON = const(1)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_SIZE2 = const(28)
_SIZE1 = const(60)
_CONTINUE = const(95)
_BAD_OPTION = const(130)
_REQUEST_ENTITY_INCOMPLETE = const(136)
_REQUEST_ENTITY_TOO_LARGE = const(141)


def parse(v):
    """Block option value (bytes or int) -> (num, more, szx)."""
    n = v if isinstance(v, int) else int.from_bytes(v, "big")
    return n >> 4, (n >> 3) & 1, n & 7


def val(num, more, szx):
    return (num << 4) | (more << 3) | szx


async def request(ep, method, peer, opts, body, con):
    mt = _CON if con else _NON
    szx = ep.szx
    total = len(body)
    if total <= (16 << szx):
        # small body; only announce our (small) preferred Block2 size
        r = await ep.exchange(Msg(mt, method, 0, b"", opts + [[_BLOCK2, val(0, 0, szx)]], body), peer)
    else:
        off = 0
        while True:
            size = 16 << szx
            more = 1 if off + size < total else 0
            o = opts + [[_BLOCK1, val(off // size, more, szx)]]
            if off == 0:
                o.append([_SIZE1, total])
            r = await ep.exchange(Msg(mt, method, 0, b"", o, body[off:off + size]), peer)
            if not more or r.code != _CONTINUE:
                break
            b = r.opt(_BLOCK1)
            if b is not None:
                s = parse(b)[2]
                if s < szx:
                    szx = s  # the server wants smaller blocks from now on
            off += size
    if r.opt(_BLOCK2) is not None:
        return await fetch(ep, method, peer, opts, r, con)
    return r


def rest(ep, m, peer, r):
    # fetch() for request m's answer r (Endpoint.exchange): four arguments
    # there keep the stack of the coroutine frame every request holds short
    return fetch(ep, m.code, peer, m.options, r, m.mtype == _CON)


async def fetch(ep, method, peer, opts, r, con):
    """Fetch the remaining Block2 blocks of response r; the last block's
    response comes back with the whole body (a bytearray).  Raises
    ValueError when the server's blocks do not line up, or when the ETag
    changes (the representation changed between blocks, RFC 7959 §2.4)."""
    num, more, szx = parse(r.opt(_BLOCK2))
    if num:
        raise ValueError("block2 does not start at 0")
    # one buffer of the announced size (Size2) filled in place: growing a
    # bytearray block by block fragments a small heap
    total = r.uopt(_SIZE2, 0)
    acc = bytearray(max(total, len(r.payload)))
    n = len(r.payload)
    acc[:n] = r.payload
    opts = [o for o in opts if o[0] != _BLOCK1 and o[0] != _SIZE1 and o[0] != _BLOCK2]
    code = r.code
    et = r.opt(_ETAG)
    while more:
        r = await ep.exchange(Msg(_CON if con else _NON, method, 0, b"", opts + [[_BLOCK2, val(n >> (szx + 4), 0, szx)]], b""), peer)
        b = r.opt(_BLOCK2)
        if r.code != code or b is None:
            return r  # error (e.g. 4.08) or changed answer: hand it back
        if r.opt(_ETAG) != et:
            raise ValueError("block2 ETag changed")
        num, more, szx = parse(b)
        if num << (szx + 4) != n:
            raise ValueError("block2 out of order")
        p = r.payload
        if n + len(p) <= len(acc):
            acc[n:n + len(p)] = p
        else:
            if len(acc) != n:
                acc = acc[:n]
            acc.extend(p)
        n += len(p)
    r.payload = acc if n == len(acc) else acc[:n]
    drop(r, _BLOCK2)
    return r


def drop(m, num):
    """Remove option num from message m (here rather than a Msg method:
    only block-wise needs it, and codec is resident)."""
    m.options = [o for o in m.options if o[0] != num]


def receive(ep, m):
    """Block1 request block m.  Returns a response tuple to send (2.31, 4.08,
    4.13), or None when the body is complete (then in m.payload)."""
    num, more, szx = parse(m.opt(_BLOCK1))
    limit = ep.p["MAX_BODY"]
    off = num << (szx + 4)
    st = ep._b1
    size1 = m.uopt(_SIZE1)
    if (size1 and size1 > limit) or off + len(m.payload) > limit:
        ep._b1 = None
        return (_REQUEST_ENTITY_TOO_LARGE, b"", None, [[_SIZE1, limit]])
    if szx == 7:
        return (_BAD_OPTION, b"", None)
    if num == 0:
        # one buffer of the announced size (Size1): no growth, no fragments
        st = ep._b1 = [m.peer, m.path, bytearray(size1 or 0), 0]
    elif st is None or st[0] != m.peer or st[1] != m.path or st[3] != off:
        return (_REQUEST_ENTITY_INCOMPLETE, b"", None)
    buf = st[2]
    end = off + len(m.payload)
    if end <= len(buf):
        buf[off:end] = m.payload
    else:
        if len(buf) != off:
            st[2] = buf = buf[:off]
        buf.extend(m.payload)
    st[3] = end
    if szx > ep.szx:
        szx = ep.szx  # ask the client for our smaller blocks
    if more:
        return (_CONTINUE, b"", None, [[_BLOCK1, val(num, 1, szx)]])
    # hand over the buffer itself when Size1 was right (no second copy of
    # the body at the moment memory is tightest): payload is then a bytearray
    m.payload = buf if end == len(buf) else bytes(memoryview(buf)[:end])
    ep._b1 = None
    m.b1 = val(num, 0, szx)
    return None


def slice2(ep, m, code, payload, opts):
    """Cut payload to the Block2 block requested by m; adds the Block2 (and
    Size2 on the first block) option to opts.  -> (code, block)."""
    szx = ep.szx
    num = 0
    b = m.opt(_BLOCK2)
    if b is not None:
        num, _, rs = parse(b)
        off = num << (rs + 4)
        if rs < szx:
            szx = rs
    else:
        off = 0
    n = len(payload)
    if off and off >= n:
        return _BAD_OPTION, b""
    size = 16 << szx
    more = 1 if off + size < n else 0
    opts.append([_BLOCK2, val(off >> (szx + 4), more, szx)])
    if off == 0 and more:
        opts.append([_SIZE2, n])
    return code, payload[off:off + size]
