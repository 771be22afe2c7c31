"""CoAP endpoint (RFC 7252) for MicroPython asyncio: one UDP socket that is
both client and server.

One socket for both directions is a wire-contract rule: the gateway sends its
requests to the address and port the device last registered from, so the NAT
binding the device opened carries them.

Design notes in the comments below (comments cost nothing to compile on
the board; a long docstring is buffered whole by the lexer)."""
#
#     ep = Endpoint(port=5683, params={"ACK_TIMEOUT": 200})   # a client (a bin)
#     asyncio.create_task(ep.run())
#     r = await ep.request(codec.POST, ("192.0.2.10", 5683), "dp", body, ct=112)
#
#     from coap.observe import Server        # serves resources too (a lamp)
#     ep = Server(port=5683)
#     ep.add("state", handler, obs=True, attrs=b'rt="eclor.lamp.state";ct=112')
#
# Handlers take the request `Msg` (`req.method`, `req.path`, `req.query`,
# `req.payload` with Block1 already reassembled, `req.ct`, `req.accept`,
# `req.peer`) and return `(code, payload, ct)` or `(code, payload, ct,
# options)`, or a coroutine that returns it.  A plain function is answered
# piggybacked in the ACK; a coroutine gets an empty ACK at once and a separate
# CON response when it finishes, so a slow handler never holds up the
# receive loop or makes the client retransmit.
#
# Receiving: `run()` parks on the socket through asyncio's own IOQueue
# (`yield core._io_queue.queue_read(sock)`, exactly what asyncio's streams do;
# `StreamReader` itself cannot do datagrams).  The task sleeps in the poller
# until a datagram arrives: zero added latency and no CPU while idle, unlike a
# `sleep_ms` polling loop which trades one against the other.
#
# Messaging: CON requests are retransmitted with exponential back-off from a
# random timeout in [ACK_TIMEOUT, ACK_TIMEOUT*ACK_RANDOM_FACTOR] up to
# MAX_RETRANSMIT times; NSTART is 1 per peer (a second CON to a peer waits
# until the first is acknowledged).  Incoming CON/NON are de-duplicated by
# (peer, message id) in a small ring of DEDUP entries kept EXCHANGE_LIFETIME:
# a retransmitted request is answered with the cached reply bytes, the
# handler is not run again.  An empty CON (ping) and a malformed CON get RST;
# other malformed datagrams are dropped and counted in `ep.bad`.
#
# All times are milliseconds; `params` overrides any of the defaults
# (Endpoint.__init__); `ep.p` holds the values in force.
#
# Footprint: the serving code (add, dispatch, answers, Observe server side)
# lives in coap/observe.py, whose Server subclass a device that serves
# resources creates; an Endpoint alone is a client (a bin), which answers
# any request with 4.04 and holds none of that code.  Client-side observe
# (coap/watch.py, Server.observe) and block.py load on first use,
# linkformat.py for each filtered /.well-known/core query and is dropped
# after it.  A client is codec + this.
# Option and code numbers are private const()s here (no RAM at run time);
# the public names are in coap.codec.
#
# OSCORE seam: `ep.wrap(msg, peer) -> msg` is applied to every outgoing
# message before encoding and `ep.unwrap(msg, peer) -> msg or None` to every
# decoded incoming one (None drops it).  Both default to None (no-op).
import asyncio
import gc
import random
import socket
import time
from micropython import const

from coap import codec
from coap.codec import Msg

_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_URI_QUERY = const(15)
_ACCEPT = const(17)
_BLOCK2 = const(23)
_NOT_FOUND = const(132)


class Timeout(Exception):
    """No ACK / response after MAX_RETRANSMIT retransmissions."""


class Reset(Exception):
    """The peer answered with RST."""


def addr(host, port=5683):
    """Socket address for host, port (what `request` and `sendto` take)."""
    a = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]
    return bytes(a) if isinstance(a, bytearray) else a


def _wake(ex, st, m):
    # Record what arrived for exchange ex and bring its sleeping task
    # forward to now, as Task.cancel() does for a sleeping task, but
    # without raising into it.
    ex[3] = st
    if m:
        ex[4] = m
    t = ex[5]
    if t is not None:
        ex[5] = None
        q = asyncio.core._task_queue
        q.remove(t)
        q.push(t)


