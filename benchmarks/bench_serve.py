"""``mcp-tracking serve``'s page times on a large store, against a plain ``GROUP BY session_id`` on the same
table measured in the same run.

    python benchmarks/bench_serve.py [--db PATH] [--pg URL] [--rounds 3]

Uses (or generates, with ``bench_metrics.py``'s generator) a 1,000,000-event SQLite store (and, with ``--pg``,
a PostgreSQL database filled from it), builds the app as ``mcp-tracking serve`` does (warming up as it
starts) and asks each page through starlette's test client (the whole request, HTML included):

- every response from the start, while the parts are still being read (a "still reading" page, 503) and
  after: the slowest of them is the figure for "no request waits";
- how long until each page is ready;
- each page once ready, median of ``--rounds``. Target: <= 300 ms per page.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parent))
from _common import median
from bench_metrics import copy_to_postgres, generate


def measure(url: str, anchor: float, rounds: int) -> None:
    from starlette.testclient import TestClient

    from mcp_tracking.report.serve import SWITCH_INTERVAL, build_app
    from mcp_tracking.sinks import sink_from_url

    sys.setswitchinterval(SWITCH_INTERVAL)  # as `mcp-tracking serve` runs
    span = sink_from_url(url, read_only=True).time_span({})  # type: ignore[attr-defined]
    middle = (span[0] + (span[1] - span[0]) / 2).isoformat()
    started = time.perf_counter()
    client = TestClient(build_app(url))  # warms up as `mcp-tracking serve` does
    every: list[float] = []

    def get(p: str) -> Any:
        t = time.perf_counter()
        r = client.get(p)
        every.append(time.perf_counter() - t)
        assert r.status_code in (200, 503), (p, r.status_code)
        return r

    def until_ready(p: str) -> tuple[Any, float]:
        t = time.perf_counter()
        while (r := get(p)).status_code == 503:
            time.sleep(0.1)
        return r, time.perf_counter() - t

    listing, waited = until_ready("/sessions")
    print(f"{url.split('://')[0]}: anchor GROUP BY session_id {anchor * 1000:.0f} ms; the session list ready "
          f"{time.perf_counter() - started:.1f} s after start ({waited:.1f} s of it polled)")
    sid = re.search(r'href="/sessions/([^"]+)"', listing.text)
    pages = ["/", "/sessions", "/sessions?sort=clarity&order=asc&page=20", "/advise", "/tools/list_models",
             f"/sessions/{sid.group(1) if sid else 'none'}", f"/compare?split={quote(middle)}"]
    for p in pages:
        _, ready = until_ready(p)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            assert get(p).status_code == 200
            times.append(time.perf_counter() - t)
        m = median(times)
        print(f"{p[:45]:<45} {m * 1000:7.0f} ms (target <= 300 ms; {m / anchor:.1f}x the anchor); "
              f"ready after {ready:.1f} s")
    print(f"every response, 'still reading' pages included ({len(every)}): slowest {max(every) * 1000:.0f} ms, "
          f"median {median(every) * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", help="reuse (or create) this database")
    ap.add_argument("--pg", metavar="URL", help="also measure on this PostgreSQL database (filled from the "
                    "SQLite table when empty)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(args.db) if args.db else Path(d) / "serve.db"
        if not path.exists():
            generate(path, 1_000_000, 100_000)
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        t = time.perf_counter()
        conn.execute("SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id").fetchall()
        anchor = time.perf_counter() - t
        print(f"{conn.execute('SELECT COUNT(*) FROM raw_analytics').fetchone()[0]:,} events")
        measure(f"sqlite:///{path.resolve()}", anchor, args.rounds)
        if args.pg:
            import psycopg

            copy_to_postgres(path, args.pg)
            with psycopg.connect(args.pg) as pg:
                t = time.perf_counter()
                pg.execute("SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id").fetchall()
                anchor = time.perf_counter() - t
            measure(args.pg, anchor, args.rounds)


if __name__ == "__main__":
    main()
