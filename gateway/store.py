"""Durable storage: SQLite in WAL mode behind ONE writer thread with group commit.

Why this shape:

* The event loop must never wait on the disk. Every write is a small job put on
  a queue; a dedicated thread owns the only write connection.
* Durability is what a 2.04 promises to a device, and an fsync per reading
  would cap the gateway at a few hundred readings per second. The writer takes
  every job that is waiting, runs them all in ONE transaction and commits once
  (group commit): while one commit is on its way to disk, the next batch piles
  up. Each job's asyncio future is resolved only after the commit that holds it
  returned, so an awaited write is a durable write (synchronous=FULL in WAL
  mode syncs the WAL on every commit).
* One bad job must not fail the others in its batch: each job runs under a
  SAVEPOINT; its error goes to its own future.
* When the commit itself fails (disk full, I/O error, the database locked by
  someone else for longer than ``busy_timeout``), every job of the batch gets
  ``StorageUnavailable``; the CoAP side turns that into 5.03 + Max-Age so the
  device keeps its readings and retries.
* Reads run on a small thread pool with per-thread read-only connections
  (WAL lets readers work while the writer commits).

The schema is versioned with ``PRAGMA user_version`` and a list of migrations
applied in order at open.
"""
import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import concurrent.futures
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("eclor.gateway.store")

# Each entry moves the schema from version i to i+1. Never edit an entry that
# has shipped: append a new one.
MIGRATIONS = [
    """
    CREATE TABLE devices (
        ep TEXT PRIMARY KEY,
        type TEXT,                 -- lamp | bin (from et=eclor.TYPE or the inventory)
        zone TEXT, commune TEXT, lat REAL, lon REAL,
        tags TEXT NOT NULL DEFAULT '[]',   -- JSON list
        meta TEXT NOT NULL DEFAULT '{}',   -- JSON object, free inventory metadata
        declared INTEGER NOT NULL DEFAULT 0,
        reg_id TEXT UNIQUE,        -- stable registration id: Location-Path rd/REG_ID
        lt INTEGER, queue INTEGER NOT NULL DEFAULT 0,
        links TEXT,                -- link-format payload of the last registration
        host TEXT, port INTEGER,   -- address the device last registered/updated from
        registered REAL, last_seen REAL, expires REAL,
        online INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE readings (
        device TEXT NOT NULL, name TEXT NOT NULL, t REAL NOT NULL,
        v REAL, vs TEXT, vb INTEGER, unit TEXT,
        PRIMARY KEY (device, name, t)
    ) WITHOUT ROWID;
    CREATE INDEX readings_t ON readings (t);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL, device TEXT, kind TEXT NOT NULL, detail TEXT
    );
    CREATE INDEX events_t ON events (t);
    CREATE TABLE commands (
        id TEXT PRIMARY KEY, device TEXT NOT NULL, action TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,       -- queued | sent | done | failed | expired
        created REAL NOT NULL, updated REAL NOT NULL, expires REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        answer TEXT,               -- JSON: the device's result or the reason
        grp TEXT                   -- group command id, if part of one
    );
    CREATE INDEX commands_device ON commands (device, state);
    CREATE INDEX commands_state ON commands (state);
    CREATE TABLE hourly (
        device TEXT NOT NULL, name TEXT NOT NULL, hour INTEGER NOT NULL,
        n INTEGER NOT NULL, sum REAL, min REAL, max REAL, last REAL,
        PRIMARY KEY (device, name, hour)
    ) WITHOUT ROWID;
    """,
]


class StorageUnavailable(Exception):
    """The write was not made durable; the caller should ask the device to retry."""
    http_status = 503


def _connect(path, readonly=False, busy_ms=1000):
    if readonly:
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, check_same_thread=False)
    else:
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA busy_timeout=%d" % busy_ms)
    return con


