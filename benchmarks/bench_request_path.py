"""The request path alone: the time a tracked ``tools/call`` spends inside ``TrackingMiddleware`` in a real server.

    python benchmarks/bench_request_path.py [--calls 2000] [--rounds 4] [--repeat 1]

``bench_overhead.py`` measures the whole cost of tracking (request path, the worker's share of the
interpreter lock, the caches the two evict for the server), but as a difference of two noisy per-call
times: on a 2-core virtual machine its rounds spread by ±15%. This one isolates the request path with a
steadier figure. A real in-process ``MCPServer`` serves real client calls, untracked; after each call the
middleware is run ``--repeat`` times on copies of that call's own request context (new arguments each time,
so no retries), in place, between real calls, where the server has just evicted the caches as it does in
production. Each run is timed on its own; the figure is the median over all of them (thousands of samples),
printed against the median untracked call of the same run. The worker runs as usual and stores in SQLite.

For counts that do not move with the machine's load, run it under callgrind and compare against
``--repeat 0``: ``valgrind --tool=callgrind --separate-threads=yes python benchmarks/bench_request_path.py
--calls 100 --rounds 1`` (the main thread's instructions; the difference divided by calls x repeat).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from _common import framework

from mcp_tracking import AnalyticsClient, SQLiteSink
from mcp_tracking.adapters.mcpserver import TrackingMiddleware


class Capture:
    """A pass-through middleware that keeps the last ``tools/call`` context and its wire result."""

    def __init__(self) -> None:
        self.last: tuple[Any, Any] | None = None

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        result = await call_next(ctx)
        if ctx.method == "tools/call":
            self.last = (ctx, result)
        return result


async def one_round(connect: Any, server: Any, call: Any, capture: Capture, mw: TrackingMiddleware,
                    calls: int, repeat: int, inside: list[float], bare: list[float]) -> None:
    async with connect(server) as client:
        for i in range(calls + 20):
            t0 = time.perf_counter()
            await call(client, "add", {"a": i, "b": 1})
            elapsed = time.perf_counter() - t0
            assert capture.last is not None
            ctx, result = capture.last

            async def call_next(_ctx: Any, _result: Any = result) -> Any:
                return _result

            for k in range(repeat):
                own = dataclasses.replace(ctx, params={**ctx.params, "arguments": {"a": i * repeat + k, "b": 1}})
                t1 = time.perf_counter()
                coro = mw(own, call_next)
                try:
                    coro.send(None)  # nothing in the path awaits anything but call_next, which returns at once
                except StopIteration:
                    pass
                else:
                    raise RuntimeError("the middleware suspended; this benchmark needs it to run straight through")
                if i >= 20:  # after a warm-up
                    inside.append(time.perf_counter() - t1)
            if i >= 20:
                bare.append(elapsed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="middleware runs per real call (0: none)")
    args = ap.parse_args()
    connect, make, call = framework("mcpserver")
    server = make("bench")
    capture = Capture()
    server.middleware.append(capture)
    with tempfile.TemporaryDirectory() as d:
        client = AnalyticsClient(SQLiteSink(Path(d) / "events.db"), handle_sigterm=False)
        mw = TrackingMiddleware(client, server=server)
        inside: list[float] = []
        bare: list[float] = []
        for _ in range(args.rounds):
            anyio.run(one_round, connect, server, call, capture, mw, args.calls, args.repeat, inside, bare)
        client.close()
        assert client.stats.failed_events == 0 and client.stats.dropped == 0
    b = statistics.median(bare) * 1e6
    if not inside:
        print(f"untracked call {b:.0f} µs (median of {len(bare)}); the middleware was not run (--repeat 0)")
        return
    m = statistics.median(inside) * 1e6
    q1, q3 = (x * 1e6 for x in statistics.quantiles(inside, n=4)[::2])
    print(f"MCPServer in process: untracked call {b:.0f} µs (median of {len(bare)}); inside TrackingMiddleware "
          f"{m:.1f} µs per call (median of {len(inside)}, quartiles {q1:.1f} to {q3:.1f}); "
          f"ratio {(b + m) / b:.3f} from the request path alone")


if __name__ == "__main__":
    main()
