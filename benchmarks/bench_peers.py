"""mcp-tracking beside the tools a user would pick instead, on the same servers, in one run.

    pip install agentcat posthog        # the peers (not dependencies of mcp-tracking)
    python benchmarks/bench_peers.py [--calls 1000] [--rounds 5]

For MCPServer (mcp 2.x) and fastmcp: the same trivial tool through a real in-process client, untracked,
with mcp-tracking (manifest check, compiled schema validation, retry/wrong-tool detection, session state,
events stored in SQLite by the worker), with agentcat 2.x and with posthog's MCP instrumentation. Network
sending is off: posthog's client is built with ``send=False``; agentcat's uploader points at a local
HTTP receiver that answers 200 (started here), so it does its normal work without leaving the machine.
On MCPServer the minimal reference middleware of ``_floor.py`` (lookup, validation, timing, one queued tuple
thrown away) runs beside them: the floor under any tracker in that run. Rounds run the variants in ABBA
order; the figure is the median over rounds of µs per call and its ratio to the untracked median of the same
run. Target: mcp-tracking <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from _common import abba, framework, median, per_call_us

os.environ.setdefault("DISABLE_DIAGNOSTICS", "true")  # agentcat's own install telemetry

from mcp_tracking import AnalyticsClient, SQLiteSink, instrument


class _Null(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_PUT = do_POST

    def log_message(self, *args: object) -> None:
        pass


def null_receiver() -> str:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Null)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"



def variants(kind: str, db: Path, receiver: str) -> tuple[Callable[[Any], Any], Any, dict[str, Any], list[Any]]:
    """(client factory, call, {label: server}, things to close) for ``kind`` in (mcpserver, fastmcp)."""
    closers: list[Any] = []
    connect, make, call = framework(kind)
    servers: dict[str, Any] = {"untracked": make("plain")}
    ours = make("ours")
    client = AnalyticsClient(SQLiteSink(db), handle_sigterm=False)
    instrument(ours, client)
    closers.append(client)
    servers["mcp-tracking"] = ours
    if kind == "mcpserver":  # the floor under any tracker (benchmarks/_floor.py), for reading the ratios
        from _floor import MinimalMiddleware

        floor = make("minimal")
        floor.middleware.append(MinimalMiddleware(floor))
        servers["minimal middleware (reference)"] = floor
    try:
        import agentcat

        s = make("agentcat")
        agentcat.track(s, "proj_bench", agentcat.AgentCatOptions(api_base_url=receiver, disable_diagnostics=True))
        servers["agentcat " + agentcat.__version__] = s
    except ImportError:
        print("agentcat not installed: skipped")
    try:
        import posthog
        from posthog import Posthog
        from posthog.mcp import instrument as ph_instrument

        s = make("posthog")
        ph = Posthog("phc_bench", host=receiver, send=False)
        ph_instrument(s, ph)
        closers.append(ph)
        servers["posthog " + posthog.VERSION] = s
    except ImportError:
        print("posthog not installed: skipped")
    return connect, call, servers, closers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    receiver = null_receiver()
    kinds = ["mcpserver"]
    try:
        import fastmcp  # noqa: F401

        kinds.append("fastmcp")
    except ImportError:
        print("fastmcp not installed: skipping it")
    print(f"{args.rounds} rounds x {args.calls} calls per variant; median µs per call, ratio to untracked")
    print("| server | variant | µs/call | ratio |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for kind in kinds:
            connect, call, servers, closers = variants(kind, Path(d) / f"{kind}.db", receiver)
            times: dict[str, list[float]] = {label: [] for label in servers}
            for label in abba(args.rounds, list(servers)):
                times[label].append(anyio.run(per_call_us, connect, servers[label], args.calls, call))
            base = median(times["untracked"])
            for label, xs in times.items():
                m = median(xs)
                print(f"| {'MCPServer' if kind == 'mcpserver' else 'fastmcp'} | {label} | {m:.0f} | {m / base:.2f} |")
            for c in closers:
                for method in ("close", "shutdown"):
                    fn = getattr(c, method, None)
                    if fn is not None:
                        fn()
                        break


if __name__ == "__main__":
    main()
