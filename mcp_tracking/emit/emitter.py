"""The emitter: a bounded queue in front of one sink, drained by one background worker.

``emit()`` is the only thing the request path does: append to a deque and maybe wake the worker.
The worker batches by size and time, runs the processors (JSON-safe, redact, cap), and writes with
retry and backoff. Everything that goes wrong is counted and logged at a limited rate; nothing raises
into the caller.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mcp_tracking._logging import warn_limited
from mcp_tracking.emit.processors import FastPath, Processor, default_processors, ensure_json
from mcp_tracking.emit.spool import Spool, default_spool_dir, fallback_spool_dir
from mcp_tracking.emit.writer import WriterGone, WriterProcess, WriterSpec
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks.base import HealthStore, Sink

DEFAULT_MAX_QUEUE_SIZE = 50_000
DEFAULT_MAX_QUEUE_BYTES = 64 << 20
#: what an event costs the byte budget beyond the payload size its producer counted (envelope, dict, ids)
EVENT_OVERHEAD = 512
DEFAULT_BATCH_SIZE = 1000
DEFAULT_FLUSH_INTERVAL = 0.5
#: the writer process confirms what it was handed (and sends its counters back) at least this often, in
#: seconds, and whenever this many events are unconfirmed; a flush always waits for its confirmation
SYNC_INTERVAL = 1.0
MAX_UNCONFIRMED = 4000
DEFAULT_RETRY_TIMEOUT = 60.0
HEALTH_INTERVAL = 10.0
#: the counters the writer process keeps for what it was handed (added to the emitter's own)
WRITER_COUNTERS = ("written", "spooled", "replayed", "failed_writes", "failed_events", "rejected", "forged",
                   "processor_errors", "retries", "dropped", "dropped_bytes")
MAX_BACKOFF = 2.0


@dataclass
class EmitterStats:
    """The emitter's own health."""

    accepted: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
    dropped_bytes: int = 0  # of dropped: the bytes of the events dropped over the byte budget
    queued_bytes: int = 0  # what the queue holds now, as counted for the byte budget
    failed_writes: int = 0
    failed_events: int = 0
    rejected: int = 0  # of failed_events: events the store refused alone while it took their neighbours
    forged: int = 0  # spooled lines not replayed: no valid mark (written by someone else, or damaged)
    processor_errors: int = 0
    retries: int = 0
    queue_depth: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


#: What the queue holds: a record, or the arguments of one to be built on the worker, off the request path:
#: ``(event_name, user_id, session_id, mcp_name, metadata, ts_us, queued_bytes)`` (how the tracker queues a
#: call's events; ``queued_bytes`` is what the byte budget counts for it).
Queued = EventRecord | tuple[str, str, str | None, str | None, dict[str, Any], int, int]


