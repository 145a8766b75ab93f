"""URL mode: the Runtime's events go to a queue; one daemon thread ships them to the dashboard.

The agent's thread only serialises the event (one pydantic call, to compact JSON text: what is queued,
spooled and posted, never encoded again) and appends it to an in-memory deque. The sender thread sends batches
(every ``flush_interval`` seconds, or at once when ``batch_size`` events wait) and, when
the dashboard cannot take them (connection error, timeout, 5xx, 429, rejected key), writes
them to the disk spool and replays the spool, in order, once the dashboard answers again.
While anything of ours is spooled, newer events go through the spool too, so a later event
is never sent before an earlier one.

``end_run`` does not wait for the dashboard: it hands the run over and delivery goes on in the background,
as in other tracing SDKs. At interpreter exit every open transport gets one shared, bounded flush
(``flush_timeout``); what is still undelivered then goes to the spool, for the next Runtime or
``python -m framework flush``. ``flush(timeout)`` waits on demand.
"""

import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Any

from framework.transport.batch import Delivery, deliver
from framework.transport.http import Client
from framework.transport.spool import Spool, default_spool_dir
from framework.transport.wire import to_wire_json

logger = logging.getLogger("framework.transport")

Item = tuple[int, dict[str, Any] | str]  # (sequence number, wire event: a dict or its JSON text)
_DICT_EVENT_BYTES = 1024  # what a queued dict event is counted as against max_queue_bytes


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        logger.warning("%s must be a number of seconds, got %r; using %s", name, raw, default)
        return default


def _weight(event: dict[str, Any] | str) -> int:
    return len(event) if isinstance(event, str) else _DICT_EVENT_BYTES


