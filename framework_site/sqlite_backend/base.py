"""Django's SQLite backend, with writers queued on a file lock instead of SQLite's busy sleeps.

SQLite lets one writer in at a time. A second process's BEGIN IMMEDIATE that finds the write lock taken
is put to sleep by SQLite's busy handler for 1 ms, then 2, 5, 10 ms and so on, however soon the lock is
free again. Agents' one-event requests hold it for about 0.1 ms, so with two web processes about one
BEGIN in nine slept a millisecond or more: measured, 0.22 ms per request on average, about half of what
storing the decision cost (bench/RESULTS.md).

Here every write transaction this backend starts first takes an exclusive `flock` on a file beside the
database (`<database>-writers`), and lets it go when the transaction ends. A writer that finds it taken
polls it at 20 µs doubling to 1 ms, so it gets in within a fraction of the wait SQLite would impose. The
file lock only orders our own writers: SQLite's lock still guards the data, and anything that writes without it
(an autocommit statement, another program) meets the busy timeout exactly as before. A holder that dies
loses its lock with its file descriptor. After the busy timeout (OPTIONS["timeout"]) of waiting, the writer
goes ahead without it and SQLite's own timeout applies. In-memory databases have no file and no lock.

Checkpoints (copying the WAL back into the database file, with its fsyncs) run after the lock is given
back. SQLite runs its automatic checkpoint inside the COMMIT of whichever write passes 1,000 WAL pages,
so that writer held the lock, and every writer queued behind it waited, for the whole checkpoint: with
two web processes, run ends (16 pages each) left the machine idle 18 % of the time. Here each connection
checkpoints (PASSIVE: it never blocks a writer or a reader) after every `CHECKPOINT_EVERY` write
transactions, outside the lock, and SQLite's own checkpoint stays as a bound at `WAL_BOUND_PAGES`, for
connections that never write that often (bench/RESULTS.md).
"""

import fcntl
import os
import sqlite3
import time

from django.db.backends.sqlite3 import base

FIRST_POLL, LAST_POLL = 20e-6, 1e-3
CHECKPOINT_EVERY = 64  # write transactions of one connection between its checkpoints: at most ~1,000 pages
WAL_BOUND_PAGES = 10_000  # SQLite's own automatic checkpoint, past this many pages (~40 MB): the bound


class WriterLock:
    """An exclusive flock on `path`, taken and given back around each write transaction of one connection."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout = path, timeout
        self.fd: int | None = None
        self.pid = 0
        self.held = False

    def acquire(self) -> None:
        if self.fd is None or self.pid != os.getpid():  # a connection inherited across fork opens its own
            self.fd, self.pid = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), os.getpid()
        deadline, pause = None, FIRST_POLL
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.timeout
                elif now >= deadline:
                    return  # SQLite's busy timeout decides from here
                time.sleep(pause)
                pause = min(pause * 2, LAST_POLL)
            else:
                self.held = True
                return

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        if self.fd is not None and self.pid == os.getpid():
            os.close(self.fd)
        self.fd = None


class DatabaseWrapper(base.DatabaseWrapper):
    writer_lock: WriterLock | None = None

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        name = str(self.settings_dict["NAME"])  # the test database's, under tests
        if not (self.is_in_memory_db() or name.startswith("file:")):
            self.writer_lock = WriterLock(f"{name}-writers", float(conn_params.get("timeout", 5)))
            connection.execute(f"PRAGMA wal_autocheckpoint={WAL_BOUND_PAGES}")
            self.writes = 0
        return connection

    def begin_writing(self, mode: str | None = None) -> None:
        """BEGIN `mode` (else the transaction mode of the settings), our writers queued on the file lock first."""
        if self.writer_lock is not None:
            self.writer_lock.acquire()
        try:
            self.connection.execute(f"BEGIN {mode or self.transaction_mode or ''}")
        except BaseException:
            self.done_writing()
            raise

    def end_writing(self, *, commit: bool) -> None:
        """COMMIT (or ROLLBACK) what `begin_writing` began outside Django's transaction management, and let
        the next writer in."""
        try:
            with self.wrap_database_errors:
                (self.connection.commit if commit else self.connection.rollback)()
        finally:
            self.done_writing()

    def done_writing(self) -> None:
        if self.writer_lock is not None:
            self.writer_lock.release()
            self.writes += 1
            if self.writes % CHECKPOINT_EVERY == 0:
                self.checkpoint()

    def checkpoint(self) -> None:
        """Copy what the WAL holds back into the database file as far as no reader still needs it (PASSIVE:
        waits for no one); what it cannot copy now, a later one does."""
        try:
            self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # e.g. the database is gone or read-only: the write itself went through
            pass

    def _start_transaction_under_autocommit(self):
        with self.wrap_database_errors:
            self.begin_writing()

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self.done_writing()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self.done_writing()

    def _close(self):
        try:
            return super()._close()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.close()
                self.writer_lock = None
