"""Per-call overhead of full tracking on in-process servers, as a ratio to the same server untracked.

    python benchmarks/bench_overhead.py [--calls 2000] [--rounds 7]
    python benchmarks/bench_overhead.py --transport stdio|http [--calls 1000] [--rounds 5]
    python benchmarks/bench_overhead.py --big-result 2000 --calls 200 [--rounds 7]
    python benchmarks/bench_overhead.py --latency --calls 4000 [--rounds 4]
    python benchmarks/bench_overhead.py --hostile --calls 1000 [--rounds 5]

For MCPServer (mcp 2.x) and, when installed, fastmcp: the same trivial tool called through a real
in-process client, untracked and with full tracking (live manifest check, compiled jsonschema validation,
retry/wrong-tool detection, session state, events queued to SQLite on the worker). Rounds alternate the
two servers in ABBA order, so that running first or second in a round favours neither; each round is
>= 2,000 calls; the figure is the median over rounds of µs per call, and the ratio of the medians, all
from the same run. Target: <= 1.05 on MCPServer. Each round's two measurements are also divided by each
other (they ran back to back, so slow drifts of the machine cancel): the median and quartiles of those
paired ratios show how far one run can be trusted.

Beside MCPServer, the same rounds also measure two reference middlewares (``_floor.py``; ``--no-floor``
skips them): one that only awaits ``call_next`` (the SDK hook's own cost) and a minimal one that looks up,
validates, times and queues one tuple that is thrown away. No tracker can cost less than the minimal one;
its ratio is this machine's floor for the run, and ``tracked / minimal`` is what tracking's own work adds.
``--big-result ROWS`` measures instead a tool that answers with a large JSON text (2,000 rows: ~400 KB;
use ``--calls 200``): what tracking costs when results are big.

``--hostile`` measures instead what the hostile-input defences cost, untracked vs tracked MCPServer in ABBA
rounds: a tool whose argument has a catastrophic ``pattern`` (``^(a+)+$``), called with 40 a's and a '!' (our
check runs on the linear-time engine, as the framework's does), and a tool called with 1 MB arguments (cut on
the request path before they are queued, counted against the queue's byte budget).

``--latency`` prints percentiles of each call's latency instead (p50 to p99.9) and their ratios: the tail is
where calls wait for the interpreter lock while the worker holds it.

``--stages`` adds full tracking cut off after the request path (every event refused at the queue) and after
the worker's processing (a store that keeps nothing): the steps between them show where the overhead goes.

``--transport stdio|http`` measures what a deployed server sees instead: the plain and the tracked
MCPServer each in its own process (``_server.py``), reached over stdio or streamable HTTP on 127.0.0.1 by
a real client in this process; the tracked one stores its events in SQLite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
from pydantic import Field

sys.path.insert(0, str(Path(__file__).parent))
from _common import abba, each_call_us, framework, median, paired, per_call_us

from mcp_tracking import AnalyticsClient, SQLiteSink, instrument


def pair(kind: str, db: Path) -> tuple[str, Any, Any, Any, Any, AnalyticsClient]:
    """(label, client factory, plain server, tracked server, call, the tracked server's analytics client)."""
    connect, make, call = framework(kind)
    plain, tracked = make("plain"), make("tracked")
    client = AnalyticsClient(SQLiteSink(db), handle_sigterm=False)
    instrument(tracked, client)
    return ("MCPServer (mcp 2.x)" if kind == "mcpserver" else "fastmcp"), connect, plain, tracked, call, client


def remote(transport: str, calls: int, rounds: int) -> None:
    """Plain and tracked servers in their own processes, over stdio or streamable HTTP."""
    import os
    import socket
    import subprocess

    from mcp import Client, StdioServerParameters

    here = Path(__file__).parent
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "BENCH_DB": str(Path(d) / "remote.db")}
        procs: list[subprocess.Popen[bytes]] = []
        targets: dict[str, object] = {}
        try:
            for kind in ("plain", "tracked"):
                if transport == "stdio":
                    targets[kind] = StdioServerParameters(command=sys.executable,
                                                          args=[str(here / "_server.py"), kind, "stdio"], env=env)
                    continue
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    port = sock.getsockname()[1]
                procs.append(subprocess.Popen([sys.executable, str(here / "_server.py"), kind, "http", str(port)],
                                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                deadline = time.monotonic() + 30
                while True:
                    with socket.socket() as sock:
                        if sock.connect_ex(("127.0.0.1", port)) == 0:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError("server did not start")
                    time.sleep(0.05)
                targets[kind] = f"http://127.0.0.1:{port}/mcp"

            async def call(c, name, args):
                return await c.call_tool(name, args)

            base: list[float] = []
            ours: list[float] = []
            for kind in abba(rounds, ("plain", "tracked")):
                us = anyio.run(per_call_us, Client, targets[kind], calls, call)
                (base if kind == "plain" else ours).append(us)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    b, o = median(base), median(ours)
    print(f"MCPServer over {transport}: untracked {b:.0f} µs/call, tracked {o:.0f} µs/call, overhead {o - b:+.0f} µs, "
          f"ratio {o / b:.3f}")
    print(f"   rounds untracked {[round(x) for x in base]}, tracked {[round(x) for x in ours]}")
    print(f"   {paired(base, ours)}")


def big_result(rows: int, calls: int, rounds: int) -> None:
    """A tool that answers with a large JSON text (no structured content): what tracking costs per call when
    the result is big, plain vs tracked MCPServer, ABBA rounds."""
    import json

    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    table = [{"model_name": f"model-{i}", "benchmark": "mmlu", "score": round(i * 0.37, 2), "tags": ["a", "b"],
              "notes": "x" * 40} for i in range(rows)]

    def results(query: str) -> dict:  # a plain dict: the SDK sends it as indented JSON text
        """Benchmark results matching a query."""
        return {"rows": table}

    def make(name: str) -> Any:
        server = MCPServer(name, log_level="WARNING")
        server.add_tool(results)
        return server

    async def call(c: Any, name: str, args: dict[str, Any]) -> Any:
        return await c.call_tool("results", {"query": f"q{args['a']}"})

    with tempfile.TemporaryDirectory() as d:
        plain, tracked = make("plain"), make("tracked")
        client = AnalyticsClient(SQLiteSink(Path(d) / "big.db"), handle_sigterm=False)
        instrument(tracked, client)
        times: dict[str, list[float]] = {"untracked": [], "tracked": []}
        for name in abba(rounds, ("untracked", "tracked")):
            server = plain if name == "untracked" else tracked
            times[name].append(anyio.run(per_call_us, Client, server, calls, call))
        client.close()
    size = len(json.dumps({"rows": table}, indent=2))
    b, o = median(times["untracked"]), median(times["tracked"])
    print(f"MCPServer, a {size / 1000:.0f} KB JSON text result: untracked {b:.0f} µs/call, tracked {o:.0f} µs/call, "
          f"ratio {o / b:.3f}")
    print(f"   {paired(times['untracked'], times['tracked'])}")


def hostile(calls: int, rounds: int) -> None:
    """The defences against hostile arguments, on their worst inputs: untracked vs tracked MCPServer."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    def tag(name: Annotated[str, Field(pattern=r"^(a+)+$")]) -> str:
        """Tag it."""
        return name

    def upload(blob: str) -> int:
        """Take a blob."""
        return len(blob)

    def make(name: str) -> Any:
        server = MCPServer(name, log_level="WARNING")
        server.add_tool(tag)
        server.add_tool(upload)
        return server

    evil = "a" * 40 + "!"
    blob = "x" * 1_000_000

    async def call_pattern(c: Any, name: str, args: dict[str, Any]) -> Any:
        return await c.call_tool("tag", {"name": evil})

    async def call_big(c: Any, name: str, args: dict[str, Any]) -> Any:
        return await c.call_tool("upload", {"blob": blob[:-1] + str(args["a"] % 10)})

    with tempfile.TemporaryDirectory() as d:
        plain, tracked = make("plain"), make("tracked")
        client = AnalyticsClient(SQLiteSink(Path(d) / "hostile.db"), handle_sigterm=False)
        instrument(tracked, client)
        for label, call, n in (("catastrophic pattern, 41 characters", call_pattern, calls),
                               ("1 MB arguments", call_big, max(20, calls // 20))):
            times: dict[str, list[float]] = {"untracked": [], "tracked": []}
            for name in abba(rounds, ("untracked", "tracked")):
                server = plain if name == "untracked" else tracked
                times[name].append(anyio.run(per_call_us, Client, server, n, call))
            b, o = median(times["untracked"]), median(times["tracked"])
            print(f"MCPServer, {label}: untracked {b:.0f} µs/call, tracked {o:.0f} µs/call, ratio {o / b:.3f}")
            print(f"   {paired(times['untracked'], times['tracked'])}")
        stats = client.stats
        client.close()
    print(f"   queue: {stats.queued_bytes} bytes held at the end, {stats.dropped} events dropped")


def latency_tail(calls: int, rounds: int) -> None:
    """Each call's latency, untracked and tracked MCPServer in ABBA rounds: percentiles and their ratios.
    The median shows the per-call cost; the tail shows the calls that waited for the interpreter lock while
    the worker held it (or for the collector)."""
    connect, make, call = framework("mcpserver")
    plain, tracked = make("plain"), make("tracked")
    with tempfile.TemporaryDirectory() as d:
        client = AnalyticsClient(SQLiteSink(Path(d) / "tail.db"), handle_sigterm=False)
        instrument(tracked, client)

        samples: dict[str, list[float]] = {"untracked": [], "tracked": []}
        for name in abba(rounds, ("untracked", "tracked")):
            samples[name] += anyio.run(each_call_us, connect, plain if name == "untracked" else tracked,
                                       calls, call)
        client.close()
    points = (0.5, 0.9, 0.99, 0.999)
    table = {}
    for name, xs in samples.items():
        xs.sort()
        table[name] = [xs[int(p * (len(xs) - 1))] for p in points]
    print(f"MCPServer per-call latency, {rounds} rounds x {calls} calls each:")
    for name, values in table.items():
        print(f"   {name:9s} " + "  ".join(f"p{p * 100:g} {v:6.0f} µs" for p, v in zip(points, values)))
    print("   ratio     " + "  ".join(f"p{p * 100:g} {o / b:6.3f}   " for p, b, o in
                                      zip(points, table["untracked"], table["tracked"])))


def floor_servers(make: Any) -> dict[str, Any]:
    """The two reference servers of ``_floor.py`` (MCPServer only)."""
    from _floor import MinimalMiddleware, NoopMiddleware

    noop, minimal = make("noop"), make("minimal")
    noop.middleware.append(NoopMiddleware())
    minimal.middleware.append(MinimalMiddleware(minimal))
    return {"no-op middleware": noop, "minimal middleware": minimal}


class DiscardSink:
    """A store that keeps nothing: the worker still builds, serialises and checks every event."""

    def write(self, batch: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def stage_servers(make: Any) -> tuple[dict[str, Any], list[AnalyticsClient]]:
    """Full tracking cut off after each stage: nothing queued (every event refused at the queue, so only the
    request path runs), and a store that keeps nothing (request path, queue and the worker's processing)."""
    unqueued, unstored = make("unqueued"), make("unstored")
    refusing = AnalyticsClient(DiscardSink(), handle_sigterm=False)
    refusing.emitter.emit = lambda record: True  # type: ignore[method-assign]
    discarding = AnalyticsClient(DiscardSink(), handle_sigterm=False)
    instrument(unqueued, refusing)
    instrument(unstored, discarding)
    return {"tracked, nothing queued": unqueued, "tracked, nothing stored": unstored}, [refusing, discarding]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--transport", choices=["in-process", "stdio", "http"], default="in-process")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the two reference middlewares (_floor.py) measured beside MCPServer")
    ap.add_argument("--stages", action="store_true",
                    help="also measure MCPServer tracking cut off after the request path and after the worker's "
                         "processing (where the overhead goes)")
    ap.add_argument("--big-result", type=int, metavar="ROWS",
                    help="instead: a tool answering with ROWS rows of JSON text (2000 rows: ~400 KB)")
    ap.add_argument("--hostile", action="store_true",
                    help="instead: a catastrophic pattern and 1 MB arguments, untracked and tracked MCPServer")
    ap.add_argument("--latency", action="store_true",
                    help="instead: percentiles of each call's latency (the tail), untracked and tracked MCPServer")
    args = ap.parse_args()
    if args.hostile:
        hostile(args.calls, args.rounds)
        return
    if args.latency:
        latency_tail(args.calls, args.rounds)
        return
    if args.big_result:
        big_result(args.big_result, args.calls, args.rounds)
        return
    if args.transport != "in-process":
        remote(args.transport, args.calls, args.rounds)
        return
    kinds = ["mcpserver"]
    try:
        import fastmcp  # noqa: F401

        kinds.append("fastmcp")
    except ImportError:
        print("fastmcp not installed: skipping it")
    with tempfile.TemporaryDirectory() as d:
        for kind in kinds:
            label, connect, plain, tracked, call, client = pair(kind, Path(d) / f"{kind}.db")
            servers = {"untracked": plain, "tracked": tracked}
            if kind == "mcpserver" and not args.no_floor:
                servers.update(floor_servers(framework(kind)[1]))
            extra_clients: list[AnalyticsClient] = []
            if kind == "mcpserver" and args.stages:
                staged, extra_clients = stage_servers(framework(kind)[1])
                servers.update(staged)
            times: dict[str, list[float]] = {name: [] for name in servers}
            order = list(servers)
            for name in abba(args.rounds, order):
                times[name].append(anyio.run(per_call_us, connect, servers[name], args.calls, call))
            client.close()
            for extra in extra_clients:
                extra.close()
            assert client.stats.failed_events == 0 and client.stats.dropped == 0
            base, ours = times["untracked"], times["tracked"]
            b, o = median(base), median(ours)
            print(f"{label}: untracked {b:.0f} µs/call, tracked {o:.0f} µs/call, overhead {o - b:+.0f} µs, "
                  f"ratio {o / b:.3f}" + ("  (target <= 1.05)" if "MCPServer" in label else ""))
            print(f"   rounds untracked {[round(x) for x in base]}, tracked {[round(x) for x in ours]}")
            print(f"   {paired(base, ours)}")
            for name in order[2:]:
                f = median(times[name])
                kind_of = "stage" if name.startswith("tracked") else "floor"
                print(f"   {kind_of}, {name}: {f:.0f} µs/call, ratio {f / b:.3f} ({paired(base, times[name])}); "
                      f"tracked / {name}: {o / f:.3f}")


if __name__ == "__main__":
    main()
