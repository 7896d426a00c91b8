"""fastmcp + FastMCPTrackingMiddleware, end to end with real fastmcp clients."""

from __future__ import annotations

import sys

import anyio
import pytest

fastmcp = pytest.importorskip("fastmcp")
from fastmcp import Client, FastMCP  # noqa: E402
from helpers import ROOT, by_session, lifecycle  # noqa: E402

from mcp_tracking import AnalyticsClient, FastMCPTrackingMiddleware, MemorySink, instrument  # noqa: E402
from mcp_tracking.demo.server import TOOLS, completeness_checks  # noqa: E402

pytestmark = pytest.mark.anyio


def tracked(**options):
    server = FastMCP("drea")
    for tool in TOOLS:
        server.tool(tool)
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server.add_middleware(FastMCPTrackingMiddleware(client, server=server, completeness=completeness_checks(),
                                                    **options))
    return server, client, sink


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_scripted_session(mode):
    """The same script gives the same lifecycle on fastmcp as on MCPServer."""
    server, client, sink = tracked()
    texts = []
    async with Client(server, mode=mode) as c:
        for name, args in [("get_benchmark_results_advanced", {"model_name": "gpt-4.1"}),
                           ("get_benchmark_results_by_filters", {"limit": "ten"}),
                           ("get_benchmark_results", {"model_name": "nope"}),
                           ("get_benchmark_results", {"model_name": "nope"}),
                           ("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": 3})]:
            r = await c.call_tool_mcp(name, args)
            texts.append((r.is_error, r.content[0].text))
    client.close()
    assert texts[0][1] == ("Unknown tool: 'get_benchmark_results_advanced'. Did you mean 'get_benchmark_results' or "
                           "'get_benchmark_results_by_filters'?")  # fastmcp's answer, then our suggestion
    assert "- limit: expected integer, got string 'ten'" in texts[1][1]
    assert texts[2] == (True, "Error calling tool 'get_benchmark_results': no results for model 'nope'")
    events = next(iter(by_session(sink.events).values()))
    assert [n for n, _ in lifecycle(events)] == [
        "session_start", "hallucinated_tool_call", "tool_call_started", "schema_validation_error",
        "tool_call_started", "tool_call_failed", "tool_call_started", "tool_call_retry", "tool_call_failed",
        "wrong_tool_error", "tool_call_started", "tool_call_completed", "answer_complete", "session_completed",
        "session_end"]
    failed = [e["metadata"] for e in events if e["event_name"] == "tool_call_failed"]
    assert [f["error_type"] for f in failed] == ["tool_error", "tool_error"]
    assert failed[0]["exception_type"] == "ToolError"


async def test_concurrent_clients_are_separate_sessions():
    """20 fastmcp clients at once, 10 calls each: gapless sequences per session."""
    server, client, sink = tracked()

    async def agent(i: int) -> None:
        async with Client(server) as c:
            for _ in range(10):
                await c.call_tool_mcp("list_models", {})

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(agent, i)
    client.close()
    sessions = by_session(sink.events)
    assert len(sessions) == 20
    for events in sessions.values():
        assert [e["metadata"]["call_sequence"] for e in events if e["event_name"] == "tool_call_started"] == \
            list(range(1, 11))


async def test_outcome_tool_is_opt_in():
    """instrument(add_outcome_tool=True) adds report_task_outcome; the agent's report decides the outcome."""
    server = FastMCP("drea")
    server.tool(TOOLS[0])
    sink = MemorySink()
    hook = instrument(server, AnalyticsClient(sink), add_outcome_tool=True)
    assert instrument(server, add_outcome_tool=True) is hook
    async with Client(server) as c:
        names = [t.name for t in await c.list_tools()]
        assert names.count("report_task_outcome") == 1
        await c.call_tool_mcp("list_models", {})
        await c.call_tool_mcp("report_task_outcome", {"success": False, "summary": "gave up"})
    hook.client.close()
    names = [e["event_name"] for e in sink.events]
    assert "task_completed" in names and "session_failed" in names and "session_completed" not in names
    task = next(e for e in sink.events if e["event_name"] == "task_completed")
    assert task["metadata"]["source"] == "agent_tool" and task["metadata"]["summary"] == "gave up"


@pytest.mark.slow
async def test_fastmcp_stdio_subprocess(tmp_path):
    """A fastmcp server over stdio, tracked, with a real fastmcp client."""
    import os

    from fastmcp.client.transports import StdioTransport

    from mcp_tracking import compute_metrics

    db = tmp_path / "fm.db"
    transport = StdioTransport(command=sys.executable, args=[str(ROOT / "examples" / "fastmcp_example.py"), "stdio"],
                               env={**os.environ, "MCP_TRACKING_URL": f"sqlite:///{db}"}, cwd=str(ROOT),
                               keep_alive=False)
    async with Client(transport) as c:
        r = await c.call_tool_mcp("getLeaderboard", {"benchmark": "mmlu"})
        assert "Did you mean 'get_leaderboard'?" in r.content[0].text
        assert not (await c.call_tool_mcp("get_leaderboard", {"benchmark": "mmlu"})).is_error
    result = compute_metrics(f"sqlite:///{db}")
    assert result.totals.hallucinations == 1 and result.totals.completed_calls == 1


@pytest.mark.slow
async def test_fastmcp_streamable_http_both_eras(tmp_path):
    """fastmcp over streamable HTTP: legacy sessions from Mcp-Session-Id, 2026-07-28 ones from the connection."""
    from helpers import free_port, server_process

    from mcp_tracking.sinks import SQLiteSink

    port = free_port()
    db = tmp_path / "fm_http.db"
    with server_process([str(ROOT / "examples" / "fastmcp_example.py"), "http", str(port)], port=port,
                        env={"MCP_TRACKING_URL": f"sqlite:///{db}"}):
        for mode in ("auto", "legacy"):
            async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as c:
                r = await c.call_tool_mcp("getLeaderboard", {"benchmark": "mmlu"})
                assert "Did you mean 'get_leaderboard'?" in r.content[0].text
                await c.call_tool_mcp("get_leaderboard", {"benchmark": "mmlu"})
    events = list(SQLiteSink(db).iter_events())
    starts = [e for e in events if e["event_name"] == "session_start"]
    assert len(starts) == 2
    for s in starts:
        seqs = [e["metadata"]["call_sequence"] for e in events
                if e["session_id"] == s["session_id"] and e["event_name"] == "tool_call_started"]
        assert seqs == [1]  # the unknown name before it took no number