class Emitter:
    """Queue → batch → processors → sink, on a daemon worker thread.

    Args:
        sink: where batches go.
        processors: per-event chain; defaults to :func:`default_processors`.
        max_queue_size: events held in memory; past it new events are dropped and counted.
        max_queue_bytes: bytes held in memory, as the producers count them (each event's payload size, taken
            on the request path, plus :data:`EVENT_OVERHEAD`); past it new events are dropped and counted
            (default 64 MiB). Payloads larger than the size caps never reach the queue whole: the tracker
            replaces them with their size first.
        batch_size: events per write.
        flush_interval: seconds the worker waits before writing a partial batch.
        retry_timeout: how long a failing batch is retried (exponential backoff from ``retry_backoff`` up
            to 2 s) before it is given up and counted in ``failed_events`` (without a spool); meanwhile new
            events queue up. Batches are written in order: none overtakes one that is being retried.
        spool_dir: where batches go when the store stays down (see :mod:`mcp_tracking.emit.spool`): a
            directory, ``None`` for the default (``MCP_TRACKING_SPOOL_DIR`` or the user's state directory,
            keyed by the store), or ``False`` to never spool.
        spool_after: seconds a batch is retried before it is spooled.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        processors: Sequence[Processor] | None = None,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        retry_backoff: float = 0.05,
        spool_dir: str | os.PathLike[str] | bool | None = None,
        spool_after: float = 2.0,
        writer: WriterSpec | None = None,
    ) -> None:
        if max_queue_size <= 0 or batch_size <= 0 or max_queue_bytes <= 0:
            raise ValueError("max_queue_size, max_queue_bytes and batch_size must be positive")
        if batch_size > max_queue_size:
            raise ValueError("batch_size must be less than or equal to max_queue_size")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self.sink = sink
        self.processors: list[Processor] = list(processors) if processors is not None else default_processors()
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        if retry_timeout < 0 or retry_backoff <= 0:
            raise ValueError("retry_timeout must be >= 0 and retry_backoff > 0")
        self.retry_timeout = retry_timeout
        self.retry_backoff = retry_backoff
        if spool_dir is False:
            self.spool: Spool | None = None
        else:
            self.spool = None
            places = ([default_spool_dir(repr(sink)), fallback_spool_dir(repr(sink))] if spool_dir in (None, True)
                      else [spool_dir])
            problems = []
            for place in places:
                try:
                    self.spool = Spool(place)  # type: ignore[arg-type]
                    break
                except OSError as exc:  # not private, not ours, not writable: no spool rather than an unsafe one
                    problems.append(str(exc))
            if self.spool is None:
                warn_limited("spool-unusable", "mcp_tracking: no spool (%s); a store that stays down loses events",
                             "; ".join(problems))
        self.spool_after = spool_after
        #: with a writer process (see :mod:`mcp_tracking.emit.writer`) the batches are handed to it; the spool
        #: above is then its (it replays it), and ours again only if it dies
        if writer is not None:
            writer.emitter = {"max_queue_size": max_queue_size, "max_queue_bytes": max_queue_bytes,
                              "batch_size": batch_size, "flush_interval": flush_interval,
                              "retry_timeout": retry_timeout, "retry_backoff": retry_backoff,
                              "spool_dir": str(self.spool.dir) if self.spool is not None else False,
                              "spool_after": spool_after}
        self._writer: WriterProcess | None = WriterProcess(writer) if writer is not None else None
        self._child: dict[str, int] = {}  # the writer's counters, as of its last answer
        self._close_timeout: float | None = 10.0
        self._next_replay = 0.0
        self._replay_delay = retry_backoff
        self._tick_callbacks: list[Callable[[], object]] = []
        self._init_state()
        _LIVE.add(self)

    def _init_state(self) -> None:
        self._queue: deque[Queued | _Mark] = deque()
        self._lock = threading.Lock()  # the worker's start and the refused-event count; never taken by emit
        self._wake = threading.Event()
        self._taken = 0  # events the worker has taken from the queue
        # the byte budget: counted in by the producers, out by the worker alone (two counters, so the worker's
        # count is exact; a producer's rare lost increment only makes the budget a little more lenient)
        self._bytes_in = 0
        self._bytes_out = 0
        self._stats = EmitterStats()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._health_at = time.monotonic()

    # -- request path ----------------------------------------------------------------------------

    def emit(self, record: Queued) -> bool:
        """Queue one event (a record, or its arguments: see :data:`Queued`); ``False`` (counted, logged) when
        the queue is full (events or bytes) or the emitter closed. Lock-free: a deque append is atomic, and
        order is queue order."""
        queue = self._queue
        if self._closed or len(queue) >= self.max_queue_size:
            return self._refuse()
        cost = _cost(record)
        if self._bytes_in - self._bytes_out + cost > self.max_queue_bytes:
            return self._refuse(cost)
        self._bytes_in += cost
        queue.append(record)
        if self._worker is None:
            self._start_worker()
        if len(queue) >= self.batch_size:
            self._wake.set()
        return True

    def _refuse(self, cost: int = 0) -> bool:
        with self._lock:
            self._stats.dropped += 1
            if cost:
                self._stats.dropped_bytes += cost
        if self._closed:
            return False
        if cost:
            warn_limited("queue-bytes", "mcp_tracking: event queue over its byte budget (%d bytes); dropping events",
                         self.max_queue_bytes)
        else:
            warn_limited("queue-full", "mcp_tracking: event queue full (%d); dropping events", self.max_queue_size)
        return False

    def add_tick(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the worker about every ``flush_interval`` (session expiry uses this)."""
        self._tick_callbacks.append(callback)
        if self._worker is None:
            self._start_worker()

    # -- lifecycle -------------------------------------------------------------------------------

    def _reinit_after_fork(self) -> None:
        """In a forked child: fresh locks (the parent's may have been held at the fork), no worker, and a
        writer process of its own when it first writes (the parent's is let go without a word)."""
        pending = [item for item in self._queue if type(item) is not _Mark]  # a parent thread's flush
        closed = self._closed
        if self._writer is not None:
            self._writer.abandon()
            self._writer = WriterProcess(self._writer.spec)
        self._child = {}
        self._init_state()
        self._closed = closed
        self._queue.extend(pending)

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None or self._closed:
                return
            self._worker = threading.Thread(target=self._run, name="mcp-tracking-emitter", daemon=True)
            self._worker.start()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every event queued before this call is written (or given up). ``True`` if drained.

        A waypoint goes into the queue behind those events; the worker sets it once it has written them."""
        if self._worker is None or not self._worker.is_alive():
            if self._closed:
                return self._queue_empty()
            self._start_worker()
        if self._worker is threading.current_thread():
            return self._queue_empty()  # the worker itself (a periodic task): it cannot wait for itself
        worker = self._worker
        mark = _Mark()
        self._queue.append(mark)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not mark.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))):
            if worker is None or not worker.is_alive():  # it stopped (close() from another thread) first
                return self._queue_empty()
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Drain within ``timeout`` and stop the worker; idempotent. ``True`` if every event accepted was
        delivered: written to the store, or spooled for a later process to replay (``False`` when any was
        given up, or the queue could not be drained in time)."""
        if self._closed:
            return self._queue_empty() and self.stats.failed_events == 0
        self._close_timeout = timeout
        drained = self.flush(timeout)
        self._closed = True
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout if timeout is not None else None)
        try:
            self.sink.close()
        except Exception:
            warn_limited("sink-close", "mcp_tracking: sink %r failed to close", self.sink, exc_info=True)
        _LIVE.discard(self)
        return drained and self.stats.failed_events == 0

    def _queue_empty(self) -> bool:
        return all(type(item) is _Mark for item in self._queue)

    @property
    def stats(self) -> EmitterStats:
        s = self._stats
        depth = len(self._queue)
        s.accepted = self._taken + depth
        s.queue_depth = depth
        s.queued_bytes = max(0, self._bytes_in - self._bytes_out)
        if self.spool is not None:
            s.forged = self.spool.forged
        out = EmitterStats(**asdict(s))
        for key in WRITER_COUNTERS:  # what the writer process did with what it was handed
            setattr(out, key, getattr(out, key) + int(self._child.get(key, 0)))
        return out

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while it runs (``None``: the worker thread writes)."""
        return self._writer.pid if self._writer is not None else None

    # -- worker ----------------------------------------------------------------------------------

    def _run(self) -> None:
        last_tick = time.monotonic()
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            wrote = self._replay() if self._writer is None else False
            # What is queued now is written in this cycle; what arrives meanwhile waits for the next one,
            # unless it makes a whole batch (or the emitter is closing). Chasing a few stragglers would take
            # the interpreter lock from the server's thread once per hand-over (each is a forced switch).
            due = len(self._queue)
            while self._queue and (due > 0 or len(self._queue) >= self.batch_size or self._closed):
                batch, marks = self._take_batch()
                due -= len(batch) + len(marks)
                if batch:
                    self._write(batch)
                    wrote = True
                if marks and self._writer is not None:
                    self._sync()  # a flush waits for the writer process, and brings its counters back
                for mark in marks:
                    mark.set()
            writer = self._writer
            if writer is not None:
                if writer.pending and (writer.pending >= MAX_UNCONFIRMED or self._closed
                                       or time.monotonic() - writer.answered_at >= SYNC_INTERVAL):
                    self._sync()  # its counters, and a bounded number of events it has not confirmed
            elif wrote:
                try:
                    self.sink.flush()
                except Exception:
                    warn_limited("sink-flush", "mcp_tracking: sink %r failed to flush", self.sink, exc_info=True)
            now = time.monotonic()
            if self._tick_callbacks and now - last_tick >= self.flush_interval:
                last_tick = now
                for cb in list(self._tick_callbacks):
                    try:
                        cb()
                    except Exception:
                        warn_limited("tick", "mcp_tracking: periodic task %r failed", cb, exc_info=True)
            if self._writer is None and (now - self._health_at >= HEALTH_INTERVAL
                                         or (self._closed and not self._queue)):
                self._write_health(now)  # (the writer process records its own)
            if self._closed and not self._queue:
                if self._writer is not None:
                    self._quit_writer()
                return

    # -- the writer process ------------------------------------------------------------------------

    def write_now(self, batch: list[Queued]) -> None:
        """Process and write ``batch`` on the calling thread, as the worker would (retry, backoff, spool),
        counted as accepted: what the writer process does with each batch it is handed, on its one thread."""
        self._taken += len(batch)
        self._write(batch)

    def upkeep(self, *, health: bool = False) -> None:
        """The worker's periodic chores, on the calling thread: replay what is spooled; record health when
        due (or now)."""
        self._replay()
        now = time.monotonic()
        if health or now - self._health_at >= HEALTH_INTERVAL:
            self._write_health(now)

    def _hand_over(self, batch: list[Queued]) -> bool:
        """Give ``batch`` to the writer process; ``False`` when there is none (any more)."""
        writer = self._writer
        if writer is None:
            return False
        # the request path queues most events as argument tuples, which go over as they are (orjson writes a
        # tuple as an array: no per-event Python here); a record (the SDK's) goes as its eight fields
        wire: list[Any] = [item if type(item) is tuple else
                           [item.event_name, item.user_id, item.session_id, item.mcp_name, item.metadata,  # type: ignore[union-attr]
                            item.ts_us, item._event_id, item.schema_version] for item in batch]  # type: ignore[union-attr]
        try:
            writer.send(wire)
            return True
        except WriterGone:
            self._lost_writer(writer)
            return False
        except Exception:  # not JSON even after making it safe: the thread's chain counts what fails
            warn_limited("writer-encode", "mcp_tracking: a batch could not be handed to the writer process; "
                         "written here", exc_info=True)
            return False

    def _sync(self) -> None:
        writer = self._writer
        if writer is None:
            return
        try:
            self._child = dict(writer.sync())
        except WriterGone:
            self._lost_writer(writer)

    def _quit_writer(self) -> None:
        writer = self._writer
        if writer is None:
            return
        try:
            self._child = dict(writer.quit(self._close_timeout))
        except WriterGone:
            self._lost_writer(writer)

    def _lost_writer(self, writer: WriterProcess) -> None:
        """The writer process could not start or died: what it had not confirmed is counted as failed, and
        the thread writes from now on (with the spool the writer used)."""
        self._child = dict(writer.counters)
        self._stats.failed_events += writer.pending
        warn_limited("writer-gone", "mcp_tracking: the writer process is gone (%d events it had not confirmed "
                     "are counted as failed); writing on the worker thread from now on", writer.pending,
                     exc_info=True)
        writer.kill()
        self._writer = None

    def _write_health(self, now: float) -> None:
        """Record this process's counters in the store, where it can (SQLite, PostgreSQL)."""
        self._health_at = now
        sink = self.sink
        if not isinstance(sink, HealthStore) or (self._taken == 0 and self._queue_empty()):
            return
        try:
            sink.write_health(f"{socket.gethostname()}:{os.getpid()}:{id(self):x}", self.stats.as_dict())
        except Exception:
            warn_limited("health", "mcp_tracking: could not record emitter health in %r", self.sink, exc_info=True)

    def _take_batch(self) -> tuple[list[Queued], list[_Mark]]:
        """Up to ``batch_size`` items from the head of the queue: (events, flush waypoints). Items are popped
        one by one from the left: request threads append on the right meanwhile, without a lock."""
        queue = self._queue
        popleft = queue.popleft
        batch = [popleft() for _ in range(min(self.batch_size, len(queue)))]
        marks = [item for item in batch if type(item) is _Mark]
        if marks:
            batch = [item for item in batch if type(item) is not _Mark]
        self._taken += len(batch)
        self._bytes_out += sum(map(_cost, batch))
        return batch, marks  # type: ignore[return-value]

    def _materialize(self, batch: list[Queued]) -> list[EventRecord]:
        """``batch`` as records: the ones queued as arguments are built here, on the worker. One that cannot be
        built (not the arguments of a record) is counted as a processor error and dropped, never the batch."""
        out: list[EventRecord] = []
        append = out.append
        for item in batch:
            if type(item) is EventRecord:
                append(item)
                continue
            try:
                append(EventRecord(*item[:5], ts_us=item[5]))  # type: ignore[misc,index]
            except Exception:
                self._stats.processor_errors += 1
                warn_limited("queued-args", "mcp_tracking: a queued event could not be built; dropped", exc_info=True)
        return out

    def _process(self, batch: list[EventRecord]) -> list[EventRecord]:
        chain = [(proc, bool(getattr(proc, "builtin", False))) for proc in self.processors]
        fast = FastPath.of(self.processors)
        needs_chain: set[int] = set()
        if fast is not None:  # the common case: the default chain and clean events
            try:
                slow = fast.run(batch)
            except Exception:
                slow = list(range(len(batch)))
            if not slow:
                EventRecord.assign_ids(batch)
                return batch
            needs_chain = set(slow)
        out: list[EventRecord] = []
        append = out.append
        for i, record in enumerate(batch):
            event: EventRecord | None = record
            if fast is not None and i not in needs_chain:
                append(record)
                continue
            try:
                for proc, builtin in chain:
                    event = proc(event)  # type: ignore[arg-type]
                    if event is None:
                        break
                    if not builtin:
                        event.metadata_json = None  # a user processor may have changed the metadata
                if event is not None:
                    if event.metadata_json is None:
                        ensure_json(event)
                    append(event)
            except Exception:
                self._stats.processor_errors += 1
                warn_limited("processor", "mcp_tracking: a processor failed; event %s dropped", record.event_name,
                          exc_info=True)
        EventRecord.assign_ids(out)
        return out

    def _replay(self) -> bool:
        """Write spooled batches back to the store, oldest first; ``True`` if anything was written."""
        spool = self.spool
        if spool is None or time.monotonic() < self._next_replay:
            return False
        wrote = False
        try:
            while True:
                oldest = spool.oldest()
                if oldest is None:
                    self._replay_delay = self.retry_backoff
                    return wrote
                seg, records = oldest
                chunk: list[EventRecord] = []
                for record in records:
                    chunk.append(record)
                    if len(chunk) >= self.batch_size:
                        self._replay_chunk(chunk)
                        chunk = []
                if chunk:
                    self._replay_chunk(chunk)
                spool.done(seg)
                wrote = True
        except Exception:
            self._stats.failed_writes += 1
            self._next_replay = time.monotonic() + self._replay_delay
            self._replay_delay = min(self._replay_delay * 2, MAX_BACKOFF * 2)
            warn_limited("spool-replay", "mcp_tracking: the store still refuses writes; events stay spooled",
                      exc_info=True)
            return wrote

    def _replay_chunk(self, chunk: list[EventRecord]) -> None:
        try:
            self.sink.write(chunk)
        except Exception as exc:  # one poisoned event must not hold the whole spool back
            if not (_about_the_data(exc) and self._isolate(chunk, replay=True)):
                raise
            return
        self._stats.replayed += len(chunk)

    def _isolate(self, events: list[EventRecord], *, replay: bool = False) -> bool:
        """The store refused a batch for something in its data: write it in halves, down to single events.
        If the store took any of them it is up, and the events it refuses alone are dropped and counted
        (``rejected``): one bad event costs that event, never its neighbours. ``False`` when it took none:
        the caller treats the batch as a store failure (retry, spool)."""
        refused: list[EventRecord] = []
        took = 0

        def halves(part: list[EventRecord]) -> None:
            nonlocal took
            try:
                self.sink.write(part)
                took += len(part)
            except Exception:
                if len(part) == 1:
                    refused.append(part[0])
                else:
                    middle = len(part) // 2
                    halves(part[:middle])
                    halves(part[middle:])

        middle = len(events) // 2
        halves(events[:middle])
        halves(events[middle:])
        if not took:
            return False
        if replay:
            self._stats.replayed += took
        else:
            self._stats.written += took
        self._stats.failed_events += len(refused)
        self._stats.rejected += len(refused)
        if refused:
            warn_limited("sink-reject", "mcp_tracking: sink %r refused %d event(s) alone (first: %s); "
                         "dropped, the rest of the batch is stored", self.sink, len(refused),
                         refused[0].event_name)
        return True

    def _spool_batch(self, events: list[EventRecord]) -> bool:
        try:
            self.spool.append(events)  # type: ignore[union-attr]
        except Exception:
            warn_limited("spool-write", "mcp_tracking: could not spool %d events", len(events), exc_info=True)
            return False
        self._stats.spooled += len(events)
        return True

    def _write(self, batch: list[Queued]) -> None:
        if self._writer is not None and self._hand_over(batch):
            return
        try:
            events = self._process(self._materialize(batch))
            spool = self.spool
            # the store was down: keep the order, behind what is spooled, until the replay has caught up
            if (events and spool is not None and spool.pending() and (not self._replay() or spool.pending())
                    and self._spool_batch(events)):
                return
            if events:
                started = time.monotonic()
                delay = self.retry_backoff
                give_up_after = self.spool_after if self.spool is not None else self.retry_timeout
                while True:
                    try:
                        self.sink.write(events)
                        self._stats.written += len(events)
                        break
                    except Exception as exc:
                        self._stats.failed_writes += 1
                        if len(events) > 1 and _about_the_data(exc) and self._isolate(events):
                            break
                        waited = time.monotonic() - started
                        if waited + delay > give_up_after or (self._closed and waited > 0):
                            if self.spool is not None and self._spool_batch(events):
                                warn_limited("sink-spool", "mcp_tracking: sink %r is down; spooling events to %s",
                                          self.sink, self.spool.dir, exc_info=True)
                                self._next_replay = time.monotonic() + self._replay_delay
                                break
                            self._stats.failed_events += len(events)
                            warn_limited("sink-write", "mcp_tracking: sink %r failed to write %d events; giving up",
                                      self.sink, len(events), exc_info=True)
                            break
                        warn_limited("sink-retry", "mcp_tracking: sink %r failed to write; retrying", self.sink,
                                  exc_info=True)
                        self._stats.retries += 1
                        time.sleep(delay)
                        delay = min(delay * 2, MAX_BACKOFF)
        except Exception:  # never lose the worker: what could not be written is counted
            self._stats.failed_events += len(batch)
            warn_limited("write", "mcp_tracking: writing a batch failed", exc_info=True)


