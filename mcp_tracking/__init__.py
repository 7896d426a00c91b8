"""mcp-tracking: how well AI agents use your MCP server's tools, and help for them to use them better.

The pipeline: intercept (``adapters``) → detect (``core``) → emit (``emit``) → store (``sinks``) →
measure (``metrics``) → report (``report``, ``cli``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.completeness import has_multiple_results, has_result_data, includes_metrics
from mcp_tracking.core.recorder import TrackingOptions
from mcp_tracking.emit.processors import Processor
from mcp_tracking.events import SCHEMA_VERSION, EventName
from mcp_tracking.sinks import JSONLSink, MemorySink, Sink, SQLiteSink, sink_from_url

if TYPE_CHECKING:
    from mcp_tracking.adapters._common import default_client
    from mcp_tracking.adapters.decorator import track_tool, track_tool_call
    from mcp_tracking.adapters.instrument import instrument
    from mcp_tracking.adapters.mcpserver import TrackingMiddleware
    from mcp_tracking.metrics import MetricsResult, compute_metrics
    from mcp_tracking.sinks.fanout import FanoutSink
    from mcp_tracking.sinks.otel import OTelSink
    from mcp_tracking.sinks.postgres import PostgresSink

from mcp_tracking._version import __version__

_LAZY = {
    "TrackingMiddleware": "mcp_tracking.adapters.mcpserver",
    "FastMCPTrackingMiddleware": "mcp_tracking.adapters.fastmcp",
    "track_tool": "mcp_tracking.adapters.decorator",
    "track_tool_call": "mcp_tracking.adapters.decorator",
    "default_client": "mcp_tracking.adapters._common",
    "instrument": "mcp_tracking.adapters.instrument",
    "compute_metrics": "mcp_tracking.metrics",
    "FanoutSink": "mcp_tracking.sinks.fanout",
    "OTelSink": "mcp_tracking.sinks.otel",
    "PostgresSink": "mcp_tracking.sinks.postgres",
    "MetricsResult": "mcp_tracking.metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_tracking' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "SCHEMA_VERSION",
    "AnalyticsClient",
    "EventName",
    "FanoutSink",
    "FastMCPTrackingMiddleware",
    "JSONLSink",
    "MemorySink",
    "MetricsResult",
    "OTelSink",
    "PostgresSink",
    "Processor",
    "SQLiteSink",
    "Sink",
    "TrackingMiddleware",
    "TrackingOptions",
    "__version__",
    "compute_metrics",
    "default_client",
    "has_multiple_results",
    "has_result_data",
    "includes_metrics",
    "instrument",
    "sink_from_url",
    "track_tool",
    "track_tool_call",
]
