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


@pytest.mark.anyio
async def test_servers_without_a_client_share_the_default_one_and_keep_their_names(tmp_path, monkeypatch):
    """Without a client, every server shares the process's default client (MCP_TRACKING_URL, else
    ./mcp_tracking.db): one worker, one store; each server's events carry its own name."""
    from mcp import Client

    from mcp_tracking import default_client
    from mcp_tracking.sinks import SQLiteSink

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_TRACKING_URL", raising=False)
    servers = [MCPServer("drea"), MCPServer("other")]
    for server in servers:
        server.add_tool(lambda: "ok", name="ping")
    hooks = [instrument(server) for server in servers]
    assert hooks[0].client is hooks[1].client is default_client()
    for server in servers:
        async with Client(server) as c:
            await c.call_tool("ping", {})
    hooks[0].client.close()
    events = list(SQLiteSink(tmp_path / "mcp_tracking.db").iter_events())
    assert sorted({(e["mcp_name"], e["metadata"]["tool_name"]) for e in events
                   if e["event_name"] == "tool_call_started"}) == [("drea", "ping"), ("other", "ping")]
    assert default_client() is not hooks[0].client  # a closed default is replaced on next use
    default_client().close()


def test_subclasses_of_every_server_class_are_instrumented():
    """instrument() detects the framework by isinstance: user subclasses work (fastmcp and mcp 2.x)."""
    import fastmcp

    class MyServer(MCPServer):
        pass

    class MyFastMCP(fastmcp.FastMCP):
        pass

    client = AnalyticsClient(MemorySink())
    assert isinstance(instrument(MyServer("x"), client), TrackingMiddleware)
    assert isinstance(instrument(MyFastMCP("y"), client), FastMCPTrackingMiddleware)
    client.close()


def test_anything_else_is_a_clear_error():
    """A non-server raises TypeError naming what is supported."""
    with pytest.raises(TypeError, match="cannot instrument builtins.dict"):
        instrument({})
    with pytest.raises(TypeError, match="@track_tool"):
        instrument(lambda: None)
    with pytest.raises(ValueError, match="validation must be"):
        instrument(MCPServer("x"), AnalyticsClient(MemorySink()), validation="strict")