class Endpoint:
    # What only a Server (coap.observe) fills, read here as class defaults: a
    # client's instance dict then holds 13 attributes, which fit the 17-slot
    # table (the next size is 37 slots: +320 B on the 64-bit host).
    _srv = None  # the serving code (coap.observe module) of a Server
    _res = ()  # path -> [handler, obs, attrs] (a Server's first add())
    _obs = ()  # observers of our resources, see coap.observe
    _b1 = None  # Block1 reassembly [peer, path, buffer, length]
    _cobs = ()  # our observations, see coap.watch
    wrap = None  # the OSCORE seam, set on the instance (see above)
    unwrap = None

    def __init__(self, port=0, params=None, host="0.0.0.0", mid=None):
        # mid: the last message ID of a previous endpoint on the same port,
        # so that a new session continues its IDs (the peer's dedup cache
        # still holds the old ones for EXCHANGE_LIFETIME); else random
        # built here rather than kept in a module-level dict: one dict in RAM
        p = self.p = {
            "ACK_TIMEOUT": 2000,
            "ACK_RANDOM_FACTOR": 1.5,
            "MAX_RETRANSMIT": 4,
            "EXCHANGE_LIFETIME": 247000,
            "RESPONSE_TIMEOUT": 93000,  # wait for a separate response after an empty ACK
            "DEDUP": 8,  # entries in the duplicate-detection ring
            "SZX": 6,  # preferred block size 2**(SZX+4): 6 -> 1024 bytes
            "MAX_BODY": 4096,  # largest Block1 request body accepted (else 4.13 + Size1)
            # largest datagram taken in: a 1024-byte block + header and
            # options; a longer one is cut, and dropped as malformed.  Its
            # receive buffer is held all the time (see run()): a client whose
            # peer never sends it more may set less (a bin: the gateway's
            # answers to a queue-mode device carry <= 256 B of commands)
            "MAX_MSG": 1152,
            "OBS_MAX": 4,  # observers kept
            "OBS_CON_N": 5,  # at least every Nth notification is CON
            "OBS_CON_MS": 60000,  # ... or when the last CON one is older than this
        }
        if params:
            p.update(params)
        self.szx = p["SZX"]
        s = self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(addr(host, port))
        s.setblocking(False)
        # one byte more than MAX_MSG: a longer datagram is seen cut
        n = self._rxn = p["MAX_MSG"] + 1
        self._hole = bytearray(n)  # see run()
        self._ex = []  # outstanding exchanges, see exchange()
        # dedup ring, flat: peer, mid, expiry, reply bytes, peer, ... (no
        # list per entry: 64 B each on the 64-bit host)
        self._seen = []
        self._mid = random.getrandbits(16) if mid is None else mid & 0xFFFF
        self._tok = random.getrandbits(30)
        self._task = None
        self.bad = 0  # malformed datagrams dropped
        self.retx = 0  # retransmissions sent
        self.oom = 0  # datagrams delayed or lost for want of memory

    # ---- client side -------------------------------------------------------
    # (serving resources and client Observe: coap.observe.Server, a subclass)

    def request(self, method, peer, path, payload=b"", ct=None, query=None, con=True, accept=None, options=None):
        """Send a request and return the response Msg (`code`, `payload`,
        `ct`, `options`): `await ep.request(...)`.  `peer` is a socket
        address from `addr()` or a (host, port) tuple.  A body larger than
        the block size goes out in Block1 blocks; a Block2 response is
        fetched whole.  Raises Timeout after MAX_RETRANSMIT, Reset on RST."""
        # A plain function that returns the exchange's coroutine: no
        # coroutine frame of its own held through the exchange (~250 B on
        # the 64-bit host for every request in flight).
        if isinstance(peer, tuple):
            peer = addr(peer[0], peer[1])
        # options as (number, value) tuples: 32 B each on the 64-bit host
        # against 64 B for a 2-item list (its own item array), held with the
        # request for the whole exchange (nothing changes an option in place)
        opts = []
        for seg in path.strip("/").split("/"):
            if seg:
                opts.append((_URI_PATH, seg))
        for q in query or ():
            opts.append((_URI_QUERY, q))
        if ct is not None:
            opts.append((_CONTENT_FORMAT, ct))
        if accept is not None:
            opts.append((_ACCEPT, accept))
        if options:
            opts.extend(options)
        if len(payload) > (16 << self.szx) or self.szx < 6:
            from coap import block
            return block.request(self, method, peer, opts, payload, con)
        return self.exchange(Msg(_CON if con else _NON, method, 0, b"", opts, payload), peer, 2)

    async def exchange(self, m, peer, response=True):
        """One message exchange: send m (fresh mid and token), retransmit a CON
        until ACKed, then (response=True) wait for the matching response.
        Returns the response Msg (or True when response=False); response=2
        (request()) fetches the rest of a Block2 response too."""
        # [peer, mid, token, state -1 waiting for NSTART/0 unacked/1 acked/
        #  2 answered/3 reset, response, sleeping task, the datagram (kept
        #  to retransmit)]
        ex = [peer, None, None, -1 if m.mtype == _CON else 1, None, None, None]
        self._ex.append(ex)
        try:
            # NSTART = 1: one unacknowledged CON per peer, in turn: the first
            # CON to peer in _ex that is waiting or unacknowledged goes (so
            # a task sending CON after CON cannot starve another's).  A
            # short poll: concurrent CONs to one peer are rare.
            while ex[3] < 0:
                for e in self._ex:
                    if e[0] == peer and e[3] <= 0:
                        break
                if e is ex:
                    ex[3] = 0
                else:
                    await asyncio.sleep_ms(5)
            # the next message ID, written out where needed (here, in _rx
            # and in coap.observe) rather than a method: one function less
            m.mid = ex[1] = self._mid = (self._mid + 1) & 0xFFFF
            if response:
                if not m.token:
                    self._tok += 1
                    m.token = self._tok.to_bytes(4, "big")
                ex[2] = m.token
            ex[6] = self._pack(m, peer)
            # sent as ex[6]: the message is not held (only a request()'s
            # Block2 continuation reads its code and options again), nor
            # its payload, which the caller may drop meanwhile
            if response != 2:
                m = None
            else:
                m.payload = b""
            # Few locals (the datagram in ex, no flags): this coroutine's
            # frame is held for every request in flight, in one piece.
            t = self.p["ACK_TIMEOUT"]
            t = int(t + t * (self.p["ACK_RANDOM_FACTOR"] - 1) * random.getrandbits(10) / 1024)
            # tries: retransmissions so far; -1 once acknowledged (a NON at
            # once: it waits MAX_TRANSMIT_WAIT for its answer)
            tries = 0
            if ex[3]:
                t *= (2 << self.p["MAX_RETRANSMIT"]) - 1  # MAX_TRANSMIT_WAIT
                tries = -1
            due = time.ticks_add(time.ticks_ms(), t)
            self._send(ex[6], peer)
            while True:
                st = ex[3]
                if st == 3:
                    raise Reset()
                if st == 2:
                    if response == 2 and ex[4].opt(_BLOCK2) is not None:
                        break  # a request()'s Block2 answer: the rest below
                    return ex[4]
                if st == 1:
                    if not response:
                        return True
                    if tries >= 0:  # empty ACK: now wait for the separate response
                        tries = -1
                        due = time.ticks_add(time.ticks_ms(), self.p["RESPONSE_TIMEOUT"])
                left = time.ticks_diff(due, time.ticks_ms())
                if left <= 0:
                    if tries < 0 or tries >= self.p["MAX_RETRANSMIT"]:
                        raise Timeout()
                    tries += 1
                    t *= 2
                    due = time.ticks_add(due, t)
                    self.retx += 1
                    self._send(ex[6], peer)
                    continue
                # sleep until the deadline; _rx wakes us early when something
                # arrives for this exchange: no Event, no extra task
                ex[5] = asyncio.current_task()
                await asyncio.sleep_ms(left)
                ex[5] = None
        finally:
            self._ex.remove(ex)
        from coap import block
        return await block.rest(self, m, peer, ex[4])

    def _pack(self, m, peer):
        # Every message we send is kept (for retransmission or as the
        # cached answer to a duplicate), so it is encoded once into a buffer
        # of an upper-bound size and kept as a view: one allocation per
        # message and no permanent MAX_MSG-sized transmit buffer.
        if self.wrap and peer:  # peer None: an observer's request kept (coap.observe)
            m = self.wrap(m, peer)
        need = 5 + len(m.token) + len(m.payload)
        for o in m.options:
            v = o[1]
            need += 5 + (4 if isinstance(v, int) else (4 * len(v) if isinstance(v, str) else len(v)))
        b = bytearray(need)
        return memoryview(b)[:codec.encode(m, b)]

    def _send(self, data, peer):
        s = self._sock
        if s is None:
            raise OSError("endpoint closed")
        try:
            s.sendto(data, peer)
        except OSError:
            pass  # no route / interface down: the retransmission timer copes

    # ---- receive loop --------------------------------------------------------

    async def run(self):
        """Receive and dispatch datagrams until close()."""
        from asyncio.core import _io_queue
        self._task = asyncio.current_task()
        s = self._sock
        while self._sock:
            yield _io_queue.queue_read(s)
            # recvfrom needs MAX_MSG contiguous bytes for a moment.  A
            # placeholder of that size is kept between datagrams and let go
            # just before (the allocator's collection frees it if nothing
            # else fits), so the small objects allocated meanwhile cannot
            # fragment the one hole receiving depends on.  Measured: -3 KB
            # of minimum heap (bench/coap_footprint.py).
            self._hole = None
            try:
                try:
                    data, peer = s.recvfrom(self._rxn)
                except MemoryError:
                    # no MAX_MSG contiguous bytes: collect and retry once,
                    # else drop the datagram (a tiny read discards it) so a
                    # fragmented heap cannot wedge the loop; CON peers
                    # retransmit
                    gc.collect()
                    self.oom += 1
                    try:
                        data, peer = s.recvfrom(self._rxn)
                    except MemoryError:
                        s.recvfrom(1)
                        continue
            except OSError:
                continue
            try:
                self._hole = bytearray(self._rxn)
            except MemoryError:
                pass
            try:
                self._rx(data, peer)
            except Exception as e:  # never let one datagram stop the endpoint
                self.bad += 1
                if isinstance(e, MemoryError):
                    self.oom += 1
                    gc.collect()
                elif not self.bad & (self.bad - 1):  # a sample: 1st, 2nd, 4th, 8th...
                    print("coap: rx error", self.bad, repr(e))

    def close(self):
        s, self._sock = self._sock, None
        t, self._task = self._task, None
        if t and t is not asyncio.current_task():
            t.cancel()
        if s:
            s.close()
        if self._obs:
            self._obs = []  # ends the observers' notification tasks

    def _rx(self, data, peer):
        # a datagram longer than MAX_MSG was cut by recvfrom: malformed
        m = codec.decode(data) if len(data) < self._rxn else "too large"
        if isinstance(m, str):
            self.bad += 1
            if len(data) >= 4 and data[0] & 0xF0 == 0x40:  # v1 CON: RST it
                self._send(bytes((0x70, 0, data[2], data[3])), peer)
            return
        if self.unwrap:
            m = self.unwrap(m, peer)
            if m is None:
                return
        m.peer = peer
        t = m.mtype
        code = m.code
        if t >= _ACK:
            for ex in self._ex:
                if ex[1] == m.mid and ex[0] == peer and ex[3] < 2:
                    if t == _RST:
                        _wake(ex, 3, None)
                    elif code == 0:
                        _wake(ex, 1, None)
                    elif ex[2] == m.token:
                        _wake(ex, 2, m)
                    return
            if t == _RST:
                # an RST to a notification ends that observation (here
                # rather than a function of coap.observe: one function less
                # resident)
                for o in self._obs:
                    if o[0] == peer and o[6] == m.mid:
                        self._obs.remove(o)
                        break
            return
        if code == 0 or 32 <= code < 64:
            # an empty CON is a ping; an empty NON is meaningless; class 1
            # is reserved: not a request we understand
            if t == _CON:
                self._send(bytes((0x70, 0, data[2], data[3])), peer)
            return
        # de-duplication by (peer, message id): a retransmitted CON gets the
        # cached reply bytes, a duplicate NON is dropped
        now = time.ticks_ms()
        seen = self._seen
        i = 0
        while i < len(seen):  # not range(): no object per datagram
            if seen[i] == peer:
                # one address object per peer, shared by the ring, the
                # observers and the exchanges: recvfrom makes a new one
                # (64 B on the 64-bit host) for every datagram
                peer = m.peer = seen[i]
                if seen[i + 1] == m.mid and time.ticks_diff(seen[i + 2], now) > 0:
                    if t == _CON and seen[i + 3]:
                        self._send(seen[i + 3], peer)
                    return
            i += 4
        while seen and (len(seen) >= 4 * self.p["DEDUP"] or time.ticks_diff(seen[2], now) <= 0):
            del seen[:4]
        seen.extend((peer, m.mid, time.ticks_add(now, self.p["EXCHANGE_LIFETIME"]), None))
        e = len(seen) - 1  # where the reply goes (> 0, so e is true)
        if code >= 64:  # a (separate) response
            for ex in self._ex:
                if ex[0] == peer and ex[2] == m.token and ex[3] < 2:
                    _wake(ex, 2, m)
                    ok = True
                    break
            else:
                ok = False
                if self._cobs:
                    from coap.watch import note
                    ok = note(self, m)
            if t == _CON or not ok:  # unexpected NON too: RST ends an observation
                seen[e] = bytes((0x60 if ok else 0x70, 0, data[2], data[3]))
                self._send(seen[e], peer)
            return
        if self._srv:
            self._srv.serve(self, m, e)
            return
        # The serving code lives in coap/observe.py (a Server's, set by its
        # first add()): a client (a bin) never pays for it and answers any
        # request with 4.04 here.
        mid = m.mid
        if t != _CON:  # a NON answer has a message ID of its own
            mid = self._mid = (self._mid + 1) & 0xFFFF
        data = self._pack(Msg(_ACK if t == _CON else _NON, _NOT_FOUND, mid, m.token), peer)
        if t == _CON:
            seen[e] = bytes(data)  # see coap.observe.answer
        self._send(data, peer)
