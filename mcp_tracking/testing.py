"""Helpers for your own tests: an in-memory sink and a client wired to it.

    from mcp_tracking.testing import MemorySink, memory_client

    client, sink = memory_client(mcp_name="drea")
    ... drive your server ...
    client.flush()
    assert "hallucinated_tool_call" in sink.names()
"""

from __future__ import annotations

from typing import Any

from mcp_tracking.client import AnalyticsClient
from mcp_tracking.sinks.memory import MemorySink

__all__ = ["MemorySink", "memory_client"]


def memory_client(**options: Any) -> tuple[AnalyticsClient, MemorySink]:
    """An :class:`AnalyticsClient` writing to a fresh :class:`MemorySink` (small batches, quick flushes)."""
    sink = MemorySink()
    options.setdefault("flush_interval", 0.05)
    return AnalyticsClient(sink, **options), sink
