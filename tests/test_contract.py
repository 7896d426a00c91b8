"""The event contract (the design's code) through every door: MCPServer, fastmcp, the decorator, the SDK helpers.

One scripted session (``scenario.STEPS``): an unknown name, a refused call and its identical retry, an
observe-mode violation the framework accepts, a tool exception and its retry, a switch after the failure,
a same-result repeat, a polling repeat, a success with completeness checks. Each door's exact event
sequence is asserted, and its metrics worked out by hand.
"""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from scenario import (
    SERVER_STEPS,
    TOOLS,
    comparable,
    completeness,
    expected,
    mcpserver,
    run_on_server,
    shape,
    steps,
)

from mcp_tracking import AnalyticsClient, MemorySink, compute_metrics, instrument, track_tool

pytestmark = pytest.mark.anyio


def fastmcp_server(client: AnalyticsClient, **options):
    fastmcp = pytest.importorskip("fastmcp")
    server = fastmcp.FastMCP("scenario")
    for tool in TOOLS:
        server.tool(tool)
    instrument(server, client, **options)
    return server


def check_answers(answers: list[tuple[bool, str]], unknown_prefix: str) -> None:
    by = dict(zip(SERVER_STEPS, answers, strict=True))
    is_error, text = by["unknown"]
    assert is_error and text.startswith(unknown_prefix) and "Did you mean 'search'?" in text
    is_error, text = by["refused"]  # the framework's refusal, then our corrective lines
    assert is_error and "validation error" in text and "- limit: expected integer, got string 'ten'" in text
    assert not by["observe"][0]  # the framework coerced "3": the call ran
    assert by["raises"][0] and not by["success"][0]


def check_metrics(result) -> None:
    """By hand: 10 calls (the unknown name is not one), 3 schema errors (two refusals + the observed one),
    1 wrong-tool switch, 3 retries (refused repeat, failed repeat, same-result repeat): clarity 1 - 7/10."""
    t = result.totals
    assert (t.tool_calls, t.schema_errors, t.wrong_tool_errors, t.retries, t.hallucinations) == (10, 3, 1, 3, 1)
    assert (t.failed_calls, t.completed_calls) == (2, 6)
    assert result.value("semantic_clarity_score") == pytest.approx(0.3)
    assert result.value("retry_rate") == pytest.approx(0.3)
    assert result.value("schema_violation_rate") == pytest.approx(0.3)
    assert result.value("hallucination_rate") == pytest.approx(1.0)
    assert result.value("steps_to_goal") == pytest.approx(10)
    assert result.value("recovery_rate") == pytest.approx(1.0)
    assert result.value("task_completion_rate") == pytest.approx(1.0)
    assert result.value("answer_completeness_rate") == pytest.approx(1.0)
    popularity = {p["tool_name"]: p["call_count"] for p in result.metrics["tool_popularity"]["tools"]}
    assert popularity == {"search": 4, "lookup": 2, "list_items": 2, "status": 2}  # no "serach"
    unknown = result.unknown_tools
    assert unknown == [{"requested_tool_name": "serach", "count": 1, "suggested": "search",
                        "called_next": {"search": 1}}]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcpserver(mode):
    """MCPServer: the exact sequence; the SDK's own answers with our suggestion and lines added."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    answers = await run_on_server(mcpserver(client), mode)
    client.close()
    check_answers(answers, "Unknown tool: serach")
    end = "connection_closed" if mode == "legacy" else "shutdown"
    assert shape(sink.events) == expected(SERVER_STEPS)
    assert sink.events[-1]["metadata"]["end_reason"] == end
    started = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_started"]
    assert started[0]["after_hallucinated_tool"] == "serach" and started[0]["previous_tool_name"] is None
    assert [s["is_retry"] for s in started] == [False, True, False, False, True, False, True, False, False, False]
    retries = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_retry"]
    assert [(r["call_sequence"], r["retry_attempt"], r["retry_reason"], r["original_call_sequence"])
            for r in retries] == [(2, 1, "validation_failed", 1), (5, 1, "execution_failed", 4),
                                  (7, 1, "repeated_after_success", 6)]
    errors = [e["metadata"] for e in sink.events if e["event_name"] == "schema_validation_error"]
    assert [e["enforced"] for e in errors] == [False, False, False]
    assert errors[0]["validation_errors"][0]["field"] == "limit"
    outcome = next(e["metadata"] for e in sink.events if e["event_name"] == "session_completed")
    assert (outcome["steps_count"], outcome["failed_calls_count"], outcome["retry_count"],
            outcome["schema_errors_count"]) == (10, 2, 3, 3)
    check_metrics(compute_metrics(sink))


async def test_fastmcp():
    """fastmcp: the same sequence; NotFoundError / ValidationError answered by fastmcp, with our text added."""
    fastmcp = pytest.importorskip("fastmcp")
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = fastmcp_server(client, completeness=completeness())
    answers = []
    async with fastmcp.Client(server) as c:
        for _, tool, args, _ in steps(SERVER_STEPS):
            r = await c.call_tool_mcp(tool, args)
            answers.append((r.is_error, r.content[0].text))
    client.close()
    check_answers(answers, "Unknown tool: 'serach'")
    assert shape(sink.events) == expected(SERVER_STEPS, end="session_completed")
    check_metrics(compute_metrics(sink))


async def test_fastmcp_programmatic_errors_keep_their_type():
    """server.call_tool(): an unknown name still raises fastmcp's NotFoundError, bad arguments its
    ValidationError; the events are the contract's."""
    pytest.importorskip("fastmcp")
    from fastmcp.exceptions import NotFoundError, ValidationError

    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = fastmcp_server(client)
    with pytest.raises(NotFoundError, match=r"^Unknown tool: 'serach'$"):
        await server.call_tool("serach", {})
    with pytest.raises(ValidationError):
        await server.call_tool("search", {"query": "a", "limit": "ten"})
    client.close()
    names = [e["event_name"] for e in sink.events if not e["event_name"].startswith("session_")]
    assert names == ["hallucinated_tool_call", "tool_call_started", "schema_validation_error"]


