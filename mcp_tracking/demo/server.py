"""A drea-like benchmark-results server: the example every doc and the ``demo`` command use.

Its data is a small synthetic table bundled with the package (``benchmarks.json``). The tools are
deliberately ordinary: a listing, a lookup that raises for unknown models, a filtered search with
typed arguments, a leaderboard, a comparison and a flaky pricing feed.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def dataset() -> list[dict[str, Any]]:
    text = resources.files("mcp_tracking.demo").joinpath("benchmarks.json").read_text(encoding="utf-8")
    return list(json.loads(text)["results"])


def list_models() -> list[str]:
    """List the models that have benchmark results."""
    return sorted({r["model_name"] for r in dataset()})


def list_benchmarks() -> list[str]:
    """List the benchmarks that results exist for."""
    return sorted({r["benchmark"] for r in dataset()})


def get_benchmark_results(model_name: str) -> list[dict[str, Any]]:
    """All benchmark results of one model (exact model name, see list_models)."""
    rows = [r for r in dataset() if r["model_name"] == model_name]
    if not rows:
        raise ValueError(f"no results for model {model_name!r}")
    return rows


def get_benchmark_results_by_filters(
    model_name: str | None = None,
    benchmark: str | None = None,
    min_score: float | None = None,
    limit: int = 10,
) -> list[dict[str, Any]]:
    """Search results by model, benchmark and minimum score; best scores first."""
    rows = [
        r for r in dataset()
        if (model_name is None or r["model_name"] == model_name)
        and (benchmark is None or r["benchmark"] == benchmark)
        and (min_score is None or r["score"] >= min_score)
    ]
    rows.sort(key=lambda r: -r["score"])
    return rows[: max(0, limit)]


def get_leaderboard(benchmark: str, top_k: int = 5) -> list[dict[str, Any]]:
    """The top models on one benchmark."""
    if benchmark not in list_benchmarks():
        raise ValueError(f"unknown benchmark {benchmark!r}; see list_benchmarks")
    return get_benchmark_results_by_filters(benchmark=benchmark, limit=top_k)


def compare_models(model_names: list[str], benchmark: str) -> dict[str, float | None]:
    """Scores of several models on one benchmark, side by side."""
    out: dict[str, float | None] = {}
    for m in model_names:
        hit = [r["score"] for r in dataset() if r["model_name"] == m and r["benchmark"] == benchmark]
        out[m] = hit[0] if hit else None
    return out


_pricing_calls = 0
_pricing_lock = threading.Lock()


def get_live_pricing(model_name: str) -> dict[str, Any]:
    """Current price per 1k tokens from the (flaky) upstream pricing feed."""
    global _pricing_calls
    with _pricing_lock:
        _pricing_calls += 1
        fail = _pricing_calls % 2 == 1  # every other call times out upstream
    if fail:
        raise TimeoutError("pricing feed did not answer in time")
    rows = [r for r in dataset() if r["model_name"] == model_name]
    if not rows:
        raise ValueError(f"unknown model {model_name!r}")
    return {"model_name": model_name, "cost_per_1k_tokens": rows[0]["cost_per_1k_tokens"]}


TOOLS = [list_models, list_benchmarks, get_benchmark_results, get_benchmark_results_by_filters, get_leaderboard,
         compare_models, get_live_pricing]


def build_server(name: str = "drea", *, quiet_tool_errors: bool = True) -> Any:
    """The demo server on whichever MCP SDK is installed: ``MCPServer`` (mcp 2.x) or ``FastMCP`` (mcp 1.x).

    The demo's tools fail on purpose; ``quiet_tool_errors`` keeps the SDK from logging a rich traceback
    for each failure (which is also slow: ~0.7 s per traceback on these machines).
    """
    if quiet_tool_errors:
        for logger_name in ("mcp.server.mcpserver", "mcp.server.fastmcp", "mcp.server.lowlevel"):
            logging.getLogger(logger_name).setLevel(logging.CRITICAL)
    try:
        from mcp.server.mcpserver import MCPServer

        server: Any = MCPServer(name, log_level="WARNING")
    except ImportError:  # mcp 1.x
        server = importlib.import_module("mcp.server.fastmcp").FastMCP(name, log_level="WARNING")
    for tool in TOOLS:
        server.add_tool(tool)
    return server


def completeness_checks() -> dict[str, list[Any]]:
    """The demo's answer-completeness checks: search results should have data, several rows and scores."""
    from mcp_tracking.core.completeness import has_multiple_results, has_result_data, includes_metrics

    return {
        "get_benchmark_results_by_filters": [has_result_data, has_multiple_results,
                                             includes_metrics("score", "benchmark")],
        "get_leaderboard": [has_result_data, has_multiple_results, includes_metrics("score")],
    }


def main() -> None:  # pragma: no cover - run as a stdio server: python -m mcp_tracking.demo.server
    import sys

    from mcp_tracking import AnalyticsClient, instrument

    server = build_server()
    url = sys.argv[1] if len(sys.argv) > 1 else None
    instrument(server, AnalyticsClient(url, mcp_name="drea"), completeness=completeness_checks(),
               add_outcome_tool=True)
    server.run("stdio")


if __name__ == "__main__":  # pragma: no cover
    main()
