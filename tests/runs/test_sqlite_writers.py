"""SQLite: our writers queue on a file lock beside the database (framework_site/sqlite_backend) instead of
sleeping in SQLite's busy handler; nothing is lost and the counters stay exact with writers racing.

The test database is in memory (no file, no lock), so these run against a database file in a child process.
"""

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework_site.sqlite_backend.base import WriterLock
from tests.concurrency import raced_counters

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import fcntl, json, os, sys
import django
django.setup()
from django.core.management import call_command
from django.db import connection, transaction
from runs import rawsql
from runs.models import Run
from tests.concurrency import race_on_one_run

call_command("migrate", verbosity=0)
lock_path = os.environ["SQLITE_PATH"] + "-writers"

def taken() -> bool:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

seen = {"before": taken()}
with transaction.atomic():
    Run.objects.filter(run_id="none").update(goal_id="x")
    seen["in atomic"] = taken()
seen["after atomic"] = taken()
with rawsql.immediate_transaction(connection):
    seen["in append transaction"] = taken()
seen["after append transaction"] = taken()
try:
    with transaction.atomic():
        seen["before failing"] = taken()
        raise RuntimeError("boom")
except RuntimeError:
    pass
seen["after rollback"] = taken()

from framework_site.sqlite_backend import base as backend
checkpoints = []
checkpoint = backend.DatabaseWrapper.checkpoint
backend.DatabaseWrapper.checkpoint = lambda self: checkpoints.append(taken()) or checkpoint(self)
with connection.cursor() as cursor:
    cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
Run.objects.create(run_id="wal", goal_id="g")
for n in range(300):  # 300 write transactions, as every ingest write is one, a page or more each
    with transaction.atomic():
        Run.objects.filter(run_id="wal").update(narrative=str(n))
backend.DatabaseWrapper.checkpoint = checkpoint  # the racing writers below hold the lock for each other
seen["checkpoints, lock taken"] = checkpoints
seen["WAL frames"] = connection.connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
seen["WAL bound"] = connection.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0]

seen["errors"], seen["live"], seen["recount"] = race_on_one_run("busy", threads=4, per_thread=25)
print(json.dumps(seen))
"""


def test_writers_hold_the_file_lock_only_inside_a_transaction_and_racing_writers_lose_nothing(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "framework_site.settings", "DATABASE_URL": "",
           "SQLITE_PATH": str(tmp_path / "db.sqlite3"), "FRAMEWORK_VAR_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert {name: seen[name] for name in ("before", "in atomic", "after atomic", "in append transaction",
                                          "after append transaction", "before failing", "after rollback")} == {
        "before": False, "in atomic": True, "after atomic": False, "in append transaction": True,
        "after append transaction": False, "before failing": True, "after rollback": False}
    assert seen["errors"] == []
    assert seen["live"] == raced_counters(100)
    assert seen["live"] == seen["recount"]


def test_a_writer_stuck_holding_the_lock_delays_others_only_up_to_the_timeout(tmp_path):
    path = str(tmp_path / "db.sqlite3-writers")
    stuck, waiting = WriterLock(path, timeout=5), WriterLock(path, timeout=0.05)
    stuck.acquire()
    assert stuck.held
    waiting.acquire()  # gives up after its timeout: SQLite's own busy timeout decides from there
    assert not waiting.held
    stuck.release()
    waiting.acquire()
    assert waiting.held
    fd = os.open(path, os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    waiting.close()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # closing the connection gives the lock back
    os.close(fd)


def test_checkpoints_run_after_the_writer_lock_is_given_back_and_keep_the_wal_short(tmp_path):
    """A checkpoint copies the WAL back into the database file, fsyncs included: run inside a COMMIT, as
    SQLite's automatic one is, it would keep every queued writer waiting. Each connection checkpoints
    after every 64 write transactions once the lock is free, so 300 writes leave under 64 in the WAL."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "framework_site.settings", "DATABASE_URL": "",
           "SQLITE_PATH": str(tmp_path / "db.sqlite3"), "FRAMEWORK_VAR_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(seen["checkpoints, lock taken"]) >= 300 // 64
    assert not any(seen["checkpoints, lock taken"])  # each ran with the writer lock free
    assert 0 < seen["WAL frames"] < 64  # the writes since the last checkpoint, not all 300
    assert seen["WAL bound"] == 10_000  # SQLite's own, for connections that seldom write
