"""track() on the caller's side, and sustained throughput into SQLite against raw sqlite3.

    python benchmarks/bench_emit.py [--events 100000] [--rounds 5]

Prints (1) the median caller-side cost of track() in µs (each call timed alone, the worker writing to
SQLite meanwhile), and (2) sustained events/s through AnalyticsClient into SQLite as a ratio to raw
``sqlite3.executemany`` of the same rows into the same table, one transaction per 1,000 rows, measured in
the same run (medians of the rounds). Targets: track() <= 15 µs; ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import event_mix, median  # noqa: E402

from mcp_tracking import AnalyticsClient, SQLiteSink  # noqa: E402
from mcp_tracking.events import EventRecord  # noqa: E402
from mcp_tracking.sinks.sqlite import INSERT, ensure_schema, row_of  # noqa: E402


def caller_cost(n: int, tmp: Path) -> float:
    client = AnalyticsClient(SQLiteSink(tmp / "cost.db"), max_queue_size=n + 10, handle_sigterm=False)
    mixes = [event_mix(i) for i in range(n)]
    times = []
    perf = time.perf_counter_ns
    for i, (name, md) in enumerate(mixes):
        t0 = perf()
        client.track("user_1", name, md, f"s{i % 500}", "drea")
        times.append(perf() - t0)
    client.close()
    return median(times) / 1000.0


def raw_rate(records: list[EventRecord], path: Path) -> float:
    rows = [row_of(r) for r in records]  # prepared outside the timing: the baseline is pure SQLite
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ensure_schema(conn)
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows[i:i + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


def our_rate(n: int, path: Path) -> float:
    client = AnalyticsClient(SQLiteSink(path), max_queue_size=n + 10, handle_sigterm=False)
    mixes = [event_mix(i) for i in range(n)]
    t0 = time.perf_counter()
    for i, (name, md) in enumerate(mixes):
        client.track("user_1", name, md, None, "drea")  # no session: measure the pipeline, not session state
    assert client.flush(600)
    elapsed = time.perf_counter() - t0
    stats = client.stats
    client.close()
    assert stats.written == n, stats
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        costs, ours, raws = [], [], []
        for r in range(args.rounds):
            costs.append(caller_cost(20_000, tmp))
            records = [EventRecord(name, "user_1", None, "drea", md) for name, md in
                       (event_mix(i) for i in range(args.events))]
            raws.append(raw_rate(records, tmp / f"raw{r}.db"))
            ours.append(our_rate(args.events, tmp / f"ours{r}.db"))
    print(f"track() caller-side cost: median {median(costs):.2f} µs per call (target <= 15)")
    print(f"SQLite sustained: mcp-tracking {median(ours):,.0f} ev/s, raw executemany {median(raws):,.0f} ev/s, "
          f"ratio {median(ours) / median(raws):.2f} (target >= 0.8)")
    print(f"rounds: cost µs {[round(c, 2) for c in costs]}; ratio per round "
          f"{[round(o / w, 2) for o, w in zip(ours, raws)]}")


if __name__ == "__main__":
    main()