def migrate(con):
    """Bring the schema to the newest version; returns (old, new) versions."""
    old = con.execute("PRAGMA user_version").fetchone()[0]
    if old > len(MIGRATIONS):
        raise RuntimeError("database schema v%d is newer than this gateway (v%d)"
                           % (old, len(MIGRATIONS)))
    for v in range(old, len(MIGRATIONS)):
        con.execute("BEGIN IMMEDIATE")
        try:
            # statements one by one: executescript() would COMMIT on its own
            for stmt in MIGRATIONS[v].split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute("PRAGMA user_version=%d" % (v + 1))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return old, len(MIGRATIONS)


class Store:
    """SQLite store. ``write(fn, *a)`` -> awaitable result of fn(con, *a), durable.

    ``read(fn, *a)`` -> awaitable result of fn(con, *a) on a read connection.
    ``open()``/``close()`` are synchronous (called before/after the loop runs or
    from a thread); ``close`` drains every queued write first.
    """

    def __init__(self, path, batch_max=1024, busy_ms=1000, metrics=None):
        self.path = path
        self.batch_max = batch_max
        self.busy_ms = busy_ms
        self.metrics = metrics
        self._q = queue.SimpleQueue()
        self._thread = None
        self._readers = None
        self._local = threading.local()
        self._outbox = []            # jobs of this loop iteration, not yet handed over
        self.available = True        # False after a failed commit, until one succeeds
        self._submitted = 0          # jobs from the loop (written by the loop thread only)
        self._done = 0               # ... of which committed or failed (writer thread only)
        self.commits = 0
        self.last_commit_s = 0.0

    # -- lifecycle --------------------------------------------------------
    def open(self):
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        con = _connect(self.path, busy_ms=self.busy_ms)
        con.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is synced at every commit -- that is the durability a
        # 2.04 promises. Group commit amortises it.
        con.execute("PRAGMA synchronous=FULL")
        # Checkpoints (copying the WAL into the database, with their own
        # fsyncs) run on a separate thread and connection, so that a commit
        # never pays for one: a 2.04 waits for one WAL fsync only.
        con.execute("PRAGMA wal_autocheckpoint=0")
        old, new = migrate(con)
        if old != new:
            log.info("database %s migrated from schema v%d to v%d", self.path, old, new)
        self._con = con
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eclor-read")
        self._thread = threading.Thread(target=self._writer, name="eclor-writer", daemon=True)
        self._thread.start()
        self._stop_ckpt = threading.Event()
        self._ckpt = threading.Thread(target=self._checkpointer, name="eclor-checkpoint", daemon=True)
        self._ckpt.start()
        return self

    def _checkpointer(self, every_s=1.0):
        con = _connect(self.path, busy_ms=self.busy_ms)
        try:
            while not self._stop_ckpt.wait(every_s):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as e:
                    log.debug("checkpoint: %s", e)
        finally:
            con.close()

    def close(self):
        """Commit everything queued, stop the writer, close connections."""
        if self._thread is None:
            return
        self._q.put(None)
        self._thread.join()
        self._thread = None
        self._stop_ckpt.set()
        self._ckpt.join()
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:  # a reader elsewhere: the WAL stays, no harm
            log.debug("final checkpoint: %s", e)
        self._readers.shutdown(wait=True)
        self._con.close()

    @property
    def pending(self):
        """Jobs queued and not yet committed (two single-writer counters: no lock)."""
        return self._submitted - self._done

    # -- writes -----------------------------------------------------------
    def write(self, fn, *args):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._submitted += 1
        # Jobs submitted during one event-loop iteration are handed to the
        # writer in one queue item: one thread wake-up instead of one per job.
        if not self._outbox:
            loop.call_soon(self._handover)
        self._outbox.append((fn, args, fut, loop))
        return fut

    def _handover(self):
        items, self._outbox = self._outbox, []
        self._q.put(items)

    def write_nowait(self, fn, *args):
        """Queue a write whose outcome nobody awaits (state changes, events)."""
        loop = asyncio.get_running_loop()
        self._submitted += 1
        if not self._outbox:
            loop.call_soon(self._handover)
        self._outbox.append((fn, args, None, loop))

    def run_sync(self, fn, *args):
        """Run fn on the writer thread; return once it is committed (outside the loop)."""
        fut = concurrent.futures.Future()
        self._q.put([(fn, args, fut, None)])
        return fut.result()

    def _writer(self):
        con = self._con
        q = self._q
        stop = False
        while not stop:
            items = q.get()
            if items is None:
                break
            batch = list(items)
            # Group commit: everything that arrived meanwhile goes in this batch.
            while len(batch) < self.batch_max:
                try:
                    items = q.get_nowait()
                except queue.Empty:
                    break
                if items is None:
                    stop = True
                    break
                batch.extend(items)
            self._run_batch(con, batch)
        # drain: nothing may be left un-committed at shutdown
        rest = []
        while True:
            try:
                items = q.get_nowait()
            except queue.Empty:
                break
            if items is not None:
                rest.extend(items)
        if rest:
            self._run_batch(con, rest)

    def _run_batch(self, con, batch):
        t0 = time.perf_counter()
        try:
            results = self._single(con, batch)
            if results is None:
                results = self._transaction(con, batch)
        except Exception as e:  # the batch could not commit
            results = self._unavailable(con, batch, e)
        else:
            if not self.available:
                log.warning("storage available again")
            self.available = True
        self._finish(batch, results, time.perf_counter() - t0)

    @staticmethod
    def _single(con, batch):
        """The common batch -- readings only, at most _ONE_STMT rows -- as ONE
        autocommit INSERT: SQLite wraps it in its own transaction and commits
        it (WAL fsync, synchronous=FULL) before the statement returns, so it
        is exactly as durable as BEGIN/INSERT/COMMIT, with one statement
        instead of three. That matters because sqlite3 drops the GIL around
        every prepare/step/reset, and each time the writer must win it back
        from the busy event loop (a 1 ms switch interval each, at worst).
        None when the batch does not qualify or the statement failed for a
        reason of its own (it rolled back as a whole: the general path redoes
        the batch and sorts out which job failed); a storage failure (locked,
        I/O, full) raises, as a failed COMMIT does."""
        if con.in_transaction:  # never: every transaction ends in COMMIT/ROLLBACK
            return None
        rows = []
        for fn, args, fut, loop in batch:
            if fn is not insert_readings:
                return None
            device = args[0]
            rows.extend([(device,) + r for r in args[1]])
            if len(rows) > _ONE_STMT:
                return None
        if not rows:
            return None
        try:
            con.execute(_insert_sql(len(rows)), [x for r in rows for x in r])
        except sqlite3.Error as e:
            if isinstance(e, sqlite3.OperationalError) and _fatal(e):
                raise
            return None
        return [(True, len(args[1])) for fn, args, fut, loop in batch]

    def _transaction(self, con, batch):
        """The batch in one transaction; raises when it cannot commit."""
        con.execute("BEGIN IMMEDIATE")
        try:
            # Fast path: no per-job SAVEPOINT (two statements per job saved).
            results = self._fast(con, batch)
        except Exception as e:
            if isinstance(e, sqlite3.OperationalError) and _fatal(e):
                raise
            # A job failed: redo the batch with one SAVEPOINT per job so
            # that only the failing job fails.
            con.execute("ROLLBACK")
            con.execute("BEGIN IMMEDIATE")
            results = [self._isolated(con, fn, args) for fn, args, fut, loop in batch]
        con.execute("COMMIT")
        return results

    def _unavailable(self, con, batch, e):
        if con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if self.available:
            log.error("storage unavailable: %s", e)
        self.available = False
        if self.metrics:
            self.metrics.inc("eclor_storage_errors_total")
        return [(False, StorageUnavailable(str(e)))] * len(batch)

    def _finish(self, batch, results, dt):
        self.commits += 1
        self.last_commit_s = dt
        if self.metrics:
            self.metrics.observe("eclor_storage_commit_seconds", dt)
            self.metrics.inc("eclor_storage_batches_total")
        # Resolve futures: one call_soon_threadsafe per loop per batch, not per job.
        by_loop = {}
        for (fn, args, fut, loop), res in zip(batch, results):
            if loop is None and fut is not None:  # run_sync: a thread waits on it
                if res[0]:
                    fut.set_result(res[1])
                else:
                    fut.set_exception(res[1])
            elif fut is not None:
                by_loop.setdefault(loop, []).append((fut, res))
        n = sum(1 for item in batch if item[3] is not None)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:
                pass  # loop closed: nobody is waiting any more
        self._done += n

    # -- reads ------------------------------------------------------------
    @staticmethod
    def _fast(con, batch):
        """Run a batch; the readings of all its insert_readings jobs go in
        multi-row INSERTs. Why: sqlite3 releases the GIL around every step,
        and each time the writer must win it back from the busy event loop.
        One statement for many rows keeps those hand-offs per batch, not per row."""
        results = []
        merged = []
        for fn, args, fut, loop in batch:
            if fn is insert_readings:
                device, rows = args
                merged.extend((device,) + r for r in rows)
                results.append((True, len(rows)))
            else:
                results.append((True, fn(con, *args)))
        if merged:
            insert_rows(con, merged)
        return results

    @staticmethod
    def _isolated(con, fn, args):
        con.execute("SAVEPOINT job")
        try:
            res = (True, fn(con, *args))
        except Exception as e:
            if isinstance(e, sqlite3.OperationalError) and _fatal(e):
                raise  # locked / I/O / full: the whole batch cannot commit
            con.execute("ROLLBACK TO job")
            res = (False, e)
        con.execute("RELEASE job")
        return res

    def _reader_con(self):
        con = getattr(self._local, "con", None)
        if con is None:
            con = _connect(self.path, readonly=True, busy_ms=self.busy_ms)
            self._local.con = con
        return con

    def read(self, fn, *args):
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._readers, lambda: fn(self._reader_con(), *args))


