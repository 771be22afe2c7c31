"""Device registry: inventory + registrations, in memory, written through to SQLite.

The registry answers the hot-path question "who sent this datagram?" from a
dict keyed by source (host, port) -- one socket per device, so the address a
device registered or updated from identifies it, and it is also where the
gateway sends its requests (NAT bindings opened by the device carry them).

Everything is kept in memory for speed and written to the store; at start the
store is read back, so a restart forgets neither devices nor their last
address. Registration changes are awaited (durable before 2.01/2.04 is sent).
"""
import hashlib
import logging
import re
import time

from . import store as st

log = logging.getLogger("eclor.gateway.registry")

EP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
TYPES = ("lamp", "bin")


class RegistryError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code  # HTTP-ish: 400 bad input, 403 refused, 404 unknown


def reg_id_for(ep):
    # Stable across re-registrations and restarts: same ep -> same location.
    return hashlib.blake2s(ep.encode(), digest_size=5).hexdigest()


def parse_links(payload):
    """RFC 6690 link-format -> list of (path, attrs dict). Lenient: a device's
    link list is informative; only `obs` changes what the gateway does."""
    out = []
    for part in re.split(r",(?=\s*<)", payload.strip()):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"<([^>]*)>(.*)$", part, re.S)
        if not m:
            raise ValueError("bad link %r" % part[:40])
        attrs = {}
        for a in m.group(2).split(";"):
            a = a.strip()
            if not a:
                continue
            k, _, v = a.partition("=")
            attrs[k.strip()] = v.strip().strip('"') if v else True
        out.append((m.group(1), attrs))
    return out


def declared_device(d, now):
    """Validate an inventory record -> device dict (raises RegistryError 400)."""
    if not isinstance(d, dict):
        raise RegistryError(400, "device must be an object")
    ep = d.get("ep")
    if not isinstance(ep, str) or not EP_RE.match(ep):
        raise RegistryError(400, "invalid ep %r (letters, digits, . _ -, at most 63)" % (ep,))
    typ = d.get("type")
    if typ not in TYPES:
        raise RegistryError(400, "%s: type must be lamp or bin, not %r" % (ep, typ))
    out = {"ep": ep, "type": typ, "declared": 1, "created": now}
    for k in ("zone", "commune"):
        v = d.get(k)
        if v is not None and not isinstance(v, str):
            raise RegistryError(400, "%s: %s must be a string" % (ep, k))
        out[k] = v or None
    for k, lo, hi in (("lat", -90, 90), ("lon", -180, 180)):
        v = d.get(k)
        if v in (None, ""):
            out[k] = None
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise RegistryError(400, "%s: %s must be a number" % (ep, k)) from None
        if not lo <= v <= hi:
            raise RegistryError(400, "%s: %s out of range" % (ep, k))
        out[k] = v
    tags = d.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in re.split(r"[;,]", tags) if t.strip()]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryError(400, "%s: tags must be a list of strings" % ep)
    out["tags"] = tags
    meta = d.get("meta") or {}
    if not isinstance(meta, dict):
        raise RegistryError(400, "%s: meta must be an object" % ep)
    extra = {k: v for k, v in d.items() if k not in
             ("ep", "type", "zone", "commune", "lat", "lon", "tags", "meta")}
    out["meta"] = dict(meta, **extra)
    return out


