"""@track_tool: signatures kept, sync and async, Context, stepping aside under a middleware."""

from __future__ import annotations

import inspect
from typing import Annotated, Literal

import pytest
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from mcp_tracking import AnalyticsClient, MemorySink, TrackingMiddleware, track_tool

pytestmark = pytest.mark.anyio


class Point(BaseModel):
    x: float
    y: float = 0.0


def make_tools():
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    async def search(query: Annotated[str, Field(min_length=1)], mode: Literal["fast", "exact"] = "fast") -> list:
        return [query, mode]

    async def async_ctx(note: str, ctx: Context) -> str:
        return f"{note}:{ctx.request_id}"

    def sync_ctx(note: str, ctx: Context) -> str:
        return f"{note}:{ctx.request_id}"

    def dist(p: Point, q: Point | None = None) -> float:
        return p.x

    return [add, search, async_ctx, sync_ctx, dist]


async def test_tools_list_is_identical_with_and_without_the_decorator():
    """Every framework derives the same schema from the wrapper as from the plain function."""
    client = AnalyticsClient(MemorySink())
    plain, wrapped = MCPServer("plain"), MCPServer("wrapped")
    for fn in make_tools():
        plain.add_tool(fn)
        wrapped.add_tool(track_tool(client)(fn))
    async with Client(plain) as a, Client(wrapped) as b:
        ta = {t.name: t.model_dump(exclude_none=True) for t in (await a.list_tools()).tools}
        tb = {t.name: t.model_dump(exclude_none=True) for t in (await b.list_tools()).tools}
        assert ta == tb
        r = await b.call_tool("async_ctx", {"note": "hi"})
        assert r.content[0].text.startswith("hi:")
        r = await b.call_tool("sync_ctx", {"note": "hi"})
        assert r.content[0].text.startswith("hi:")
    client.close()


async def test_decorated_tools_are_tracked_with_the_connection_session():
    """On a server without middleware, the decorator records calls, taking identity from the Context."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    server = MCPServer("drea")
    for fn in make_tools():
        server.add_tool(track_tool(client, mcp_name="drea")(fn))
    async with Client(server) as c:
        await c.call_tool("async_ctx", {"note": "a"})
        await c.call_tool("sync_ctx", {"note": "b"})
    client.close()
    started = [e for e in sink.events if e["event_name"] == "tool_call_started"]
    assert len(started) == 2 and started[0]["session_id"] == started[1]["session_id"]
    assert started[0]["metadata"]["tool_params"] == {"note": "a"}  # the Context is not a parameter
    assert [s["metadata"]["call_sequence"] for s in started] == [1, 2]


async def test_decorator_steps_aside_when_a_middleware_tracks():
    """Middleware + decorator on the same call: recorded once, not twice."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    server = MCPServer("drea")
    for fn in make_tools():
        server.add_tool(track_tool(client)(fn))
    server.middleware.append(TrackingMiddleware(client, server=server))
    async with Client(server) as c:
        await c.call_tool("add", {"a": 1})
        await c.call_tool("sync_ctx", {"note": "x"})
    client.close()
    assert [e["event_name"] for e in sink.events].count("tool_call_started") == 2


def test_sync_and_async_are_preserved_and_results_pass_through():
    """Sync stays sync, async stays async; results and exceptions are the function's own."""
    sink = MemorySink()
    client = AnalyticsClient(sink)

    @track_tool(client)
    def boom(x: int) -> int:
        raise KeyError("mine")

    @track_tool(client)
    async def fine(x: int) -> dict:
        return {"x": x}

    assert not inspect.iscoroutinefunction(boom) and inspect.iscoroutinefunction(fine)
    assert boom.__name__ == "boom" and inspect.signature(boom) == inspect.signature(boom.__wrapped__)
    with pytest.raises(KeyError, match="mine"):
        boom(1)
    import anyio

    assert anyio.run(fine, 3) == {"x": 3}
    with pytest.raises(ValueError, match="x: expected integer"):
        boom("nope")  # enforce mode: a corrective error, the function never runs
    client.close()
    failed = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_failed"]
    assert [f["error_type"] for f in failed] == ["execution_error"]  # the refused call ends at its schema error
    assert failed[0]["exception_type"] == "KeyError"
    names = [e["event_name"] for e in sink.events if not e["event_name"].startswith("session_")]
    assert names[-2:] == ["tool_call_started", "schema_validation_error"]


def test_design_keyword_arguments_session_and_user():
    """session_id / user_id keyword arguments (the design's decorator) set identity and stay out of params."""
    sink = MemorySink()
    client = AnalyticsClient(sink)

    @track_tool(client, manifest=["lookup"])
    def lookup(model_name: str, user_id: str = "anonymous", session_id: str | None = None,
               original_prompt: str = "") -> str:
        return model_name

    assert lookup(model_name="m", user_id="user_123", session_id="session_123", original_prompt="p") == "m"
    client.close()
    started = next(e for e in sink.events if e["event_name"] == "tool_call_started")
    assert (started["user_id"], started["session_id"]) == ("user_123", "session_123")
    assert started["metadata"]["tool_params"] == {"model_name": "m"}


def test_without_any_context_the_clients_current_session_is_used():
    """No Context and no keywords: the design's get_current_session_id() fallback."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    tool = track_tool(client)(lambda q: q)
    with client.session("bound", user_id="bob"):
        tool("a")
    tool("b")
    client.close(end_sessions=False)
    started = [e for e in sink.events if e["event_name"] == "tool_call_started"]
    assert (started[0]["session_id"], started[0]["user_id"]) == ("bound", "bob")
    assert started[1]["session_id"] == client.get_current_session_id()