def _fatal(e):
    m = str(e).lower()
    return any(k in m for k in ("locked", "busy", "disk", "i/o", "full", "readonly"))


def _resolve(items):
    for fut, (ok, val) in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(val)
        else:
            fut.set_exception(val)


# ---------------------------------------------------------------------------
# Jobs (run on the writer thread with the write connection) and queries (run
# on a reader thread). Plain functions so they can be tested without a loop.

def j(x):
    return json.dumps(x, separators=(",", ":"), sort_keys=True)


def insert_readings(con, device, rows):
    """rows: (name, t, v, vs, vb, unit). Duplicates (device,name,t) are ignored."""
    con.executemany(
        "INSERT OR IGNORE INTO readings (device,name,t,v,vs,vb,unit) VALUES (?,?,?,?,?,?,?)",
        [(device,) + r for r in rows])
    return len(rows)


_ROW = "(?,?,?,?,?,?,?)"
_CHUNK = 256  # rows per statement (7 parameters each: well under SQLite's limit)
_ONE_STMT = 1024  # most rows a batch may have to go in one autocommit statement
_SQL = {}


def _insert_sql(n):
    """The n-row INSERT (same string for the same n: sqlite3's statement cache
    keeps it prepared)."""
    sql = _SQL.get(n)
    if sql is None:
        sql = ("INSERT OR IGNORE INTO readings (device,name,t,v,vs,vb,unit) VALUES "
               + ",".join([_ROW] * n))
        if n <= 64:
            _SQL[n] = sql
    return sql


