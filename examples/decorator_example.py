"""@track_tool on plain functions, no server framework: the design's decorator pattern.

    python examples/decorator_example.py
"""

from __future__ import annotations

import os

from mcp_tracking import AnalyticsClient, compute_metrics, track_tool

analytics = AnalyticsClient(os.environ.get("MCP_TRACKING_URL", "sqlite:///decorator_example.db"), mcp_name="drea")


@track_tool(analytics)
def get_benchmark_results(model_name: str, limit: int = 5, user_id: str = "anonymous",
                          session_id: str | None = None) -> list[dict]:
    """Benchmark results of one model (user_id/session_id are read by the tracker, as in the design)."""
    if model_name == "unknown":
        raise LookupError("no such model")
    return [{"model_name": model_name, "score": 90.0}][:limit]


if __name__ == "__main__":
    with analytics.session("session_123", user_id="user_123"):
        try:
            get_benchmark_results(model_name="unknown")
        except LookupError as exc:
            print("the tool's own exception passes through:", exc)
        try:
            get_benchmark_results(model_name="gpt-4.1", limit="five")  # type: ignore[arg-type]
        except ValueError as exc:
            print("invalid arguments are refused with a corrective message:", str(exc).splitlines()[1])
        print(get_benchmark_results(model_name="gpt-4.1", limit=1))
    analytics.end_session("session_123")
    analytics.close()
    result = compute_metrics(analytics.sink, session_id="session_123")
    print("recovery rate:", result.value("recovery_rate"), "steps:", result.totals.tool_calls)
