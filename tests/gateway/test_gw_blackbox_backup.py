"""The backup procedure of docs/operations.md, on a gateway under load:
`sqlite3 eclor.db ".backup 'FILE'"` while readings are being acknowledged
gives a consistent copy holding every reading acknowledged before it began,
and the gateway keeps answering throughout."""
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest

from test_gw_blackbox_daemon import loadgen, pytestmark  # noqa: F401  (same skip rule)
from test_gw_blackbox_daemon import gateways  # noqa: F401  (fixture)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="sqlite3 command-line tool not installed")
def test_online_backup_while_ingesting(gateways, tmp_path):
    gw = gateways().start()
    db = os.path.join(gw.data, "eclor.db")
    assert os.path.exists(db), os.listdir(gw.data)
    lg = loadgen.LoadGen("127.0.0.1", gw.coap_port, devices=4, window=8,
                         prefix="bk-" + uuid.uuid4().hex[:4], ack_timeout=1.0, keep_acked=True)
    lg.register_all()
    t = threading.Thread(target=lg.run, args=(3.0,), kwargs={"warmup": 0})
    t.start()
    try:
        time.sleep(1.5)
        before = {d.ep: list(d.acked) for d in lg.devices}
        backup = tmp_path / "eclor-backup.db"
        p = subprocess.run(["sqlite3", db, ".backup '%s'" % backup], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and not p.stderr, p.stderr
    finally:
        t.join(20)
        lg.close()
    assert sum(map(len, before.values())) > 100
    assert lg.ok > 0 and lg.timeouts == 0 and not lg.codes, (lg.codes, lg.timeouts)  # kept answering
    con = sqlite3.connect(backup)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for ep, acked in before.items():
            stored = {t for (t,) in con.execute(
                "SELECT t FROM readings WHERE device=? AND name='power'", (ep,))}
            missing = [bt for bt in acked if float(bt) not in stored]
            assert not missing, "%s: %d acknowledged readings missing from the backup" % (ep, len(missing))
        # registrations are in it too, so a restore needs no re-registration
        eps = {ep for (ep,) in con.execute("SELECT ep FROM devices")}
        assert set(before) <= eps
    finally:
        con.close()