def insert_rows(con, rows):
    """Full reading rows (device, name, t, v, vs, vb, unit) in multi-row INSERTs."""
    for i in range(0, len(rows), _CHUNK):
        part = rows[i:i + _CHUNK]
        con.execute(_insert_sql(len(part)), [x for r in part for x in r])


def insert_event(con, t, device, kind, detail=None):
    con.execute("INSERT INTO events (t,device,kind,detail) VALUES (?,?,?,?)",
                (t, device, kind, None if detail is None else j(detail)))


DEVICE_FIELDS = ("ep", "type", "zone", "commune", "lat", "lon", "tags", "meta", "declared",
                 "reg_id", "lt", "queue", "links", "host", "port", "registered",
                 "last_seen", "expires", "online", "created")


def upsert_device(con, d):
    """Write a full device row (dict with DEVICE_FIELDS; tags/meta as Python objects)."""
    row = dict(d)
    row["tags"] = j(row.get("tags") or [])
    row["meta"] = j(row.get("meta") or {})
    cols = ",".join(DEVICE_FIELDS)
    marks = ",".join("?" for _ in DEVICE_FIELDS)
    con.execute("INSERT OR REPLACE INTO devices (%s) VALUES (%s)" % (cols, marks),
                [row.get(k) for k in DEVICE_FIELDS])


