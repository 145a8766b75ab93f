"""The disk spool: events the dashboard could not take yet, replayed later in order, exactly once.

Layout under one directory per dashboard (``~/.framework/spool/<sha256 of the URL>[:16]/``):

    {writer}-{first_seq:012d}.jsonl          append-only segments, one wire event per line
    {writer}-{first_seq:012d}.jsonl.offset   bytes of the segment already delivered
    .replay.lock                             flock'ed by whoever is replaying

``writer`` = start time (ns) + pid + a counter, so segments sort in the order they were
written, and one writer's events sort by their sequence number. A writer holds an
exclusive flock on the segment it is appending to; a segment nobody holds is sealed
and may be deleted once fully delivered. Lines are fsynced per write, not per event.
"""

import fcntl
import hashlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from framework.transport.wire import encode
from framework.utils.io import atomic_write

logger = logging.getLogger("framework.transport")

_writer_counter = itertools.count()
SEGMENT_MAX_BYTES = 16 * 1024 * 1024
WRITE_CHUNK_BYTES = 1024 * 1024
LOCK_NAME = ".replay.lock"


def default_spool_dir(url: str) -> Path:
    digest = hashlib.sha256(url.rstrip("/").encode("utf-8")).hexdigest()[:16]
    return spool_root() / digest


def spool_url(directory: Path) -> str | None:
    try:
        return (directory / ".url").read_text().strip() or None
    except OSError:
        return None


def spool_root() -> Path:
    return Path(os.environ.get("FRAMEWORK_SPOOL_DIR") or os.path.join(os.path.expanduser("~"), ".framework", "spool"))


def _read_offset(segment: Path) -> int:
    try:
        return int(Path(f"{segment}.offset").read_text() or 0)
    except (OSError, ValueError):
        return 0


def _segments(directory: Path) -> list[Path]:
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".jsonl") and not n.startswith("."))
    except FileNotFoundError:
        return []
    return [directory / name for name in names]


def _remove(segment: Path) -> None:
    for path in (segment, Path(f"{segment}.offset")):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


class Spool:
    """One writer's view of a spool directory (any number of writers may share it)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = f"{time.time_ns():020d}-{os.getpid()}-{next(_writer_counter)}"
        self._lock = threading.Lock()
        self._active: Path | None = None
        self._active_fd: int | None = None
        self._active_last_seq = -1
        self._active_size = 0

    def remember_url(self, url: str) -> None:
        """Note which dashboard this spool belongs to, so `python -m framework flush` can find it."""
        marker = self.directory / ".url"
        if not marker.exists():
            atomic_write(marker, url)

    # === WRITING ===

    def append(self, events: list[tuple[int, dict[str, Any] | str]]) -> None:
        """Write (seq, event) pairs durably: one fsync for the lot (events as dicts or JSON text)."""
        if not events:
            return
        data = _lines(events)
        first_seq, last_seq = events[0][0], events[-1][0]
        with self._lock:
            if self._active_fd is not None and first_seq > self._active_last_seq and self._active_size < SEGMENT_MAX_BYTES:
                self._active_size += self._write(self._active_fd, data)
            elif self._active_fd is not None and first_seq <= self._active_last_seq:
                # Older than what the open segment holds: a segment of their own, which sorts before it.
                fd, _path = self._open_segment(first_seq)
                self._write(fd, data)
                os.close(fd)
                return
            else:
                self._seal_active()
                self._active_fd, self._active = self._open_segment(first_seq)
                self._active_size += self._write(self._active_fd, data)
            self._active_last_seq = last_seq

    def _open_segment(self, first_seq: int) -> tuple[int, Path]:
        for attempt in itertools.count():
            suffix = f"-{attempt}" if attempt else ""
            path = self.directory / f"{self._writer}-{first_seq:012d}{suffix}.jsonl"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd, path
        raise AssertionError("unreachable")

    def _write(self, fd: int, data: Iterator[bytes]) -> int:
        written = 0
        for chunk in data:
            while chunk:
                done = os.write(fd, chunk)
                written += done
                chunk = chunk[done:]
        os.fsync(fd)
        return written

    def _seal_active(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)  # releases the flock: the segment is sealed
        self._active, self._active_fd, self._active_last_seq, self._active_size = None, None, -1, 0

    def close(self) -> None:
        with self._lock:
            self._seal_active()

    # === READING ===

    def pending(self) -> bool:
        """Whether any segment (ours or another writer's) holds undelivered lines."""
        for segment in _segments(self.directory):
            try:
                if segment.stat().st_size > _read_offset(segment):
                    return True
            except FileNotFoundError:
                continue
        return False

    def replay(self, send: Callable[[list[dict[str, Any]]], bool], *, batch_size: int = 500) -> str:
        """Deliver every spooled line in order through ``send(events) -> delivered?``.

        Returns "done", "failed" (send said stop; the rest stays spooled) or "locked"
        (another process or thread is replaying this spool right now).
        """
        lock_fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "locked"
            for segment in _segments(self.directory):
                if not self._replay_segment(segment, send, batch_size):
                    return "failed"
            return "done"
        finally:
            os.close(lock_fd)

    def _replay_segment(self, segment: Path, send, batch_size: int) -> bool:
        """Deliver one segment's lines from its offset, a batch at a time: only the batch being sent is in
        memory (a 16 MB segment read whole, and split, cost an agent ~30 MB each time a retry found its
        dashboard still down). The offset moves past each delivered batch."""
        position = _read_offset(segment)
        try:
            handle = open(segment, "rb")
        except FileNotFoundError:
            return True
        with handle:
            handle.seek(position)
            lines = _complete_lines(handle)
            while chunk := list(itertools.islice(lines, batch_size)):
                events = []
                for line in chunk:
                    try:
                        events.append(json.loads(line))
                    except ValueError:
                        logger.warning("Skipping a corrupt line in spool segment %s", segment)
                if events and not send(events):
                    return False
                position += sum(len(line) for line in chunk)
                atomic_write(f"{segment}.offset", str(position))
        self._discard_if_done(segment, position)
        return True

    def _discard_if_done(self, segment: Path, position: int) -> None:
        with self._lock:
            if segment == self._active:
                if os.fstat(self._active_fd).st_size == position:
                    self._seal_active()
                    _remove(segment)
                return
        try:
            fd = os.open(segment, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return  # its writer is alive and may append more
        try:
            os.lseek(fd, position, os.SEEK_SET)
            rest = os.read(fd, SEGMENT_MAX_BYTES * 2)
            if b"\n" in rest:
                return  # its writer appended more before sealing it: the next replay delivers that
            if rest:
                # A torn last line (its writer died mid-write): nothing more will ever come.
                logger.warning("Dropping a torn last line of spool segment %s", segment)
            _remove(segment)
        finally:
            os.close(fd)


def _complete_lines(handle) -> Iterator[bytes]:
    """The lines of an open segment from where it stands, each with its newline, up to the last complete
    one: a line its writer is still writing is left for a later replay."""
    for line in handle:
        if not line.endswith(b"\n"):
            return
        yield line


def _lines(events: list[tuple[int, dict[str, Any] | str]]) -> Iterator[bytes]:
    """The events as JSON lines in UTF-8, about WRITE_CHUNK_BYTES at a time: an overflow of 20,000 events
    (what an agent queues while its dashboard is down) is never copied whole in memory, only the chunk."""
    lines: list[str] = []
    size = 0
    for _, event in events:
        lines.append(encode(event))
        size += len(lines[-1])
        if size >= WRITE_CHUNK_BYTES:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines, size = [], 0
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")
