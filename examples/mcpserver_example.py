"""mcp 2.x MCPServer with TrackingMiddleware.

    python examples/mcpserver_example.py            # in-process demo: a few calls, then the metrics
    python examples/mcpserver_example.py stdio      # serve over stdio (events: ./mcpserver_example.db)
    python examples/mcpserver_example.py http 8765  # serve streamable HTTP on 127.0.0.1:8765/mcp
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

from mcp_tracking import AnalyticsClient, TrackingMiddleware, compute_metrics, has_result_data

mcp = MCPServer("drea", log_level="WARNING")


@mcp.tool()
def list_models() -> list[str]:
    """Models with benchmark results."""
    return ["claude-sonnet-4", "gpt-4.1"]


@mcp.tool()
def get_benchmark_results_by_filters(model_name: str, limit: int = 5) -> list[dict]:
    """Benchmark results of one model."""
    if model_name not in list_models():
        raise ValueError(f"unknown model {model_name!r}")
    return [{"model_name": model_name, "benchmark": "mmlu", "score": 88.1}][:limit]


analytics = AnalyticsClient(os.environ.get("MCP_TRACKING_URL", "sqlite:///mcpserver_example.db"), mcp_name="drea")
mcp.middleware.append(TrackingMiddleware(analytics, server=mcp,
                                         completeness={"get_benchmark_results_by_filters": [has_result_data]}))


async def demo() -> None:
    from mcp import Client

    async with Client(mcp) as client:
        for name, args in [("get_benchmark_results_advanced", {"model_name": "gpt-4.1"}),
                           ("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "limit": "two"}),
                           ("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "limit": 2})]:
            result = await client.call_tool(name, args)
            print(f"{name}: error={result.is_error} {result.content[0].text[:90]!r}")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "demo"
    if mode == "stdio":
        mcp.run("stdio")
    elif mode == "http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        import anyio

        anyio.run(demo)
        analytics.close()
        print("task completion rate:", compute_metrics(analytics.sink, mcp_name="drea").value("task_completion_rate"))
