"""fastmcp with FastMCPTrackingMiddleware (pip install 'mcp-tracking[fastmcp]').

    python examples/fastmcp_example.py          # in-process demo
    python examples/fastmcp_example.py stdio    # serve over stdio
    python examples/fastmcp_example.py http 8766  # serve streamable HTTP on 127.0.0.1:8766/mcp
"""

from __future__ import annotations

import os
import sys

from fastmcp import FastMCP

from mcp_tracking import AnalyticsClient, FastMCPTrackingMiddleware, compute_metrics

server = FastMCP("drea")


@server.tool
def list_models() -> list[str]:
    """Models with benchmark results."""
    return ["claude-sonnet-4", "gpt-4.1"]


@server.tool
def get_leaderboard(benchmark: str, top_k: int = 3) -> list[dict]:
    """Top models on one benchmark."""
    return [{"model_name": m, "benchmark": benchmark, "score": 90 - i} for i, m in enumerate(list_models())][:top_k]


analytics = AnalyticsClient(os.environ.get("MCP_TRACKING_URL", "sqlite:///fastmcp_example.db"), mcp_name="drea")
server.add_middleware(FastMCPTrackingMiddleware(analytics, server=server))


async def demo() -> None:
    from fastmcp import Client

    async with Client(server) as client:
        for name, args in [("getLeaderboard", {"benchmark": "mmlu"}), ("get_leaderboard", {"benchmark": "mmlu"})]:
            result = await client.call_tool_mcp(name, args)
            print(f"{name}: error={result.is_error} {result.content[0].text[:90]!r}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["stdio"]:
        server.run("stdio", show_banner=False)
    elif sys.argv[1:2] == ["http"]:
        server.run("http", host="127.0.0.1", port=int(sys.argv[2]), show_banner=False)
    else:
        import anyio

        anyio.run(demo)
        analytics.close()
        print("hallucination rate:", compute_metrics(analytics.sink, mcp_name="drea").value("hallucination_rate"))
