"""track() on the caller's side, and sustained throughput into SQLite against raw sqlite3.

    python benchmarks/bench_emit.py [--events 100000] [--rounds 5]

Prints, medians over the rounds, all measured in the same run:

1. the caller-side cost of ``track()`` in µs: each call timed alone (in bursts, the worker draining between);
2. the sustained rate at which the emitter drains into SQLite (processors: JSON-safe, redaction, caps;
   row building; one transaction per 1,000 rows) as a ratio to raw ``sqlite3.executemany`` of the same,
   already-built rows into the same table, one transaction per 1,000 rows (target >= 0.8), and, for
   reference, to raw inserts of those rows with the multi-row statements the sink itself uses;
3. for reference, end to end: one thread calling ``track()`` as fast as it can while the worker drains,
   which on CPython shares one interpreter lock between producer and worker;
4. the writer process alone (``mcp_tracking.emit.writer``): batches of 1,000 queued events, encoded before
   the clock, handed straight to it, then one sync.

The emitter writes through the writer process or the worker thread as configured: run it with
``MCP_TRACKING_WRITER=process`` and ``=thread`` to compare the two.

Targets: track() <= 15 µs; drain ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import event_mix, median

from mcp_tracking import AnalyticsClient, SQLiteSink
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks.sqlite import INSERT, ensure_schema, rows_of, write_rows


def caller_cost(n: int, tmp: Path) -> float:
    """Each call timed alone, in bursts of 1,000 with the worker draining into SQLite between bursts.

    A server emits a few events per tool call (~0.5 ms): the worker keeps up and the caller pays only for
    building the event and queueing it. (A producer that never pauses shares the interpreter lock with the
    worker; that case is the end-to-end figure below.)
    """
    client = AnalyticsClient(SQLiteSink(tmp / "cost.db"), max_queue_size=n + 10, handle_sigterm=False)
    mixes = [event_mix(i) for i in range(n)]
    times = []
    perf = time.perf_counter_ns
    for start in range(0, n, 1000):
        for i in range(start, min(n, start + 1000)):
            name, md = mixes[i]
            t0 = perf()
            client.track("user_1", name, md, f"s{i % 500}", "drea")
            times.append(perf() - t0)
        client.flush()
    client.close()
    return median(times) / 1000.0


def raw_rate(records: list[EventRecord], path: Path, *, multi_row: bool = False) -> float:
    """Rows built outside the timing (the baseline is pure SQLite), inserted with ``executemany`` (the
    issue's baseline) or, with ``multi_row``, with the multi-row statements the sink itself uses."""
    rows = rows_of(records)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ensure_schema(conn)
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        if multi_row:
            write_rows(conn, rows[i:i + 1000])
        else:
            conn.executemany(INSERT, rows[i:i + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


def drain_rate(n: int, path: Path) -> float:
    """Queue n events with the worker idle, then time how fast it drains them into SQLite."""
    # the whole run queued at once: room for it (the byte budget's 64 MiB would drop ~14% of 100,000 events)
    client = AnalyticsClient(SQLiteSink(path), max_queue_size=n + 10, max_queue_bytes=1 << 30, batch_size=n,
                             flush_interval=3600, handle_sigterm=False)
    client.track("user_1", "warm_up", {}, None, "drea")  # the writer (process or thread) running before the clock
    assert client.flush(60)
    mixes = [event_mix(i) for i in range(n)]
    for name, md in mixes[:-1]:
        client.track("user_1", name, md, None, "drea")
    client.emitter.batch_size = 1000
    t0 = time.perf_counter()
    client.track("user_1", *mixes[-1], None, "drea")
    assert client.flush(600)
    elapsed = time.perf_counter() - t0
    stats = client.stats
    client.close()
    assert stats.written == n + 1, stats
    return n / elapsed


def end_to_end_rate(n: int, path: Path) -> float:
    client = AnalyticsClient(SQLiteSink(path), max_queue_size=n + 10, handle_sigterm=False)
    mixes = [event_mix(i) for i in range(n)]
    t0 = time.perf_counter()
    for name, md in mixes:
        client.track("user_1", name, md, None, "drea")
    assert client.flush(600)
    elapsed = time.perf_counter() - t0
    client.close()
    return n / elapsed


def writer_alone_rate(n: int, path: Path) -> float:
    """The writer process by itself: n events (as the queue holds them) handed over in batches of 1,000,
    already encoded, then one sync: how fast it processes and writes them."""
    from mcp_tracking.emit.writer import WriterProcess, WriterSpec, encode

    items = [(name, "user_1", None, "drea", md, 1_764_000_000_000_000 + i, 600)
             for i, (name, md) in enumerate(event_mix(i) for i in range(n))]
    frames = [encode(items[i:i + 1000]) for i in range(0, n, 1000)]
    writer = WriterProcess(WriterSpec("sqlite", {"path": str(path)}, emitter={"batch_size": 1000}))
    writer.start()
    t0 = time.perf_counter()
    for frame in frames:
        writer._send(b"E", frame)
    counters = writer.sync()
    elapsed = time.perf_counter() - t0
    writer.quit(60)
    assert counters["written"] == n, counters
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        costs, ours, raws, multis, e2e, alone = [], [], [], [], [], []
        for r in range(args.rounds):
            costs.append(caller_cost(20_000, tmp))
            records = [EventRecord(name, "user_1", None, "drea", md) for name, md in
                       (event_mix(i) for i in range(args.events))]
            raws.append(raw_rate(records, tmp / f"raw{r}.db"))
            multis.append(raw_rate(records, tmp / f"multi{r}.db", multi_row=True))
            ours.append(drain_rate(args.events, tmp / f"ours{r}.db"))
            e2e.append(end_to_end_rate(args.events, tmp / f"e2e{r}.db"))
            alone.append(writer_alone_rate(args.events, tmp / f"alone{r}.db"))
    print(f"track() caller-side cost: median {median(costs):.2f} µs per call (target <= 15)")
    print(f"SQLite sustained drain: mcp-tracking {median(ours):,.0f} ev/s, raw executemany {median(raws):,.0f} ev/s, "
          f"ratio {median(ours) / median(raws):.2f} (target >= 0.8)")
    print(f"  (the sink inserts 80 rows per statement; raw inserts done that way: {median(multis):,.0f} ev/s, "
          f"ratio to them {median(ours) / median(multis):.2f})")
    print(f"the writer process alone (batches handed straight to it): {median(alone):,.0f} ev/s, "
          f"ratio {median(alone) / median(raws):.2f} to raw")
    print(f"end to end, one producer thread + the worker: {median(e2e):,.0f} ev/s, "
          f"ratio {median(e2e) / median(raws):.2f} to raw")
    print(f"rounds: cost µs {[round(c, 2) for c in costs]}; drain ratio per round "
          f"{[round(o / w, 2) for o, w in zip(ours, raws, strict=False)]}")


if __name__ == "__main__":
    main()
