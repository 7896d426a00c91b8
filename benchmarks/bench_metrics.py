"""All ten metrics over 1,000,000 events / 100,000 sessions in SQLite, against a plain GROUP BY.

    python benchmarks/bench_metrics.py [--events 1000000] [--sessions 100000] [--rounds 3] [--db PATH]

Generates the events (realistic per-session lifecycles written through SQLiteSink), then times
``compute_metrics`` on the whole table, and as the anchor measured in the same run, one plain
``SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id`` over the same table.
Target: all ten metrics in <= 1 s.

``--compare`` also times ``mcp-tracking compare`` on the same table (the two halves of its time span, every
session's counts, the intervals by the delta method; and two windows of 1% of the span each, small enough for
the bootstrap) and ``mcp-tracking advise``, against the same anchor. Target: <= 2 s each.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median

from mcp_tracking import compute_metrics
from mcp_tracking.events import EventRecord

TOOLS = ["get_benchmark_results_by_filters", "get_benchmark_results", "list_models", "get_leaderboard",
         "compare_models", "get_live_pricing"]


def session_events(rng: random.Random, sid: str, user: str, t0: int) -> list[EventRecord]:
    """One session's lifecycle: calls with failures, retries, schema errors, hallucinations, an outcome."""
    out: list[EventRecord] = []
    ts = [t0]

    def ev(name: str, **md: object) -> None:
        ts[0] += rng.randint(100, 50_000)
        r = EventRecord(name, user, sid, "drea", md)
        r.ts_us = ts[0]
        out.append(r)

    ev("session_start", client_name="bench", session_source="connection")
    seq = 0
    ok = True
    while len(out) < 8:
        seq += 1
        tool = rng.choice(TOOLS)
        phash = f"{rng.randint(0, 3):032x}"
        ev("tool_call_started", tool_name=tool, call_sequence=seq, params_hash=phash, is_retry=False)
        r = rng.random()
        if r < 0.05:
            ev("schema_validation_error", tool_name=tool, call_sequence=seq,
               validation_errors=[{"field": "limit", "error": "expected integer", "kind": "type"}])
            ev("tool_call_failed", tool_name=tool, error_type="validation_error", call_sequence=seq)
            ok = False
        elif r < 0.15:
            ev("tool_call_failed", tool_name=tool, error_type="tool_error", execution_time_ms=rng.uniform(1, 50),
               call_sequence=seq)
            ok = False
        else:
            ev("tool_call_completed", tool_name=tool, execution_time_ms=round(rng.lognormvariate(2.5, 0.8), 3),
               call_sequence=seq, params_hash=phash)
            ok = True
    ev("session_completed" if ok else "session_abandoned", success=ok)
    ev("session_end", end_reason="idle_timeout")
    return out


