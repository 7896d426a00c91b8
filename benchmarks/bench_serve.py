"""``mcp-tracking serve``'s page times on a large store, against a plain ``GROUP BY session_id`` on the same
table measured in the same run.

    python benchmarks/bench_serve.py [--db PATH] [--rounds 3]

Uses (or generates, with ``bench_metrics.py``'s generator) a 1,000,000-event SQLite store, builds the app and
asks each page through starlette's test client (the whole request, HTML included). The first request of the
session list builds the per-session index (cached until the store's event count changes); it is printed
apart. Target: <= 300 ms per page.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median
from bench_metrics import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", help="reuse (or create) this database")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from starlette.testclient import TestClient

    from mcp_tracking.report.serve import build_app

    with tempfile.TemporaryDirectory() as d:
        path = Path(args.db) if args.db else Path(d) / "serve.db"
        if not path.exists():
            generate(path, 1_000_000, 100_000)
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        t = time.perf_counter()
        conn.execute("SELECT session_id, COUNT(*) FROM raw_analytics GROUP BY session_id").fetchall()
        anchor = time.perf_counter() - t
        client = TestClient(build_app(f"sqlite:///{path.resolve()}"))
        t = time.perf_counter()
        listing = client.get("/sessions").text
        first = time.perf_counter() - t
        sid = re.search(r'href="/sessions/([^"]+)"', listing)
        pages = ["/", "/sessions", "/sessions?sort=clarity&order=asc&page=20", "/advise", "/tools/list_models",
                 f"/sessions/{sid.group(1) if sid else 'none'}"]
        print(f"{conn.execute('SELECT COUNT(*) FROM raw_analytics').fetchone()[0]:,} events; anchor GROUP BY "
              f"session_id {anchor * 1000:.0f} ms; first /sessions (builds the session index) {first * 1000:.0f} ms")
        for p in pages:
            times = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                r = client.get(p)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (p, r.status_code)
            m = median(times)
            print(f"{p:<45} {m * 1000:7.0f} ms (target <= 300 ms; {m / anchor:.1f}x the anchor)")


if __name__ == "__main__":
    main()