def _cost(item: Any) -> int:
    """What the byte budget counts for a queued item (the same on the way in and out)."""
    if type(item) is tuple:
        return item[6] if len(item) == 7 and type(item[6]) is int else EVENT_OVERHEAD
    return getattr(item, "queued_bytes", 0) or EVENT_OVERHEAD


def _about_the_data(exc: BaseException) -> bool:
    """A store's refusal caused by what is in the batch (an encoding, a value, a type), not by the store
    being unreachable: worth finding the event that causes it."""
    if isinstance(exc, (UnicodeError, ValueError, TypeError, OverflowError)):
        return True
    return type(exc).__name__ in ("DataError", "IntegrityError", "ProgrammingError", "InvalidTextRepresentation",
                                  "UntranslatableCharacter", "CharacterNotInRepertoire")


class _Mark(threading.Event):
    """A :meth:`Emitter.flush` waypoint in the queue, set once everything queued before it is written."""


_LIVE: weakref.WeakSet[Emitter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has no worker thread: let the next emit start one (events queued before the fork
    that the parent had not written yet are kept and written by the child too, at most once per store:
    event ids make the second write a no-op)."""
    for emitter in list(_LIVE):
        emitter._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_all(timeout: float) -> None:
    for emitter in list(_LIVE):
        try:
            emitter.close(timeout=timeout)
        except Exception:
            pass

