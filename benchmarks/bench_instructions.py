"""Instructions per tool call, tracked vs untracked, counted by callgrind: figures that do not move with the
machine's load (the wall-clock benchmarks here spread ±10-15% between runs).

    python benchmarks/bench_instructions.py [--framework mcpserver|fastmcp] [--lo 100 --hi 300] [--variants ...]

Each variant (untracked, the minimal reference middleware of ``_floor.py`` on MCPServer, tracked into SQLite
through the writer process as by default, and tracked with the worker thread writing, ``tracked-thread``) runs
twice under ``valgrind --tool=callgrind --separate-threads=yes --trace-children=yes``:
``--lo`` and ``--hi`` calls through a real in-process client, after the same warm-up. The difference of the two
runs divided by ``hi - lo`` is the cost of one call, without the start-up and the imports. Printed per thread:
the server's own thread (the request path, and the client's side of the call, which is the same in both
variants) and every other thread of every process together (the emitter's worker, the writer process, and
the framework's threads for a sync
tool), each with its ratio to untracked. A whole run takes a few minutes: the interpreter is ~50x slower
under callgrind.

``--variants facts-downstream`` (with others, comma-separated) measures a floor rather than a mode of the
package: tracking whose call start and end each queue one tuple and decide nothing (no session state, no
params hash, no event metadata), what the server's thread would keep if the session facts were built
downstream.

``PYTHONPATH=/path/to/other/checkout`` measures another version of the package with the same harness (how
the figures in docs/performance.md compare two commits).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
from _common import framework, warm_up


async def child(kind: str, variant: str, calls: int, db: str) -> None:
    Path(db + ".pid").write_text(str(os.getpid()))
    connect, make, call = framework(kind)
    server = make(variant)
    client = None
    if variant == "minimal":  # the floor under any tracker (_floor.py): lookup, validation, timing, one tuple
        from _floor import MinimalMiddleware

        server.middleware.append(MinimalMiddleware(server))
    if variant.startswith("tracked") or variant == "facts-downstream":
        from mcp_tracking import AnalyticsClient, instrument

        writer = "thread" if variant == "tracked-thread" else None  # the default: the writer process
        client = AnalyticsClient(f"sqlite:///{db}", handle_sigterm=False, writer=writer)
        instrument(server, client)
        if variant == "facts-downstream":
            facts_downstream(client)
    async with connect(server) as c:
        await warm_up(c, call)
        for i in range(calls):
            await call(c, "add", {"a": i, "b": 1})
    if client is not None:
        client.close()


def facts_downstream(client: Any) -> None:
    """Measurement only, not a mode of the package: the floor of building the session facts downstream. The
    tracker's call start and end each queue one tuple with what a downstream stage would need (session,
    user, tool, arguments, the session's facts, the time; then the duration, result size and fingerprint),
    and decide nothing: no session lookup, no sequence, retry or wrong-tool state, no params hash, no event
    metadata. Identity, the adapter's reading of the request, validation and the result's fingerprint stay
    as they are. Whatever the downstream stage costs, the server's thread cannot do better than this."""
    import time

    from mcp_tracking.core.sessions import SessionState
    from mcp_tracking.core.tracker import CallHandle, now_us

    tracker = client.tracker
    emit = tracker._emit
    shared = SessionState("-", "-", None)

    def begin_call(session_id: str, user_id: str, mcp_name: str | None, tool: str, params: Any, *,
                   session_facts: Any = None, created_us: int | None = None, **_: Any) -> CallHandle:
        started = time.perf_counter()
        created = created_us if created_us is not None else now_us()
        emit("tool_call_started", user_id, session_id, mcp_name, {"tool_name": tool, "tool_params": params,
                                                                  "facts": session_facts}, created)
        return CallHandle(shared, user_id, mcp_name, tool, params, "", 0, started)

    def complete(handle: CallHandle, *, elapsed_ms: float, result_size: int | None = None,
                 fingerprint: str | None = None, context: Any = None) -> None:
        handle.finished = True
        emit("tool_call_completed", handle.user_id, handle.state.session_id, handle.mcp_name,
             {"tool_name": handle.tool_name, "execution_time_ms": elapsed_ms, "result_size": result_size,
              "fingerprint": fingerprint})

    tracker.begin_call, tracker.complete = begin_call, complete


def totals(out_dir: str) -> dict[tuple[int, int], int]:
    """Instructions per (process, thread) of one run (callgrind numbers a process's threads from 1, its main
    thread; files are ``cg.out.<pid>-<thread>``)."""
    per: dict[tuple[int, int], int] = {}
    for path in glob.glob(os.path.join(out_dir, "cg.out.*")):
        m = re.search(r"cg\.out\.(\d+)(?:-(\d+))?$", path)
        if m is None:
            continue
        key = (int(m.group(1)), int(m.group(2) or 1))
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("totals:", "summary:")):
                    per[key] = per.get(key, 0) + int(line.split()[1])
                    break
    return per


def count(kind: str, variant: str, calls: int) -> tuple[int, int]:
    """(the server's thread, every other thread of every process) instructions of one run under callgrind,
    the writer process included (``--trace-children``)."""
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as d:
        cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--trace-children=yes",
               f"--callgrind-out-file={d}/cg.out.%p", sys.executable, __file__, "--child", kind, variant,
               str(calls), os.path.join(d, "events.db")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"callgrind run failed ({variant}, {calls} calls):\n{proc.stderr[-2000:]}")
        per = totals(d)
        main_pid = int(Path(d, "events.db.pid").read_text())
    server = per.get((main_pid, 1), 0)
    return server, sum(per.values()) - server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="mcpserver", choices=["mcpserver", "fastmcp"])
    parser.add_argument("--lo", type=int, default=100)
    parser.add_argument("--hi", type=int, default=300)
    parser.add_argument("--variants", help="comma-separated (untracked always runs first); also "
                        "facts-downstream: the floor of building the session facts downstream (measurement only)")
    parser.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "VARIANT", "CALLS", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, variant, calls, db = args.child
        anyio.run(child, kind, variant, int(calls), db)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    import mcp_tracking

    print(f"mcp_tracking from {Path(mcp_tracking.__file__).parent}; {args.framework}; "
          f"calls {args.hi} minus {args.lo}", flush=True)
    per_call: dict[str, tuple[float, float]] = {}
    variants: tuple[str, ...] = (("untracked", "minimal", "tracked", "tracked-thread")
                                 if args.framework == "mcpserver" else ("untracked", "tracked", "tracked-thread"))
    if args.variants:
        variants = ("untracked", *(v for v in args.variants.split(",") if v and v != "untracked"))
    for variant in variants:
        lo, hi = count(args.framework, variant, args.lo), count(args.framework, variant, args.hi)
        n = args.hi - args.lo
        per_call[variant] = ((hi[0] - lo[0]) / n, (hi[1] - lo[1]) / n)
    base_main, base_other = per_call["untracked"]
    rows: list[tuple[Any, ...]] = []
    for variant, (main_t, other) in per_call.items():
        rows.append((variant, f"{main_t / 1e3:,.0f}k", f"{main_t / base_main:.3f}", f"{other / 1e3:,.0f}k",
                     f"{(main_t + other) / 1e3:,.0f}k", f"{(main_t + other) / (base_main + base_other):.3f}"))
    print(f"{'variant':<16} {'server thread':>14} {'ratio':>7} {'other threads':>14} {'total':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r[0]:<16} {r[1]:>14} {r[2]:>7} {r[3]:>14} {r[4]:>9} {r[5]:>7}")


if __name__ == "__main__":
    main()