def set_device_state(con, ep, kw):
    sets = ",".join("%s=?" % k for k in kw)
    con.execute("UPDATE devices SET %s WHERE ep=?" % sets, list(kw.values()) + [ep])


def load_devices(con):
    out = []
    for r in con.execute("SELECT * FROM devices"):
        d = dict(r)
        d["tags"] = json.loads(d["tags"] or "[]")
        d["meta"] = json.loads(d["meta"] or "{}")
        out.append(d)
    return out


def load_latest(con):
    """Newest reading of every (device, name): the in-memory view the stats use."""
    return con.execute(
        "SELECT r.device, r.name, r.t, r.v, r.vs, r.vb FROM readings r JOIN "
        "(SELECT device, name, MAX(t) AS mt FROM readings GROUP BY device, name) m "
        "ON r.device=m.device AND r.name=m.name AND r.t=m.mt").fetchall()


def insert_command(con, c):
    cur = con.execute(
        "INSERT OR IGNORE INTO commands (id,device,action,params,state,created,updated,expires,attempts,answer,grp)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (c["id"], c["device"], c["action"], j(c.get("params") or {}), c["state"], c["created"],
         c["updated"], c["expires"], c.get("attempts", 0),
         None if c.get("answer") is None else j(c["answer"]), c.get("grp")))
    return cur.rowcount


def update_command(con, cid, state, t, answer=None, attempts=None, only_from=None):
    """Move a command to ``state``; final states are never left (idempotent)."""
    sql = "UPDATE commands SET state=?, updated=?"
    args = [state, t]
    if answer is not None:
        sql += ", answer=?"
        args.append(j(answer))
    if attempts is not None:
        sql += ", attempts=?"
        args.append(attempts)
    sql += " WHERE id=? AND state IN ('queued','sent')"
    args.append(cid)
    return con.execute(sql, args).rowcount


def command_row(r):
    d = dict(r)
    d["params"] = json.loads(d["params"] or "{}")
    d["answer"] = None if d["answer"] is None else json.loads(d["answer"])
    d["ep"] = d["device"]
    d["result"] = d["answer"]
    return d


def open_commands(con):
    return [command_row(r) for r in con.execute(
        "SELECT * FROM commands WHERE state IN ('queued','sent') ORDER BY created")]


def get_command(con, cid):
    r = con.execute("SELECT * FROM commands WHERE id=?", (cid,)).fetchone()
    return None if r is None else command_row(r)


def list_commands(con, device=None, state=None, grp=None, limit=100):
    sql, args = "SELECT * FROM commands WHERE 1=1", []
    for col, val in (("device", device), ("state", state), ("grp", grp)):
        if val is not None:
            sql += " AND %s=?" % col
            args.append(val)
    sql += " ORDER BY created DESC LIMIT ?"
    args.append(limit)
    return [command_row(r) for r in con.execute(sql, args)]


def query_readings(con, device, name=None, since=None, until=None, limit=100):
    sql, args = "SELECT name, t, v, vs, vb, unit FROM readings WHERE device=?", [device]
    if name is not None:
        sql += " AND name=?"
        args.append(name)
    if since is not None:
        sql += " AND t>=?"
        args.append(since)
    if until is not None:
        sql += " AND t<=?"
        args.append(until)
    sql += " ORDER BY t DESC LIMIT ?"
    args.append(limit)
    out = []
    for r in con.execute(sql, args):
        d = dict(r)
        if d["vb"] is not None:
            d["vb"] = bool(d["vb"])
        out.append(d)
    return out


