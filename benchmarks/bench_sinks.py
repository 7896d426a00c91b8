"""PostgreSQL: sustained events/s against a raw COPY, and the ten metrics over 1,000,000 events.

    python benchmarks/bench_sinks.py --pg postgresql://postgres@127.0.0.1:5432/bench [--events 100000]
           [--rounds 3] [--metrics-events 1000000] [--only drain|metrics]

1. The emitter draining into PostgreSQL (processors, COPY into a staging table, INSERT ... ON CONFLICT DO
   NOTHING, one transaction per 1,000 rows) as a ratio to a raw ``COPY`` of the same, already-built rows
   straight into the same table, one transaction per 1,000 rows; medians of the rounds, same run.
   Target >= 0.8.
2. compute_metrics over 1,000,000 events / 100,000 sessions in PostgreSQL, and as the anchor one plain
   ``GROUP BY session_id`` count over the same table. Target <= 1 s.
The database given is used as scratch: its raw_analytics table is dropped and recreated.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import psycopg
from _common import event_mix, median
from bench_metrics import session_events

from mcp_tracking import AnalyticsClient, compute_metrics
from mcp_tracking.emit.processors import default_processors
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks.postgres import COLUMNS, PostgresSink, _rows, ensure_schema


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_analytics")
        conn.execute("DROP TABLE IF EXISTS mcp_tracking_meta")
    with psycopg.connect(url) as conn:
        ensure_schema(conn)


def prepared(n: int) -> list[EventRecord]:
    procs = default_processors()
    out = []
    for i in range(n):
        name, md = event_mix(i)
        r = EventRecord(name, "user_1", f"s{i % 997}", "drea", md)
        for p in procs:
            p(r)
        out.append(r)
    return out


def raw_copy_rate(url: str, n: int) -> float:
    reset(url)
    rows = list(_rows(prepared(n)))
    with psycopg.connect(url) as conn:
        t = time.perf_counter()
        for i in range(0, n, 1000):
            with conn.cursor() as cur, cur.copy(f"COPY raw_analytics ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows[i:i + 1000]:
                    copy.write_row(row)
            conn.commit()
        return n / (time.perf_counter() - t)


def drain_rate(url: str, n: int) -> float:
    reset(url)
    # the whole run queued at once: room for it (the byte budget's 64 MiB would drop ~14% of 100,000 events)
    client = AnalyticsClient(PostgresSink(url), max_queue_size=n + 10, max_queue_bytes=1 << 30, batch_size=n,
                             flush_interval=3600, handle_sigterm=False)
    client.track("user_1", "warm_up", {}, None, "drea")  # the writer (process or thread) running before the clock
    assert client.flush(60)
    mixes = [event_mix(i) for i in range(n)]
    for _i, (name, md) in enumerate(mixes[:-1]):
        client.track("user_1", name, md, None, "drea")
    client.emitter.batch_size = 1000
    t = time.perf_counter()
    client.track("user_1", *mixes[-1], None, "drea")
    assert client.flush(600)
    elapsed = time.perf_counter() - t
    assert client.stats.written == n + 1, client.stats
    client.close(end_sessions=False)
    return n / elapsed


def load_metrics_table(url: str, events: int, sessions: int) -> int:
    reset(url)
    rng = random.Random(42)
    procs = default_processors()
    per_session = max(1, events // sessions)
    total = 0
    with psycopg.connect(url) as conn:
        batch: list[tuple[Any, ...]] = []
        for s in range(sessions):
            evs = session_events(rng, f"s{s:06d}", f"user_{s % 500}", 1_764_000_000_000_000 + s * 1000)
            for r in evs[:per_session]:
                for p in procs:
                    p(r)
                batch.extend(_rows([r]))
            if len(batch) >= 50_000 or s == sessions - 1:
                with conn.cursor() as cur, cur.copy(f"COPY raw_analytics ({', '.join(COLUMNS)}) FROM STDIN") as cp:
                    for row in batch:
                        cp.write_row(row)
                conn.commit()
                total += len(batch)
                batch = []
                print(f"\rloading: {total:,} events", end="", file=sys.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE raw_analytics")
    print(file=sys.stderr)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", required=True)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--metrics-events", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--only", choices=["drain", "metrics"], help="run one of the two parts")
    args = ap.parse_args()
    if args.only != "metrics":
        drain(args)
    if args.only != "drain":
        metrics(args)


def drain(args: argparse.Namespace) -> None:
    raws, ours = [], []
    for _ in range(args.rounds):
        raws.append(raw_copy_rate(args.pg, args.events))
        ours.append(drain_rate(args.pg, args.events))
    print(f"PostgreSQL sustained drain: mcp-tracking {median(ours):,.0f} ev/s, raw COPY {median(raws):,.0f} ev/s, "
          f"ratio {median(ours) / median(raws):.2f} (target >= 0.8); per round "
          f"{[round(o / r, 2) for o, r in zip(ours, raws)]}")


def metrics(args: argparse.Namespace) -> None:
    n = load_metrics_table(args.pg, args.metrics_events, args.sessions)
    anchor, took = [], []
    for _ in range(args.rounds):
        with psycopg.connect(args.pg) as conn:
            t = time.perf_counter()
            conn.execute("SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id").fetchall()
            anchor.append(time.perf_counter() - t)
        t = time.perf_counter()
        compute_metrics(args.pg)
        took.append(time.perf_counter() - t)
    print(f"{n:,} events: all ten metrics in {median(took):.3f} s (target <= 1 s); anchor GROUP BY session_id "
          f"{median(anchor):.3f} s; rounds {[round(x, 3) for x in took]}")


if __name__ == "__main__":
    main()
