"""The emitter and the embedded stores under concurrency and failure."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import anyio
import pytest

from mcp_tracking import AnalyticsClient, JSONLSink, MemorySink, SQLiteSink
from mcp_tracking.emit import Emitter
from mcp_tracking.events import EventRecord

THREADS, TASKS, PER_WORKER = 50, 50, 100  # 10,000 events


def produce(client: AnalyticsClient) -> None:
    """50 threads and 50 asyncio tasks, each tracking 100 events in its own session."""

    def thread_worker(i: int) -> None:
        for n in range(PER_WORKER):
            client.track(f"user_{i}", "custom_event", {"n": n, "worker": f"t{i}"}, session_id=f"t{i}", mcp_name="m")

    async def task_worker(i: int) -> None:
        for n in range(PER_WORKER):
            client.track(f"user_{i}", "custom_event", {"n": n, "worker": f"a{i}"}, session_id=f"a{i}", mcp_name="m")
            if n % 10 == 0:
                await anyio.sleep(0)

    async def run_tasks() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(TASKS):
                tg.start_soon(task_worker, i)

    threads = [threading.Thread(target=thread_worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    anyio.run(run_tasks)
    for t in threads:
        t.join()


def check(events: list[tuple[str, str, int]]) -> None:
    assert len(events) == 10_000
    assert len({(s, n) for s, _, n in events}) == 10_000  # each exactly once
    per_session = Counter(s for s, _, _ in events)
    assert len(per_session) == 100 and set(per_session.values()) == {PER_WORKER}
    assert all(s == w for s, w, _ in events)  # in the right session


def test_ten_thousand_events_from_threads_and_tasks_land_once_in_sqlite(sqlite_path):
    """10,000 events from 50 threads + 50 tasks are stored exactly once each, in their sessions."""
    client = AnalyticsClient(SQLiteSink(sqlite_path), max_queue_size=20_000)
    produce(client)
    assert client.flush(30)
    conn = sqlite3.connect(sqlite_path)
    rows = conn.execute("SELECT session_id, json_extract(metadata, '$.worker'), json_extract(metadata, '$.n') "
                        "FROM raw_analytics WHERE event_name = 'custom_event'").fetchall()
    conn.close()
    check(rows)
    stats = client.stats
    assert (stats.accepted, stats.written, stats.dropped, stats.failed_events) == (10_000, 10_000, 0, 0)
    client.close(end_sessions=False)


def test_ten_thousand_events_through_jsonl(tmp_path):
    """The same load through JSONLSink: every line parses, every event once."""
    sink = JSONLSink(tmp_path / "events.jsonl")
    client = AnalyticsClient(sink, max_queue_size=20_000)
    produce(client)
    assert client.flush(30)
    events = list(sink.iter_events())
    check([(e["session_id"], e["metadata"]["worker"], e["metadata"]["n"]) for e in events])
    client.close(end_sessions=False)


class BrokenSink:
    """A store that raises on every write (a database that is down)."""

    def __init__(self) -> None:
        self.attempts = 0

    def write(self, batch):
        self.attempts += 1
        raise ConnectionError("store is down")

    def flush(self) -> None:
        raise ConnectionError("store is down")

    def close(self) -> None:
        raise ConnectionError("store is down")


def test_a_store_that_always_fails_never_slows_or_breaks_track():
    """track() stays fast and returns; the failures and drops show in the counters."""
    sink = BrokenSink()
    client = AnalyticsClient(sink, max_queue_size=500, batch_size=100, flush_interval=0.01, retry_timeout=0.05,
                             spool_dir=False)
    client.emitter.retry_backoff = 0.001
    worst = 0.0
    for i in range(5_000):
        t0 = time.perf_counter()
        client.track("u", "tool_call_started", {"i": i}, session_id="s")
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.05  # never waits for the store
    client.flush(10)
    stats = client.stats
    assert stats.failed_writes > 0 and stats.failed_events > 0
    assert stats.accepted + stats.dropped == 5_000
    assert stats.written == 0
    assert sink.attempts > 0
    assert client.close(timeout=5) in (True, False)  # closing a broken sink does not raise


def test_full_queue_drops_and_counts():
    """Past the queue bound new events are dropped, counted, and track() returns False."""
    gate = threading.Event()

    class SlowSink(MemorySink):
        def write(self, batch):
            gate.wait(5)
            super().write(batch)

    client = AnalyticsClient(SlowSink(), max_queue_size=10, batch_size=1, flush_interval=0.01)
    results = [client.track("u", "e", {"i": i}) for i in range(100)]
    assert results.count(False) >= 80
    assert client.stats.dropped == results.count(False)
    gate.set()
    assert client.flush(5)
    client.close()


def test_processor_failure_drops_only_that_event():
    """A processor that raises loses its event (counted), never the batch or the host."""

    def picky(event):
        if event.metadata.get("bad"):
            raise RuntimeError("processor bug")
        return event

    sink = MemorySink()
    client = AnalyticsClient(sink, processors=[picky], flush_interval=0.01)
    client.track("u", "e", {"bad": True})
    client.track("u", "e", {"bad": False})
    assert client.flush()
    assert [e["metadata"] for e in sink.events] == [{"bad": False}]
    assert client.stats.processor_errors == 1
    client.close()


def test_events_queued_as_arguments_are_built_on_the_worker_in_order():
    """The request path queues a call's events as their arguments; the worker builds them in queue order, with
    the creation time taken when they were queued. Something that is not such arguments is counted and
    dropped alone."""
    sink = MemorySink()
    emitter = Emitter(sink, flush_interval=0.01, spool_dir=False)
    emitter.emit(EventRecord("first", "u", "s", "m", {"n": 1}))
    emitter.emit(("second", "u", "s", "m", {"n": 2}, 1_700_000_000_123_456))
    emitter.emit(("broken",))  # type: ignore[arg-type]
    emitter.emit(EventRecord("third", "u", None, None, {"n": 3}))
    assert emitter.flush(5)
    emitter.close()
    assert [(e["event_name"], e["metadata"]) for e in sink.events] == [
        ("first", {"n": 1}), ("second", {"n": 2}), ("third", {"n": 3})]
    second = sink.events[1]
    assert (second["user_id"], second["session_id"], second["mcp_name"]) == ("u", "s", "m")
    assert second["created_at"] == "2023-11-14T22:13:20.123456+00:00"
    assert emitter.stats.processor_errors == 1 and emitter.stats.accepted == 4


def test_flush_waits_for_what_each_thread_queued_before_it():
    """Emitting takes no lock. Four threads emit and flush at once through a slow store: every flush returns
    only once the events its thread queued before it are stored, while the other threads keep queueing; a
    flush from the worker's own periodic task returns instead of waiting for itself."""

    class SlowSink(MemorySink):
        def write(self, events):
            time.sleep(0.002)
            super().write(events)

    sink = SlowSink()
    emitter = Emitter(sink, batch_size=7, flush_interval=0.01, spool_dir=False)
    from_tick: list[bool] = []
    emitter.add_tick(lambda: from_tick.append(emitter.flush(5)))
    missing: list[tuple[str, int, int]] = []

    def producer(w: int) -> None:
        for r in range(5):
            for n in range(40):
                emitter.emit(EventRecord("e", "u", f"w{w}", None, {"r": r, "n": n}))
            assert emitter.flush(10)
            stored = {(e["session_id"], e["metadata"]["r"], e["metadata"]["n"]) for e in list(sink.events)}
            missing.extend(k for k in ((f"w{w}", r, n) for n in range(40)) if k not in stored)

    threads = [threading.Thread(target=producer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    started = time.monotonic()
    assert emitter.close(10)
    assert time.monotonic() - started < 5
    assert missing == []
    assert len(sink.events) == 800 and emitter.stats.accepted == 800 and emitter.stats.written == 800
    assert from_tick  # the periodic task ran and its flush came back


def test_a_batch_that_fails_unexpectedly_is_counted_and_the_worker_goes_on(tmp_path):
    """Fault injection: the spool's check raises on one batch. That batch is counted as failed; the worker
    survives and writes the next one (before, the exception ended the worker and every later flush waited)."""
    sink = MemorySink()
    emitter = Emitter(sink, flush_interval=0.01, spool_dir=tmp_path)
    real = emitter.spool.pending
    calls = {"n": 0}

    def pending_once_broken():
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("spool directory vanished")
        return real()

    emitter.spool.pending = pending_once_broken
    emitter.emit(EventRecord("first", "u", "s", None, {}))
    assert emitter.flush(5)
    emitter.emit(EventRecord("second", "u", "s", None, {}))
    assert emitter.flush(5)
    assert not emitter.close(5)  # one accepted event was not delivered: close() says so
    assert [e["event_name"] for e in sink.events] == ["second"]
    assert emitter.stats.failed_events == 1


def test_flush_and_close_are_idempotent_and_drain():
    """close() drains what is queued; calling it twice is harmless; events after close are counted drops."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    for i in range(10):
        client.track("u", "e", {"i": i})
    assert client.close()
    assert client.close()
    assert len(sink.events) == 10 and sink.closed
    assert client.track("u", "e", {}) is False
    assert client.stats.dropped == 1


def test_emitter_rejects_bad_arguments_eagerly():
    """Explicit arguments are checked at construction."""
    with pytest.raises(ValueError):
        Emitter(MemorySink(), max_queue_size=0)
    with pytest.raises(ValueError):
        Emitter(MemorySink(), max_queue_size=10, batch_size=100)
    with pytest.raises(ValueError):
        Emitter(MemorySink(), flush_interval=0)


def test_sqlite_is_idempotent_on_event_id(sqlite_path):
    """Writing the same event twice (a replayed batch) stores it once."""
    sink = SQLiteSink(sqlite_path)
    batch = [EventRecord("e", "u", "s", None, {"i": i}) for i in range(5)]
    sink.write(batch)
    sink.write(batch)
    assert sink.count() == 5
    sink.close()
