"""Opt-in aliases (``instrument(..., aliases={"asked": "tool"})``): a name the framework does not know is
dispatched to the tool it names, recorded as that tool's call with ``called_as``, never as a hallucination;
a name the framework knows is never rerouted."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcp_tracking import AnalyticsClient, MemorySink, instrument

pytestmark = pytest.mark.anyio
ALIASES = {"getLeaderboard": "get_leaderboard", "ping": "get_leaderboard", "nowhere": "missing_tool"}
#: an alias, a real tool whose name is also an alias key, a near miss, an alias to a tool that does not exist
CALLS = (("getLeaderboard", {"benchmark": "gsm8k"}), ("ping", {}), ("getleaderbord", {}), ("nowhere", {}))


def leaderboard(benchmark: str = "mmlu") -> str:
    """The leaderboard of a benchmark."""
    return f"top of {benchmark}"


def ping() -> str:
    """A real tool whose name is also an alias key: it must stay itself."""
    return "pong"


def check(sink: MemorySink, answers: list[tuple[bool, str]]) -> None:
    (alias, own, unknown, to_missing) = answers
    assert alias == (False, "top of gsm8k") and own == (False, "pong")
    assert unknown[0] and "Did you mean" in unknown[1] and to_missing[0]
    started = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_started"]
    assert [(s["tool_name"], s.get("called_as")) for s in started] == [("get_leaderboard", "getLeaderboard"),
                                                                        ("ping", None)]
    unknowns = [e["metadata"]["requested_tool_name"] for e in sink.events if e["event_name"] == "hallucinated_tool_call"]
    assert unknowns == ["getleaderbord", "nowhere"]  # an alias to a tool that does not exist routes nowhere


async def test_mcpserver_routes_aliases():
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = MCPServer("aliases")
    server.add_tool(leaderboard, name="get_leaderboard")
    server.add_tool(ping)
    instrument(server, client, aliases=ALIASES)
    answers = []
    async with Client(server) as c:
        for name, args in CALLS:
            r = await c.call_tool(name, args)
            answers.append((r.is_error, r.content[0].text))
    client.close()
    check(sink, answers)


async def test_fastmcp_routes_aliases():
    fastmcp = pytest.importorskip("fastmcp")
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = fastmcp.FastMCP("aliases")
    server.tool(leaderboard, name="get_leaderboard")
    server.tool(ping)
    instrument(server, client, aliases=ALIASES)
    answers = []
    async with fastmcp.Client(server) as c:
        for name, args in CALLS:
            r = await c.call_tool_mcp(name, args)
            answers.append((r.is_error, r.content[0].text))
    client.close()
    check(sink, answers)


def test_aliases_are_checked():
    from mcp_tracking import TrackingOptions

    with pytest.raises(ValueError):
        TrackingOptions(aliases={"same": "same"})
    with pytest.raises(ValueError):
        TrackingOptions(aliases={"a": 3})  # type: ignore[dict-item]
