"""OpenTelemetry and a store at once: each tool call becomes a span, every event also lands in SQLite.

    pip install 'mcp-tracking[otel]' opentelemetry-sdk
    python examples/otel_example.py      # prints one line per finished span, then the metrics

The SDK's tracer provider is installed globally, so MCPServer's own OpenTelemetryMiddleware records its
SERVER span for each request, and mcp-tracking enriches that span (session id, call sequence, lifecycle
events) instead of adding a second one. For an OTLP collector, replace the printing exporter with
``BatchSpanProcessor(OTLPSpanExporter())`` from ``opentelemetry-exporter-otlp-proto-http``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from mcp_tracking import AnalyticsClient, FanoutSink, OTelSink, TrackingMiddleware, compute_metrics, sink_from_url


class PrintSpans(SpanExporter):
    """One line per tool-call or session span: name, session, and the events mcp-tracking put on it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            if span.name.startswith(("tools/call", "mcp_tracking.session")) and span.kind != trace.SpanKind.CLIENT:
                a = span.attributes or {}
                events = [e.name for e in span.events]
                print(f"span {span.name!r} session={a.get('mcp.session.id')} "
                      f"seq={a.get('mcp_tracking.call_sequence')} error={a.get('error.type')} events={events}")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(PrintSpans()))
trace.set_tracer_provider(provider)

store = sink_from_url(os.environ.get("MCP_TRACKING_URL") or "sqlite:///otel_example.db")
analytics = AnalyticsClient(FanoutSink(store, OTelSink()), mcp_name="drea")

mcp = MCPServer("drea", log_level="WARNING")


@mcp.tool()
def list_models() -> list[str]:
    """Models with benchmark results."""
    return ["claude-sonnet-4", "gpt-4.1"]


@mcp.tool()
def get_benchmark_results_by_filters(model_name: str, limit: int = 5) -> list[dict]:
    """Benchmark results of one model."""
    if model_name not in list_models():
        raise ToolError(f"unknown model {model_name!r}")  # a reported failure: the SDK logs no traceback
    return [{"model_name": model_name, "benchmark": "mmlu", "score": 88.1}][:limit]


mcp.middleware.append(TrackingMiddleware(analytics, server=mcp))


async def demo() -> None:
    from mcp import Client

    async with Client(mcp) as client:
        for name, args in [("get_benchmark_results_advanced", {"model_name": "gpt-4.1"}),
                           ("get_benchmark_results_by_filters", {"model_name": "nope"}),
                           ("get_benchmark_results_by_filters", {"model_name": "nope"}),
                           ("list_models", {}),
                           ("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "limit": 1})]:
            await client.call_tool(name, args, meta={"io.mcp-tracking/session_id": "otel-demo"})


if __name__ == "__main__":
    import anyio

    anyio.run(demo)
    analytics.close()  # ends the session: its span is printed too
    provider.shutdown()
    m = compute_metrics(store)
    print(f"retry rate: {m.value('retry_rate')}, hallucination rate: {m.value('hallucination_rate')}")
