"""mcp 1.x FastMCP (no middleware API): the wrapped tools/call handler, end to end.

Runs in CI's own `mcp<2` environment (MCP_TRACKING_REQUIRE_V1=1 makes a missing mcp 1.x a failure);
skipped where mcp 2.x is installed.
"""

from __future__ import annotations

import os
import sys

import pytest

if os.environ.get("MCP_TRACKING_REQUIRE_V1"):
    from mcp.server.fastmcp import FastMCP
else:
    FastMCP = pytest.importorskip("mcp.server.fastmcp", reason="mcp 1.x not installed").FastMCP

from mcp.shared.memory import create_connected_server_and_client_session

from mcp_tracking import AnalyticsClient, MemorySink, instrument
from mcp_tracking.adapters.mcp_v1 import V1Hook
from mcp_tracking.demo.server import build_server, completeness_checks

pytestmark = pytest.mark.anyio


def tracked():
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = build_server("drea")
    hook = instrument(server, client, completeness=completeness_checks())
    return server, client, sink, hook


async def test_scripted_session_v1():
    """Hallucination, schema error, crash, retry and switch: the same lifecycle as on mcp 2.x."""
    server, client, sink, hook = tracked()
    assert isinstance(hook, V1Hook) and instrument(server, client) is hook
    texts = []
    async with create_connected_server_and_client_session(server) as s:
        for name, args in [("get_benchmark_results_advanced", {"model_name": "gpt-4.1"}),
                           ("get_benchmark_results_by_filters", {"limit": "ten"}),
                           ("get_benchmark_results", {"model_name": "nope"}),
                           ("get_benchmark_results", {"model_name": "nope"}),
                           ("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": 3})]:
            r = await s.call_tool(name, args)
            texts.append((r.isError, r.content[0].text))
    client.close()
    assert "Did you mean 'get_benchmark_results'" in texts[0][1]
    assert "- limit: expected integer, got string 'ten'" in texts[1][1]
    assert texts[2][0] and "no results for model 'nope'" in texts[2][1]  # v1's own answer, untouched
    names = [e["event_name"] for e in sink.events]
    assert names == [
        "session_start", "hallucinated_tool_call", "tool_call_started", "schema_validation_error",
        "tool_call_started", "tool_call_failed", "tool_call_started", "tool_call_retry", "tool_call_failed",
        "wrong_tool_error", "tool_call_started", "tool_call_completed", "answer_complete", "session_completed",
        "session_end"]
    seqs = [e["metadata"]["call_sequence"] for e in sink.events if e["event_name"] == "tool_call_started"]
    assert seqs == [1, 2, 3, 4]  # the unknown name took no number
    # the connection closed when the client left: the session ended then, not at client.close()
    assert sink.events[-1]["metadata"]["end_reason"] == "connection_closed"
    assert sink.events[0]["metadata"]["client_name"] == "mcp"


async def test_v1_session_ends_when_the_connection_closes():
    """In process: after a call and a disconnect, the session's outcome and session_end are written at once,
    with reason connection_closed (before, they waited for the idle timeout or client.close())."""
    server, client, sink, _ = tracked()
    async with create_connected_server_and_client_session(server) as s:
        await s.call_tool("list_models", {})
    assert client.flush()
    names = [e["event_name"] for e in sink.events]
    assert names == ["session_start", "tool_call_started", "tool_call_completed", "session_completed", "session_end"]
    assert sink.events[-1]["metadata"]["end_reason"] == "connection_closed"
    client.close()


async def test_v1_stdio_subprocess(tmp_path):
    """A real mcp 1.x stdio client against the demo server run as `python -m mcp_tracking.demo.server`."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from mcp_tracking import compute_metrics

    db = tmp_path / "v1.db"
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_tracking.demo.server", f"sqlite:///{db}"],
                                   env={**os.environ})
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        res = await s.call_tool("getLeaderboard", {"benchmark": "mmlu"})
        assert "Did you mean 'get_leaderboard'?" in res.content[0].text
        assert not (await s.call_tool("get_leaderboard", {"benchmark": "mmlu"})).isError
    result = compute_metrics(f"sqlite:///{db}")
    assert result.totals.hallucinations == 1 and result.totals.completed_calls == 1
    from mcp_tracking.sinks import SQLiteSink

    ends = [e for e in SQLiteSink(db).iter_events() if e["event_name"] == "session_end"]
    assert [e["metadata"]["end_reason"] for e in ends] == ["connection_closed"]  # stdio closed: session over


V1_HTTP_SERVER = """
import sys
from mcp.server.fastmcp import FastMCP
from mcp_tracking import AnalyticsClient, instrument
from mcp_tracking.demo.server import TOOLS
server = FastMCP("drea", host="127.0.0.1", port=int(sys.argv[1]), log_level="WARNING")
for tool in TOOLS:
    server.add_tool(tool)
instrument(server, AnalyticsClient(sys.argv[2], mcp_name="drea"))
server.run("streamable-http")
"""


async def test_v1_streamable_http(tmp_path):
    """mcp 1.x over streamable HTTP: the session comes from Mcp-Session-Id; corrective answers arrive."""
    from helpers import free_port, server_process
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from mcp_tracking.sinks import SQLiteSink

    port, db = free_port(), tmp_path / "v1_http.db"
    script = tmp_path / "v1_server.py"
    script.write_text(V1_HTTP_SERVER)
    with server_process([str(script), str(port), f"sqlite:///{db}"], port=port):
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (r, w, get_id), ClientSession(r, w) as s:
            await s.initialize()
            res = await s.call_tool("list_modles", {})
            assert "Did you mean 'list_models'?" in res.content[0].text
            await s.call_tool("list_models", {})
            session_id = get_id()
    events = list(SQLiteSink(db).iter_events())
    start = next(e for e in events if e["event_name"] == "session_start")
    assert start["session_id"] == session_id and start["metadata"]["session_source"] == "transport"
    assert [e["metadata"]["call_sequence"] for e in events if e["event_name"] == "tool_call_started"] == [1]


async def test_aliases_route_on_v1():
    """An opt-in alias on mcp 1.x: dispatched to the tool it names, recorded with ``called_as``."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = build_server("drea")
    instrument(server, client, aliases={"getLeaderboard": "get_leaderboard"})
    async with create_connected_server_and_client_session(server) as s:
        routed = await s.call_tool("getLeaderboard", {"benchmark": "mmlu"})
        unknown = await s.call_tool("getLeaderbord", {})
    client.close()
    assert not routed.isError and unknown.isError
    started = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_started"]
    assert [(m["tool_name"], m.get("called_as")) for m in started] == [("get_leaderboard", "getLeaderboard")]