def test_decorator_session_of_several_tools():
    """Bare @track_tool on several functions: one default client, one session, one session_start, a gapless
    sequence, wrong-tool detection across tools; enforce refuses invalid arguments (no framework checks them)."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    tools = {t.__name__: track_tool(client, t, completeness=completeness()) for t in TOOLS}
    labels = [label for label in SERVER_STEPS if label not in ("unknown", "observe")]
    with client.session("dec-1", user_id="u"):
        for _, tool, args, _ in steps(labels):
            try:
                tools[tool](**args)
            except ValueError:
                pass
    client.end_session("dec-1")
    client.close()
    assert shape(sink.events) == expected(labels)
    assert [e["session_id"] for e in sink.events] == ["dec-1"] * len(sink.events)


def test_bare_decorators_share_the_default_client(tmp_path, monkeypatch):
    """Two bare @track_tool functions (no client): one client, one worker, one session_start, sequence 1, 2,
    and the failure then switch is a wrong_tool_error."""
    from mcp_tracking import default_client
    from mcp_tracking.sinks import SQLiteSink

    monkeypatch.setenv("MCP_TRACKING_URL", f"sqlite:///{tmp_path}/dec.db")
    default_client().close()  # a fresh default on this store

    @track_tool
    def first(x: int) -> int:
        raise RuntimeError("down")

    @track_tool
    def second(x: int) -> int:
        return x

    assert first.__mcp_tracking__.client is second.__mcp_tracking__.client is default_client()
    with pytest.raises(RuntimeError):
        first(1)
    assert second(2) == 2
    default_client().close()
    events = list(SQLiteSink(tmp_path / "dec.db").iter_events())
    assert [e["event_name"] for e in events] == [
        "session_start", "tool_call_started", "tool_call_failed", "wrong_tool_error", "tool_call_started",
        "tool_call_completed", "session_completed", "session_end"]
    assert len({e["session_id"] for e in events}) == 1


def helper_session(client: AnalyticsClient, sid: str, labels: list[str]) -> None:
    """The same calls reported through the design's SDK helpers, as the design's middleware would."""
    from mcp_tracking.core.validation import ValidatorCache, validate

    manifest = [t.__name__ for t in TOOLS]
    schemas = {t.__name__: _schema(t) for t in TOOLS}
    cache = ValidatorCache()
    client.start_session("u", sid)
    for label, tool, args, _names in steps(labels):
        if not client.track_tool_call_started("u", tool, args, session_id=sid, mcp_tools_manifest=manifest):
            continue
        outcome = validate(cache.get(tool, schemas[tool]), args)
        if outcome is not None:
            errors = [{**e, "blocking": True} for e in outcome.errors]
            client.track_schema_validation_error("u", tool, args, errors, session_id=sid,
                                                 schema_version=outcome.schema_version, enforced=False)
            if label != "observe":
                continue  # the framework refused it
        fn = {t.__name__: t for t in TOOLS}[tool]
        try:
            result = fn(**{k: v for k, v in args.items()})
        except Exception as exc:
            # the SDK masks a crash's text: the helpers report what the server answered
            client.track_tool_call_failed("u", tool, args, "tool_error", f"Error executing tool {tool}",
                                          session_id=sid)
            assert isinstance(exc, ValueError)
            continue
        client.track_tool_usage("u", tool, args, success=True, execution_time_ms=1.0, session_id=sid)
        if tool == "search":
            client.track_answer_completeness("u", len(result) >= 2, 1.0, ["has_result_data",
                                                                          "has_multiple_results"], [], tool,
                                             len(result), detection_method="heuristic_validation",
                                             session_id=sid)


def _schema(fn) -> dict:
    from mcp_tracking.adapters.decorator import _schema_of

    return _schema_of(fn) or {}


async def test_two_doors_give_identical_events():
    """The interceptors (MCPServer) and the SDK helpers, fed the same calls, emit the same events with the
    same metadata (ids, times, durations and transport facts aside)."""
    labels = [label for label in SERVER_STEPS if label not in ("poll-1", "poll-2")]  # helpers see no results
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = mcpserver(client)
    async with Client(server, mode="legacy") as c:
        for _, tool, args, _ in steps(labels):
            await c.call_tool(tool, args)
    client.close()
    served = [e for e in sink.events]

    sink2 = MemorySink()
    client2 = AnalyticsClient(sink2, flush_interval=0.02, mcp_name="scenario")
    helper_session(client2, "h-1", labels)
    client2.end_session("h-1", "connection_closed")
    client2.close()
    assert shape(served) == shape(sink2.events) == expected(labels)
    assert comparable(served) == comparable(sink2.events)


def test_helpers_identical_repeat_after_success_is_a_retry_at_once():
    """The helpers never see results: a repeat of a success is a retry at once, started then retry."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    for _ in range(2):
        client.track_tool_call_started("u", "t", {"a": 1}, session_id="s")
        client.track_tool_usage("u", "t", {"a": 1}, success=True, session_id="s")
    client.close(end_sessions=False)
    assert shape(sink.events) == [("tool_call_started", 1), ("tool_call_completed", 1), ("tool_call_started", 2),
                                  ("tool_call_retry", 2), ("tool_call_completed", 2)]


