"""One replica of a tracked MCPServer, for the multi-replica test (and its single-process reference).

    python tests/replica_server.py PORT     # streamable HTTP on 127.0.0.1:PORT/mcp; store and shared
                                            # state from MCP_TRACKING_URL / MCP_TRACKING_SHARED_STATE
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcp_tracking import AnalyticsClient, TrackingMiddleware, has_result_data

MODELS = ["claude-sonnet-4", "gpt-4.1"]


def build(analytics: AnalyticsClient) -> MCPServer:
    mcp = MCPServer("replicated", log_level="WARNING")

    @mcp.tool()
    def list_models() -> list[str]:
        """Models with benchmark results."""
        return MODELS

    @mcp.tool()
    def get_benchmark_results_by_filters(model_name: str, limit: int = 5) -> list[dict]:
        """Benchmark results of one model."""
        if model_name not in MODELS:
            # a ToolError, as a well-behaved tool reports a bad request (the SDK logs anything else with a
            # full traceback, which makes 200 failures take most of a minute)
            raise ToolError(f"unknown model {model_name!r}")
        return [{"model_name": model_name, "benchmark": f"b{i}", "score": 80 + i} for i in range(limit)]

    mcp.middleware.append(TrackingMiddleware(analytics, server=mcp,
                                             completeness={"get_benchmark_results_by_filters": [has_result_data]}))
    return mcp


if __name__ == "__main__":
    client = AnalyticsClient(mcp_name="replicated", flush_interval=0.05)
    build(client).run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