class Registry:
    def __init__(self, gw):
        self.gw = gw
        self.devices = {}   # ep -> dict (DEVICE_FIELDS)
        self.by_reg = {}    # reg_id -> ep
        self.by_addr = {}   # (host, port) -> ep
        self.latest = {}    # ep -> {name: (t, v, vs, vb)}

    @property
    def store(self):
        return self.gw.store

    def load(self, devices, latest):
        for d in devices:
            self.devices[d["ep"]] = d
            if d.get("reg_id"):
                self.by_reg[d["reg_id"]] = d["ep"]
            if d.get("host") and d.get("online"):
                self.by_addr[(d["host"], d["port"])] = d["ep"]
        for dev, name, t, v, vs, vb in latest:
            self.latest.setdefault(dev, {})[name] = (t, v, vs, vb)

    # -- inventory ----------------------------------------------------------
    async def declare(self, records):
        """Declare (or re-declare) devices; keeps registration state. All or nothing."""
        now = time.time()
        new = [declared_device(r, now) for r in records]
        rows = []
        for d in new:
            old = self.devices.get(d["ep"])
            row = dict(old) if old else {k: None for k in st.DEVICE_FIELDS}
            if old:
                d.pop("created")
            row.update(d)
            row.setdefault("queue", 0)
            row["queue"] = row["queue"] or 0
            row["online"] = row["online"] or 0
            rows.append(row)

        def job(con):
            for row in rows:
                st.upsert_device(con, row)
        await self.store.write(job)
        for row in rows:
            self.devices[row["ep"]] = row
        return rows

    # -- registration -------------------------------------------------------
    async def register(self, ep, typ, lt, queue, links, addr, now):
        if not EP_RE.match(ep):
            raise RegistryError(400, "invalid ep %r" % ep)
        old = self.devices.get(ep)
        if old is None or not old.get("declared"):
            if not self.gw.cfg["allow_undeclared"] and not (old and old.get("declared")):
                raise RegistryError(403, "ep %r is not in the inventory" % ep)
        if old and old.get("declared") and old.get("type") and old["type"] != typ:
            raise RegistryError(403, "ep %r is declared as %s, registers as %s" % (ep, old["type"], typ))
        row = dict(old) if old else {k: None for k in st.DEVICE_FIELDS}
        if not old:
            row.update(ep=ep, declared=0, created=now, tags=[], meta={})
        prev_addr = (row.get("host"), row.get("port"))
        row.update(type=typ, reg_id=reg_id_for(ep), lt=lt, queue=1 if queue else 0, links=links,
                   host=addr[0], port=addr[1], registered=now, last_seen=now,
                   expires=now + lt, online=1)
        was_online = bool(old and old.get("online"))

        def job(con):
            st.upsert_device(con, row)
            if not was_online:
                st.insert_event(con, now, ep, "registered", {"addr": "%s:%d" % addr, "lt": lt})
        await self.store.write(job)
        self.devices[ep] = row
        self.by_reg[row["reg_id"]] = ep
        if prev_addr != addr:
            self.by_addr.pop(prev_addr, None)
        self.by_addr[addr] = ep
        return row

    async def update(self, reg_id, addr, lt, now):
        ep = self.by_reg.get(reg_id)
        row = self.devices.get(ep) if ep else None
        if row is None or not row.get("online"):
            return None  # unknown or expired -> 4.04, the device re-registers
        if lt is not None:
            row["lt"] = lt
        old_addr = (row["host"], row["port"])
        row.update(host=addr[0], port=addr[1], last_seen=now, expires=now + row["lt"])
        if old_addr != addr:
            # NAT rebinding: the new source is now where the device lives.
            self.by_addr.pop(old_addr, None)
            self.by_addr[addr] = ep
        await self.store.write(st.set_device_state, ep, dict(
            host=addr[0], port=addr[1], lt=row["lt"], last_seen=now, expires=row["expires"]))
        return row

    async def remove(self, reg_id, now, reason="deregistered"):
        ep = self.by_reg.get(reg_id)
        row = self.devices.get(ep) if ep else None
        if row is None or not row.get("online"):
            return None
        row["online"] = 0
        self.by_addr.pop((row["host"], row["port"]), None)

        def job(con):
            st.set_device_state(con, ep, {"online": 0})
            st.insert_event(con, now, ep, reason, None)
        await self.store.write(job)
        return row

    def sender(self, addr, now):
        """(host, port) -> device row of a live registration, or None."""
        ep = self.by_addr.get(addr)
        if ep is None:
            return None
        row = self.devices[ep]
        if row["expires"] + self.gw.cfg["lt_grace_s"] < now:
            return None
        return row

    async def expire(self, now):
        """Mark devices whose lifetime ran out offline (with an event)."""
        grace = self.gw.cfg["lt_grace_s"]
        gone = [r for r in self.devices.values()
                if r.get("online") and r.get("expires") and r["expires"] + grace < now]
        for r in gone:
            log.info("registration of %s expired", r["ep"])
            await self.remove(r["reg_id"], now, reason="expired")
        return [r["ep"] for r in gone]

    # -- views ----------------------------------------------------------------
    def public(self, row, now=None):
        now = now or time.time()
        d = {k: row.get(k) for k in ("ep", "type", "zone", "commune", "lat", "lon", "tags", "meta",
                                     "lt", "registered", "last_seen", "expires")}
        d["declared"] = bool(row.get("declared"))
        d["queue_mode"] = bool(row.get("queue"))
        d["online"] = bool(row.get("online"))
        d["address"] = ("[%s]:%d" % (row["host"], row["port"]) if row.get("host") and ":" in row["host"]
                        else "%s:%d" % (row["host"], row["port"]) if row.get("host") else None)
        d["location"] = "rd/" + row["reg_id"] if row.get("reg_id") else None
        d["status"] = self.status(row)
        d["latest"] = {n: _latest_value(v) for n, v in sorted(self.latest.get(row["ep"], {}).items())}
        return d

    def status(self, row):
        """ok | faulty | full | fire | lowBattery | offline | unknown: one word for filters."""
        if not row.get("online"):
            return "offline" if row.get("registered") else "unknown"
        lt = self.latest.get(row["ep"], {})
        active = [n[3:] for n, v in lt.items() if n.startswith("ev:") and v[3]]
        if row.get("type") == "bin":
            if "fire" in active or (lt.get("status") or (0, 0, None, 0))[2] == "burning":
                return "fire"
            fill = lt.get("fill")
            if fill and fill[1] is not None and fill[1] >= self.gw.cfg["collection_threshold"]:
                return "full"
            bat = lt.get("battery")
            if bat and bat[1] is not None and bat[1] < self.gw.cfg["battery_low_v"]:
                return "lowBattery"
        if active:
            return "faulty"
        return "ok"


def _latest_value(v):
    t, val, vs, vb = v
    out = {"t": t}
    if val is not None:
        out["v"] = val
    elif vs is not None:
        out["vs"] = vs
    else:
        out["vb"] = bool(vb)
    return out