async def test_unknown_name_first_still_starts_the_session_and_is_not_a_step():
    """A session whose first request is an unknown name: session_start, the hallucination, then call 1."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = mcpserver(client)
    async with Client(server) as c:
        await c.call_tool("nope_tool", {})
        await c.call_tool("list_items", {})
    client.close()
    assert shape(sink.events) == [("session_start", None), ("hallucinated_tool_call", None),
                                  ("tool_call_started", 1), ("tool_call_completed", 1),
                                  ("session_completed", None), ("session_end", None)]
    h = sink.events[1]["metadata"]
    assert "call_sequence" not in h and h["similar_tool_suggested"] is None


async def test_enforce_mode_refuses_before_the_tool_runs():
    """validation='enforce': our check refuses "3" for an integer (stricter than the SDK, documented)."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = mcpserver(client, validation="enforce")
    async with Client(server) as c:
        r = await c.call_tool("search", {"query": "a", "limit": "3"})
    client.close()
    assert r.is_error and r.content[0].text.startswith("Invalid arguments for tool 'search'")
    names = [e["event_name"] for e in sink.events if not e["event_name"].startswith("session_")]
    assert names == ["tool_call_started", "schema_validation_error"]
    assert sink.events[2]["metadata"]["enforced"] is True


async def test_concurrent_repeats_are_held_only_per_call():
    """Two identical calls in flight at once and a success before them: the held one waits for its own
    result; nothing of the other call is delayed or lost."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = mcpserver(client)
    async with Client(server) as c:
        await c.call_tool("list_items", {})
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.call_tool, "list_items", {})
            tg.start_soon(c.call_tool, "search", {"query": "q"})
    client.close()
    names = [e["event_name"] for e in sink.events]
    assert names.count("tool_call_started") == 3 and names.count("tool_call_completed") == 3
    assert names.count("tool_call_retry") == 1
