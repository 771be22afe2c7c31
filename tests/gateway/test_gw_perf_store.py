"""Group commit fast paths of the store (gateway/store.py): a readings-only batch
goes to SQLite as ONE autocommit INSERT -- and must stay exactly as durable and
as careful with bad jobs and duplicates as the general BEGIN/.../COMMIT path."""
import asyncio
import sqlite3
import threading

import pytest

from eclor.gateway import store as st
from eclor.gateway.metrics import Metrics


def _reading(i, name="p"):
    return (name, 1000000000.0 + i, float(i), None, None, "W")


def _traced(s):
    """Statements the writer connection runs (recorded on the writer thread)."""
    seen = []
    s._con.set_trace_callback(lambda sql: seen.append(sql.split(" ", 3)[:3]))
    return seen


def _count(path, sql="SELECT COUNT(*) FROM readings"):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def test_readings_batch_is_one_autocommit_statement_and_durable(tmp_path):
    path = str(tmp_path / "db.sqlite")
    s = st.Store(path, metrics=Metrics()).open()
    gate = threading.Event()

    async def scenario():
        blocker = s.write(lambda con: gate.wait(5))
        await asyncio.sleep(0.05)  # the blocker is on the writer: what follows piles up
        seen = _traced(s)
        futs = [s.write(st.insert_readings, "d%d" % (i % 4), [_reading(i), _reading(i, "q")])
                for i in range(40)]
        # a device re-sending (same device, name, t) in the same batch
        futs.append(s.write(st.insert_readings, "d0", [_reading(0), _reading(0, "q")]))
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in futs)  # nothing acknowledged before its commit
        gate.set()
        await blocker
        assert await asyncio.gather(*futs) == [2] * 41
        # acknowledged = visible to an independent connection, stored once
        assert _count(path) == 80
        # the blocker's COMMIT, then the whole readings batch in one statement
        assert [x[0] for x in seen] == ["COMMIT", "INSERT"], seen
        assert not s._con.in_transaction
        # re-sent in a later batch: still stored once
        await s.write(st.insert_readings, "d1", [_reading(1), _reading(1, "q")])
        assert _count(path) == 80
    asyncio.run(scenario())
    s.close()


def test_bad_job_in_a_readings_batch_fails_alone(tmp_path):
    path = str(tmp_path / "db.sqlite")
    s = st.Store(path, metrics=Metrics()).open()
    gate = threading.Event()

    async def scenario():
        blocker = s.write(lambda con: gate.wait(5))
        await asyncio.sleep(0.05)
        good = [s.write(st.insert_readings, "d", [_reading(i)]) for i in range(5)]
        bad = s.write(st.insert_readings, "d", [("p", 1000000100.0, 1.0)])  # a row too short
        good.append(s.write(st.insert_readings, "e", [_reading(7)]))
        gate.set()
        await blocker
        assert await asyncio.gather(*good) == [1] * 6
        with pytest.raises(sqlite3.ProgrammingError):
            await bad
        assert _count(path) == 6
        assert s.available
    asyncio.run(scenario())
    s.close()


def test_mixed_batch_takes_the_transaction_path(tmp_path):
    path = str(tmp_path / "db.sqlite")
    s = st.Store(path, metrics=Metrics()).open()
    gate = threading.Event()

    async def scenario():
        blocker = s.write(lambda con: gate.wait(5))
        await asyncio.sleep(0.05)
        seen = _traced(s)
        r = s.write(st.insert_readings, "d", [_reading(1)])
        s.write_nowait(st.insert_event, 1.0e9, "d", "ev:x", {"active": True})
        gate.set()
        await blocker
        assert await r == 1
        await s.write(lambda con: None)  # after the event's commit
        # the blocker's COMMIT, then the reading and the event in one transaction
        assert [x[0] for x in seen][:5] == ["COMMIT", "BEGIN", "INSERT", "INSERT", "COMMIT"], seen
        assert _count(path) == 1 and _count(path, "SELECT COUNT(*) FROM events") == 1
    asyncio.run(scenario())
    s.close()


def test_locked_database_fails_the_batch_once_then_recovers(tmp_path):
    path = str(tmp_path / "db.sqlite")
    m = Metrics()
    s = st.Store(path, busy_ms=300, metrics=m).open()

    async def scenario():
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(st.StorageUnavailable):
            await s.write(st.insert_readings, "d", [_reading(1)])
        # one busy wait, not one for the single statement and one more for the retry
        assert loop.time() - t0 < 0.55
        assert not s.available and m.get("eclor_storage_errors_total") == 1
        locker.execute("ROLLBACK")
        locker.close()
        assert await s.write(st.insert_readings, "d", [_reading(1)]) == 1
        assert s.available and not s._con.in_transaction
        assert _count(path) == 1
    asyncio.run(scenario())
    s.close()
