"""Shared helpers: medians, a realistic event mix, the trivial tool and its per-call timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


def framework(kind: str) -> tuple[Callable[[Any], Any], Callable[[str], Any], Callable[..., Any]]:
    """For ``kind`` ``"mcpserver"`` (mcp 2.x) or ``"fastmcp"``: (client factory, ``make(name)`` giving a new
    server with the ``add`` tool, ``call(client, name, args)`` giving the raw tool result)."""
    if kind == "mcpserver":
        from mcp import Client
        from mcp.server.mcpserver import MCPServer

        def make(name: str) -> Any:
            server = MCPServer(name, log_level="WARNING")
            server.add_tool(add)
            return server

        async def call(c: Any, name: str, args: dict[str, Any]) -> Any:
            return await c.call_tool(name, args)

        return Client, make, call
    import logging

    from fastmcp import Client as FastMCPClient
    from fastmcp import FastMCP

    logging.getLogger("fastmcp").setLevel(logging.WARNING)

    def make_fastmcp(name: str) -> Any:
        server = FastMCP(name)
        server.tool(add)
        return server

    async def call_fastmcp(c: Any, name: str, args: dict[str, Any]) -> Any:
        return await c.call_tool_mcp(name, args)

    return FastMCPClient, make_fastmcp, call_fastmcp


async def per_call_us(connect: Callable[[Any], Any], server: Any, calls: int, call: Any) -> float:
    """µs per ``add`` call through a real client (``connect(server)``), after a warm-up; distinct arguments
    every time, so tracking sees no retries."""
    async with connect(server) as client:
        await warm_up(client, call)
        t0 = time.perf_counter()
        for i in range(calls):
            await call(client, "add", {"a": i, "b": 1})
        return (time.perf_counter() - t0) / calls * 1e6


async def each_call_us(connect: Callable[[Any], Any], server: Any, calls: int, call: Any) -> list[float]:
    """Like :func:`per_call_us`, but the latency of each call, in µs (for percentiles)."""
    out: list[float] = []
    async with connect(server) as client:
        await warm_up(client, call)
        for i in range(calls):
            t0 = time.perf_counter()
            await call(client, "add", {"a": i, "b": 1})
            out.append((time.perf_counter() - t0) * 1e6)
    return out


async def warm_up(client: Any, call: Any) -> None:
    """50 calls before timing: caches, lazy imports and the first session's setup out of the way."""
    for i in range(50):
        await call(client, "add", {"a": i, "b": 1})


def abba(rounds: int, names: Sequence[str]) -> Iterator[str]:
    """The variants to run, round after round: in order in even rounds, reversed in odd ones (ABBA), so that
    no variant always runs first or last."""
    for r in range(rounds):
        yield from (names if r % 2 == 0 else names[::-1])


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def paired(base: list[float], ours: list[float]) -> str:
    """The ratio of each round's two measurements, taken back to back (so slow drifts of the machine cancel):
    their median and quartiles, as text."""
    ratios = sorted(o / b for b, o in zip(base, ours))
    q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return f"paired per-round ratio: median {q2:.3f}, quartiles {q1:.3f} to {q3:.3f}"


def rounds(fn: Callable[[], float], n: int) -> list[float]:
    return [fn() for _ in range(n)]


def event_mix(i: int) -> tuple[str, dict[str, Any]]:
    """The events a tool call produces, in the proportions a real server sees (~540 bytes each)."""
    k = i % 4
    params = {"model_name": f"model-{i % 17}", "benchmark": "mmlu", "limit": 10, "filters": {"min_score": 50}}
    if k == 0:
        return "tool_call_started", {"tool_name": "get_benchmark_results_by_filters", "tool_params": params,
                                     "call_sequence": i, "is_retry": False, "retry_attempt": 0,
                                     "previous_tool_name": "list_models",
                                     "params_hash": "5f2b1c0d9e8a7b6c5d4e3f2a1b0c9d8e", "mcp_tool_available": True}
    if k == 1:
        return "tool_call_completed", {"tool_name": "get_benchmark_results_by_filters", "tool_params": params,
                                       "success": True, "execution_time_ms": 12.345, "call_sequence": i,
                                       "params_hash": "5f2b1c0d9e8a7b6c5d4e3f2a1b0c9d8e", "result_size": 2048}
    if k == 2:
        return "tool_call_failed", {"tool_name": "get_benchmark_results", "tool_params": params,
                                    "error_type": "tool_error", "error_message": "no results for model",
                                    "execution_time_ms": 3.2, "call_sequence": i, "retry_eligible": True}
    return "answer_complete", {"completeness_score": 1.0, "detection_method": "heuristic_validation",
                               "checks_passed": ["has_result_data", "has_multiple_results"], "checks_failed": [],
                               "tool_name": "get_benchmark_results_by_filters", "result_count": 5}