def generate(path: Path, events: int, sessions: int) -> int:
    from mcp_tracking.emit.processors import default_processors
    from mcp_tracking.sinks.sqlite import SQLiteSink

    rng = random.Random(42)
    sink = SQLiteSink(path, synchronous="OFF")
    procs = default_processors()
    per_session = max(1, events // sessions)
    total = 0
    batch: list[EventRecord] = []
    t0 = 1_764_000_000_000_000
    for s in range(sessions):
        evs = session_events(rng, f"s{s:06d}", f"user_{s % 500}", t0 + s * 1000)
        evs = evs[:per_session] if len(evs) > per_session else evs
        for r in evs:
            for p in procs:
                p(r)
        batch.extend(evs)
        if len(batch) >= 20_000:
            sink.write(batch)
            total += len(batch)
            batch = []
            print(f"\rgenerating: {total:,} events", end="", file=sys.stderr)
    if batch:
        sink.write(batch)
        total += len(batch)
    sink.close()
    print(file=sys.stderr)
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.close()
    return total


def timed(rounds: int, fn: Callable[[], Any]) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def measure(url: str, anchor: Callable[[], Any], rounds: int, with_compare: bool) -> None:
    """The metrics (and compare / advise) on the store at ``url``, each against ``anchor`` in the same run."""
    from mcp_tracking.sinks import sink_from_url

    anchors, _ = timed(rounds, anchor)
    ours, result = timed(rounds, lambda: compute_metrics(url))
    a = median(anchors)
    print(f"{url.split('://')[0]}: {result.totals.events:,} events, {result.totals.sessions:,} sessions")
    print(f"all ten metrics (+ the extra views): {median(ours):.3f} s (target <= 1 s); "
          f"anchor GROUP BY session_id: {a:.3f} s; ratio {median(ours) / a:.2f}")
    print(f"rounds: metrics {[round(x, 3) for x in ours]}, anchor {[round(x, 3) for x in anchors]}")
    if not with_compare:
        return
    from mcp_tracking.metrics.advice import advise
    from mcp_tracking.metrics.compare import Window, compare_windows

    sink = sink_from_url(url, read_only=True)
    span = sink.time_span({})  # type: ignore[attr-defined]
    middle = span[0] + (span[1] - span[0]) / 2
    times, comparison = timed(rounds, lambda: compare_windows(url, Window(until=middle), Window(since=middle)))
    print(f"compare, two halves ({comparison.sessions_before:,} / {comparison.sessions_after:,} sessions): "
          f"{median(times):.3f} s (target <= 2 s); ratio to the anchor {median(times) / a:.2f}; "
          f"rounds {[round(x, 3) for x in times]}")
    lo, hi = span[0] + (span[1] - span[0]) * 0.49, span[0] + (span[1] - span[0]) * 0.51
    times, narrow = timed(rounds, lambda: compare_windows(url, Window(since=lo, until=middle),
                                                            Window(since=middle, until=hi)))
    print(f"compare, two 1% windows ({narrow.sessions_before:,} / {narrow.sessions_after:,} sessions, the "
          f"bootstrap): {median(times):.3f} s (target <= 2 s); rounds {[round(x, 3) for x in times]}")
    times, items = timed(rounds, lambda: advise(url))
    print(f"advise ({len(items)} recommendations): {median(times):.3f} s (target <= 2 s); ratio to the anchor "
          f"{median(times) / a:.2f}; rounds {[round(x, 3) for x in times]}")


def copy_to_postgres(path: Path, url: str) -> None:
    """Fill an empty PostgreSQL store with the SQLite table's events (once: later runs reuse them)."""
    from mcp_tracking.events import parse_timestamp
    from mcp_tracking.sinks.postgres import PostgresSink
    from mcp_tracking.sinks.sqlite import SQLiteSink

    pg = PostgresSink(url)
    if pg.count() == 0:
        batch: list[EventRecord] = []
        for e in SQLiteSink(path, read_only=True).iter_events():
            batch.append(EventRecord(e["event_name"], e["user_id"], e["session_id"], e["mcp_name"], e["metadata"],
                                     event_id=e["id"], created_at=parse_timestamp(e["created_at"])))
            if len(batch) == 10_000:
                pg.write(batch)
                batch = []
        pg.write(batch)
    pg.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", help="reuse (or create) this database instead of a temporary one")
    ap.add_argument("--compare", action="store_true", help="also time compare_windows (two halves of the span)")
    ap.add_argument("--pg", metavar="URL", help="also measure on this PostgreSQL database (filled from the "
                    "SQLite table when empty), against its own GROUP BY anchor")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(args.db) if args.db else Path(d) / "metrics.db"
        if not path.exists():
            generate(path, args.events, args.sessions)

        def sqlite_anchor() -> None:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            conn.execute("SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id").fetchall()
            conn.close()

        measure(f"sqlite:///{path.resolve()}", sqlite_anchor, args.rounds, args.compare)
        if args.pg:
            import psycopg

            copy_to_postgres(path, args.pg)

            def pg_anchor() -> None:
                with psycopg.connect(args.pg) as conn:
                    conn.execute("SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id").fetchall()

            measure(args.pg, pg_anchor, args.rounds, args.compare)


if __name__ == "__main__":
    main()
