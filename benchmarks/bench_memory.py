"""Resident memory over 1,000,000 tool calls across 200,000 sessions: flat, within a documented bound.

    python benchmarks/bench_memory.py [--calls 1000000] [--sessions 200000]

Drives the real recorder (the path every adapter uses: identity, session state, retry detection,
validation, events) with sessions interleaved the way a busy server sees them, events going to SQLite.
Prints resident memory before, after the first 10% of calls, and at the end (the ratio end / 10% is the
growth once the bounded structures are full), and the peak. Bound documented in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from mcp_tracking import AnalyticsClient, SQLiteSink
from mcp_tracking.core.recorder import CallInfo, Recorder

SCHEMA = {"type": "object", "properties": {"model_name": {"type": "string"}, "limit": {"type": "integer"}},
          "required": ["model_name"]}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=200_000)
    args = ap.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        client = AnalyticsClient(SQLiteSink(Path(d) / "mem.db"), handle_sigterm=False)
        recorder = Recorder(client.tracker)
        base = rss_mb()
        marks = []
        t0 = time.perf_counter()
        for i in range(args.calls):
            sid = f"session-{rng.randrange(args.sessions)}"
            info = CallInfo(tool_name="get_benchmark_results_by_filters", arguments={
                "model_name": f"model-{rng.randrange(50)}", "limit": rng.randrange(1, 20)},
                explicit_session=sid, explicit_user=f"user-{rng.randrange(5000)}", mcp_name="drea")
            handle = recorder.begin(info, schema=SCHEMA)
            recorder.finish(handle, result=[{"score": 1.0}])
            if i == args.calls // 10:
                marks.append(rss_mb())
            if i % 10_000 == 0:
                client.flush(60)  # keep the queue from being the thing measured
        client.flush(600)
        end = rss_mb()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stats = client.stats
        live = len(client.sessions)
        client.close(end_sessions=False)
    print(f"{args.calls:,} calls across {args.sessions:,} sessions in {time.perf_counter() - t0:.0f} s; "
          f"{stats.written:,} events written, {stats.dropped} dropped; live sessions kept: {live:,}")
    print(f"RSS: start {base:.0f} MB, after 10% of calls {marks[0]:.0f} MB, end {end:.0f} MB "
          f"(growth after 10%: x{end / marks[0]:.2f}); peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
