"""instrument(): one line for each server kind; a clear error for anything else."""

from __future__ import annotations

import pytest
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer

from mcp_tracking import AnalyticsClient, FastMCPTrackingMiddleware, MemorySink, TrackingMiddleware, instrument


def test_each_server_kind_gets_its_hook():
    """MCPServer and low-level Server get TrackingMiddleware; fastmcp gets its middleware."""
    client = AnalyticsClient(MemorySink())
    assert isinstance(instrument(MCPServer("a"), client), TrackingMiddleware)
    low = Server("low")
    mw = instrument(low, client)
    assert isinstance(mw, TrackingMiddleware) and mw in low.middleware
    fastmcp = pytest.importorskip("fastmcp")
    fm = fastmcp.FastMCP("f")
    assert isinstance(instrument(fm, client), FastMCPTrackingMiddleware)
    assert instrument(fm, client) is instrument(fm)


def test_default_client_is_named_after_the_server(tmp_path, monkeypatch):
    """Without a client, one is made on the embedded default store with mcp_name = the server's name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_TRACKING_URL", raising=False)
    hook = instrument(MCPServer("drea"))
    assert hook.client.mcp_name == "drea"
    hook.client.close()


def test_anything_else_is_a_clear_error():
    """A non-server raises TypeError naming what is supported."""
    with pytest.raises(TypeError, match="cannot instrument builtins.dict"):
        instrument({})
    with pytest.raises(TypeError, match="@track_tool"):
        instrument(lambda: None)
    with pytest.raises(ValueError, match="validation must be"):
        instrument(MCPServer("x"), AnalyticsClient(MemorySink()), validation="strict")