class Transport:
    """Ships one Runtime's events to one dashboard. ``stats``: sent, spooled, replayed, rejected, dropped."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        batch_size: int = 1000,
        flush_interval: float = 0.2,
        flush_timeout: float | None = None,
        max_queue: int = 20_000,
        max_queue_bytes: int = 24 * 1024 * 1024,
        spool_dir: str | os.PathLike | None = None,
        timeout: float = 10.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
    ):
        self.client = Client(url, api_key=api_key, timeout=timeout)
        self.url = self.client.url
        if not self.client.api_key:
            logger.warning("No API key for %s: pass api_key= or set FRAMEWORK_API_KEY", self.url)
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.flush_timeout = _env_float("FRAMEWORK_FLUSH_TIMEOUT", 5.0) if flush_timeout is None else flush_timeout
        # The queue's bound, in events and in bytes of JSON: past either, the queue goes to the spool.
        self.max_queue = max(1, max_queue)
        self.max_queue_bytes = max(1, max_queue_bytes)
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        directory = default_spool_dir(self.url) if spool_dir is None else os.path.join(spool_dir, default_spool_dir(self.url).name)
        self.spool = Spool(directory)
        self.spool.remember_url(self.url)
        self.stats = {"sent": 0, "spooled": 0, "replayed": 0, "rejected": 0, "dropped": 0}

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # Events only, no (seq, event) pairs: 20,000 live tuples made the garbage collector cost the agent's
        # thread ~0.1 s more per 10,000 decisions. The queue always holds seqs _seq - len + 1 .. _seq.
        self._queue: deque[dict[str, Any] | str] = deque()
        self._queued_bytes = 0  # about: JSON text lengths, _DICT_EVENT_BYTES per dict event
        self._taken: list[Item] | None = None  # popped from the queue, not yet delivered or spooled
        self._abandoned = False  # close() spooled the taken batch itself
        self._seq = 0
        self._spool_writes = 0  # spool writes so far; replayed_upto = the count a complete replay covered
        self._replayed_upto = 0
        self._wake = threading.Event()
        self._resume_at = 0.0
        self._backoff = 0.0
        self._min_interval = 0.0  # after a 429: the least time between two requests
        self._last_request = 0.0
        self._down = False
        self._auth_warned = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"framework-transport {self.url}", daemon=True)
        self._thread.start()
        with _open_lock:
            _open.add(self)

    # === THE AGENT'S SIDE: never waits on the network ===

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        # Serialised here, once, to compact JSON text: the models are live, and text is what is sent.
        self.enqueue(to_wire_json(kind, payload))

    def enqueue(self, event: dict[str, Any] | str) -> None:
        overflow = None
        weight = _weight(event)
        with self._lock:
            self._seq += 1
            self._queue.append(event)
            self._queued_bytes += weight
            size = len(self._queue)
            # Past the bound (a slow dashboard), or past one batch while it is known to be down (nothing is
            # gained by holding more, and an agent can outrun the sender's spills by far): to disk, not RAM.
            bound = self.batch_size if self._down else self.max_queue
            if size > bound or self._queued_bytes > self.max_queue_bytes or self._closed:
                overflow = self._take(size)
        if overflow is not None:
            self._to_spool(overflow)
        elif size >= self.batch_size and not self._wake.is_set():
            self._wake.set()  # once per sender cycle, not per event while a batch is in flight

    def _take(self, count: int) -> list[Item]:
        """Pop the oldest ``count`` queued events as (seq, event) pairs. The caller holds the lock."""
        first = self._seq - len(self._queue) + 1
        if count >= len(self._queue):
            events = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
        else:
            events = [self._queue.popleft() for _ in range(count)]
            self._queued_bytes -= sum(_weight(event) for event in events)
        return list(enumerate(events, first))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event so far is delivered or safely spooled; False if the time ran out."""
        timeout = self.flush_timeout if timeout is None else timeout
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._queue and self._taken is None, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush (bounded), spool whatever is still in flight, stop the thread. Idempotent."""
        if self._closed:
            return
        with _open_lock:
            _open.discard(self)
        delivered = self.flush(timeout)
        with self._lock:
            self._closed = True
            leftovers = self._take(len(self._queue))
            if not delivered and self._taken is not None:
                # The sender is stuck in a request: keep its batch too (a duplicate is harmless, ids are idempotent).
                leftovers = self._taken + leftovers
                self._abandoned = True
        self._to_spool(leftovers)
        self._wake.set()
        self._thread.join(timeout=0.5)
        self.spool.close()

    # === THE SENDER THREAD ===

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closed:
                break
            try:
                self._cycle()
            except Exception:  # the sender must outlive any surprise; the events stay queued or spooled
                logger.exception("framework transport: unexpected error; will retry")
                self._enter_backoff(Delivery(problem="internal error"))
            with self._idle:
                self._idle.notify_all()

    def _cycle(self) -> None:
        if time.monotonic() < self._resume_at:
            self._spill()  # waiting out a back-off: keep memory small and the order intact
            return
        if self._spool_writes != self._replayed_upto or self.spool.pending():
            self._spill()
            mark = self._spool_writes
            before = self.stats["replayed"]
            outcome = self.spool.replay(self._send_replayed, batch_size=self.batch_size)
            if self.stats["replayed"] > before:
                logger.info("Replayed %d spooled events to %s", self.stats["replayed"] - before, self.url)
            if outcome != "done":
                if outcome == "locked":  # another process is replaying this spool; ours waits its turn
                    self._resume_at = time.monotonic() + self.backoff_min
                return
            self._replayed_upto = mark  # a write after the mark (an overflow) sends us round again
        self._send_queue()

    def _send_queue(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._spool_writes != self._replayed_upto or self._closed:
                    return
                batch = self._take(self.batch_size)
                self._taken = batch
            result = self._deliver([event for _, event in batch])
            self.stats["sent"] += result.accepted
            if not result.ok:  # known down before spooling, so the agent's side stops queueing at once
                self._enter_backoff(result)
            with self._lock:
                abandoned, self._abandoned = self._abandoned, False
            if not result.ok and not abandoned:
                undelivered = {id(event) for event in result.undelivered}
                self._to_spool([item for item in batch if id(item[1]) in undelivered])
                self._spill()
            with self._idle:
                self._taken = None
                self._idle.notify_all()
            if not result.ok:
                return
            self._recovered()

    def _send_replayed(self, events: list[dict[str, Any]]) -> bool:
        result = self._deliver(events)
        self.stats["replayed"] += result.accepted
        if not result.ok:
            self._enter_backoff(result)
            return False
        self._recovered()
        return True

    def _deliver(self, events: list[dict[str, Any]]) -> Delivery:
        wait = self._last_request + self._min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
        result = deliver(self.client, events, batch_size=self.batch_size)
        self.stats["rejected"] += result.rejected
        if result.auth_failed and not self._auth_warned:
            self._auth_warned = True
            logger.warning(
                "API key rejected: %s. Events are kept in the spool at %s; fix the key, then run "
                "`python -m framework flush --to %s` (or start a Runtime with the right key).",
                result.problem, self.spool.directory, self.url,
            )
        return result

    # === SPOOL AND BACK-OFF ===

    def _spill(self) -> None:
        """Move everything queued to the spool (one write, one fsync)."""
        with self._lock:
            if not self._queue:
                return
            items = self._take(len(self._queue))
            self._taken = items
        self._to_spool(items)
        with self._idle:
            self._taken = None
            self._idle.notify_all()

    def _to_spool(self, items: list[Item]) -> None:
        if not items:
            return
        try:
            self.spool.append(items)
        except OSError as exc:
            self.stats["dropped"] += len(items)
            logger.error("Could not write %d events to the spool at %s (%s): they are lost", len(items), self.spool.directory, exc)
            return
        with self._lock:
            self.stats["spooled"] += len(items)
            self._spool_writes += 1

    def _enter_backoff(self, result: Delivery) -> None:
        if result.retry_after is not None:
            delay = min(result.retry_after, 300.0)
            self._min_interval = min(max(self._min_interval * 2, delay / 2, 0.1), 10.0)
        else:
            self._backoff = min(max(self._backoff * 2, self.backoff_min), self.backoff_max)
            delay = self._backoff
        self._resume_at = time.monotonic() + delay
        if not self._down:
            self._down = True
            logger.warning("Dashboard %s cannot take events now (%s); spooling them to %s and retrying",
                           self.url, result.problem, self.spool.directory)

    def _recovered(self) -> None:
        self._backoff = 0.0
        self._min_interval = self._min_interval / 2 if self._min_interval > 0.05 else 0.0
        if self._down:
            self._down = False
            logger.info("Dashboard %s reachable again", self.url)


_open: set[Transport] = set()  # transports not closed yet, for the exit flush
_open_lock = threading.Lock()


@atexit.register
def _close_at_exit() -> None:
    """One flush deadline for all open transports: N runtimes do not make the exit wait N times."""
    with _open_lock:
        transports = list(_open)
    deadline = time.monotonic() + max((t.flush_timeout for t in transports), default=0.0)
    for transport in transports:
        transport.close(timeout=max(0.0, deadline - time.monotonic()))


class RemoteStorage:
    """``runtime.storage`` in URL mode: the transport delivers the runs, so save_run only hurries it on."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.base_path = transport.url

    def save_run(self, run) -> None:
        # The run's events are queued already: start sending them now, without waiting for delivery.
        self.transport.flush(timeout=0)

    def _query(self):
        from framework.transport.remote import RemoteQuery

        return RemoteQuery(self.transport.url, api_key=self.transport.client.api_key)

    def load_run(self, run_id: str):
        return self._query().get_full_run(run_id)

    def load_summary(self, run_id: str):
        return self._query().get_run_summary(run_id)


def attach_url_mode(runtime, url: str, *, api_key: str | None = None, **options: Any) -> Transport:
    """Give a Runtime its URL mode: ``runtime.transport``, the event sink, and ``runtime.storage``."""
    transport = Transport(url, api_key=api_key, **options)
    runtime.transport = transport
    runtime._sink = transport
    runtime.storage = RemoteStorage(transport)
    return transport