def query_hourly(con, device, name=None, since=None, until=None, limit=100):
    sql = "SELECT name, hour*3600 AS t, n, sum, min, max, last FROM hourly WHERE device=?"
    args = [device]
    for cond, val in (("name=?", name), ("hour>=?", None if since is None else int(since // 3600)),
                      ("hour<=?", None if until is None else int(until // 3600))):
        if val is not None:
            sql += " AND " + cond
            args.append(val)
    sql += " ORDER BY hour DESC, name LIMIT ?"
    args.append(limit)
    out = []
    for r in con.execute(sql, args):
        d = dict(r)
        d["avg"] = d["sum"] / d["n"] if d["n"] else None
        out.append(d)
    return out


def query_events(con, device=None, kind=None, since=None, limit=100):
    sql, args = "SELECT id, t, device, kind, detail FROM events WHERE 1=1", []
    for cond, val in (("device=?", device), ("kind=?", kind), ("t>=?", since)):
        if val is not None:
            sql += " AND " + cond
            args.append(val)
    sql += " ORDER BY t DESC, id DESC LIMIT ?"
    args.append(limit)
    out = []
    for r in con.execute(sql, args):
        d = dict(r)
        d["detail"] = None if d["detail"] is None else json.loads(d["detail"])
        d["ep"] = d["device"]
        out.append(d)
    return out


def energy_since(con, t0):
    """Wh per device since t0 from the monotonic `energy` counter (max - min)."""
    return {r[0]: (r[1] or 0.0) - (r[2] or 0.0) for r in con.execute(
        "SELECT device, MAX(v), MIN(v) FROM readings WHERE name='energy' AND t>=? GROUP BY device",
        (t0,))}


def aggregate_and_expire(con, now, raw_days, agg_days, window_h=48, chunk=20000, aggregate=True):
    """Hourly aggregates of the last ``window_h`` hours (late readings included),
    then drop raw readings older than raw_days and aggregates older than agg_days."""
    h_now = int(now // 3600)
    h0 = h_now - window_h
    if aggregate:
        con.execute(
            "INSERT OR REPLACE INTO hourly (device,name,hour,n,sum,min,max,last) "
            "SELECT device, name, CAST(t/3600 AS INTEGER), COUNT(v), SUM(v), MIN(v), MAX(v), "
            "(SELECT r2.v FROM readings r2 WHERE r2.device=r.device AND r2.name=r.name "
            " AND r2.t >= CAST(r.t/3600 AS INTEGER)*3600 AND r2.t < CAST(r.t/3600 AS INTEGER)*3600+3600 "
            " AND r2.v IS NOT NULL ORDER BY r2.t DESC LIMIT 1) "
            "FROM readings r WHERE t >= ? AND t < ? AND v IS NOT NULL "
            "GROUP BY device, name, CAST(t/3600 AS INTEGER)",
            (h0 * 3600, h_now * 3600))
    # Bounded deletes: a big backlog goes in several jobs (the caller repeats
    # while `more`), so ingest never waits behind one huge transaction.
    raw = con.execute("DELETE FROM readings WHERE (device, name, t) IN (SELECT device, name, t FROM readings "
                      "WHERE t < ? LIMIT ?)", (now - raw_days * 86400, chunk)).rowcount
    agg = con.execute("DELETE FROM hourly WHERE (device, name, hour) IN (SELECT device, name, hour FROM hourly "
                      "WHERE hour < ? LIMIT ?)", (int((now - agg_days * 86400) // 3600), chunk)).rowcount
    ev = con.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE t < ? LIMIT ?)",
                     (now - agg_days * 86400, chunk)).rowcount
    return {"raw_deleted": raw, "hourly_deleted": agg, "events_deleted": ev,
            "more": max(raw, agg, ev) >= chunk}
