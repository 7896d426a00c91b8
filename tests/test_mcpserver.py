"""mcp 2.x MCPServer + TrackingMiddleware, end to end with real clients (in-process, stdio, HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import pytest
from helpers import ROOT, by_session, free_port, lifecycle, server_process
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcp_tracking import AnalyticsClient, MemorySink, TrackingMiddleware, has_multiple_results, instrument
from mcp_tracking.demo.server import build_server, completeness_checks

pytestmark = pytest.mark.anyio

SCRIPT = [
    ("get_benchmark_results_advanced", {"model_name": "gpt-4.1"}),  # hallucinated
    ("get_benchmark_results_by_filters", {"limit": "ten"}),  # schema violation
    ("get_benchmark_results", {"model_name": "nope"}),  # tool raises
    ("get_benchmark_results", {"model_name": "nope"}),  # identical retry
    ("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": 3}),  # switch, success
]

EXPECTED = [
    ("session_start", None),
    ("hallucinated_tool_call", None),  # not a tool call: no sequence, no step
    ("tool_call_started", 1), ("schema_validation_error", 1),  # refused by the SDK: its terminal event
    ("tool_call_started", 2), ("tool_call_failed", 2),
    ("tool_call_started", 3), ("tool_call_retry", 3), ("tool_call_failed", 3),
    ("wrong_tool_error", [3, 4]), ("tool_call_started", 4), ("tool_call_completed", 4), ("answer_complete", 4),
    ("session_completed", None), ("session_end", None),
]


def tracked_server(**options):
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = build_server("drea")
    mw = TrackingMiddleware(client, server=server, completeness=completeness_checks(), **options)
    server.middleware.append(mw)
    return server, client, sink


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_scripted_session_in_process(mode):
    """A hallucination, a schema error, a crash, a retry and a switch give exactly the expected events."""
    server, client, sink = tracked_server()
    texts = []
    async with Client(server, mode=mode) as c:
        for name, args in SCRIPT:
            r = await c.call_tool(name, args)
            texts.append((r.is_error, r.content[0].text if r.content else ""))
    client.close()
    assert texts[0][0] and texts[0][1].startswith(  # the SDK's own answer, then our suggestion
        "Unknown tool: get_benchmark_results_advanced. Did you mean 'get_benchmark_results'")
    assert texts[1][0] and texts[1][1].startswith("Error executing tool get_benchmark_results_by_filters: 1 validation")
    assert "- limit: expected integer, got string 'ten'" in texts[1][1]
    assert "- model_name: required field missing" not in texts[1][1]  # optional in the filters tool
    assert texts[2] == (True, "Error executing tool get_benchmark_results")  # the SDK's own answer, untouched
    assert texts[4][0] is False
    sessions = by_session(sink.events)
    assert len(sessions) == 1
    events = next(iter(sessions.values()))
    assert lifecycle(events) == EXPECTED
    md = {e["event_name"]: e["metadata"] for e in events}
    start = md["session_start"]
    assert start["session_source"] == "connection" and start["client_name"] == "mcp"
    assert start["protocol_version"] == ("2026-07-28" if mode == "auto" else "2025-11-25")
    h = md["hallucinated_tool_call"]
    assert h["similar_tool_suggested"] == "get_benchmark_results" and h["similarity_score"] >= 60
    assert "get_benchmark_results_by_filters" in h["suggestions"]
    assert "list_models" in h["available_tools"]
    errors = md["schema_validation_error"]["validation_errors"]
    assert {"field": "limit", "error": "expected integer, got string 'ten'", "schema_path": "properties.limit.type",
            "kind": "type", "blocking": True} in errors
    retry = md["tool_call_retry"]
    assert (retry["original_call_sequence"], retry["retry_attempt"], retry["retry_reason"]) == (2, 1,
                                                                                               "execution_failed")
    started = [e["metadata"] for e in events if e["event_name"] == "tool_call_started"]
    assert [s["is_retry"] for s in started] == [False, False, True, False]
    assert [s["mcp_tool_available"] for s in started] == [True, True, True, True]
    assert started[0]["previous_tool_name"] is None
    assert started[0]["after_hallucinated_tool"] == "get_benchmark_results_advanced"
    failed = [e["metadata"]["error_type"] for e in events if e["event_name"] == "tool_call_failed"]
    assert failed == ["tool_error", "tool_error"]
    done = md["tool_call_completed"]
    assert done["execution_time_ms"] > 0 and done["result_size"] > 0
    outcome = md["session_completed"]
    assert outcome["success"] is True and outcome["steps_count"] == 4 and outcome["failed_calls_count"] == 2
    assert outcome["retry_count"] == 1 and outcome["schema_errors_count"] == 1
    assert md["session_end"]["end_reason"] == ("connection_closed" if mode == "legacy" else "shutdown")


async def test_live_manifest_follows_tools_added_and_removed():
    """A tool added at run time is known at once; a removed one becomes a hallucination."""
    server, client, sink = tracked_server()

    def mul(a: int, b: int) -> int:
        return a * b

    async with Client(server) as c:
        assert (await c.call_tool("mul", {"a": 2, "b": 3})).is_error
        server.add_tool(mul)
        assert (await c.call_tool("mul", {"a": 2, "b": 3})).content[0].text == "6"
        server.remove_tool("mul")
        assert (await c.call_tool("mul", {"a": 2, "b": 3})).is_error
    client.close()
    assert [e["event_name"] for e in sink.events].count("hallucinated_tool_call") == 2


async def test_observe_mode_lets_the_framework_decide():
    """validation='observe' records the violation and lets the SDK coerce '3' to 3."""
    server, client, sink = tracked_server(validation="observe")
    async with Client(server) as c:
        r = await c.call_tool("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": "3"})
    client.close()
    assert not r.is_error
    names = [e["event_name"] for e in sink.events]
    assert "schema_validation_error" in names and "tool_call_completed" in names


async def test_extra_fields_are_reported_not_dropped():
    """An argument the schema does not declare is reported (non-blocking) and the call runs."""
    server, client, sink = tracked_server()
    async with Client(server) as c:
        r = await c.call_tool("get_leaderboard", {"benchmark": "mmlu", "include_costs": True})
    client.close()
    assert not r.is_error
    err = next(e for e in sink.events if e["event_name"] == "schema_validation_error")["metadata"]
    assert err["enforced"] is False
    assert err["validation_errors"][0]["field"] == "include_costs" and not err["validation_errors"][0]["blocking"]


async def test_polling_tools_and_changing_results_are_not_retries():
    """A configured polling tool, or a repeat whose result changed, is not a retry; a same-result repeat is."""
    server, client, sink = tracked_server(polling_tools=["list_benchmarks"])
    counter = {"n": 0}

    def tick() -> int:
        counter["n"] += 1
        return counter["n"]

    server.add_tool(tick)
    async with Client(server) as c:
        for _ in range(3):
            await c.call_tool("list_benchmarks", {})  # configured as polled
        for _ in range(3):
            await c.call_tool("tick", {})  # result changes every time
        for _ in range(2):
            await c.call_tool("list_models", {})  # same answer twice: a wasted step
    client.close()
    retries = [e["metadata"] for e in sink.events if e["event_name"] == "tool_call_retry"]
    assert [(r["tool_name"], r["retry_reason"]) for r in retries] == [("list_models", "repeated_after_success")]


async def test_results_are_sized_and_compared_as_sent_and_parsed_only_when_checked(monkeypatch):
    """A result is sized and fingerprinted from its bytes as sent (UTF-8 text, or the structured JSON); a JSON
    text result is parsed only for a tool with completeness checks; a repeat with a changed text is polling."""
    import mcp_tracking.core.results as results

    parsed = []
    real_loads = results.loads
    monkeypatch.setattr(results, "loads", lambda text: parsed.append(len(text)) or real_loads(text))
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = build_server("drea")
    server.middleware.append(TrackingMiddleware(client, server=server,
                                                completeness={"checked_table": [has_multiple_results]}))
    rows = [{"model": f"m-{i}", "note": "é" * 3} for i in range(200)]
    text = json.dumps(rows, ensure_ascii=False)
    version = {"n": 0}

    def table() -> str:
        """Rows as JSON text."""
        return text

    def changing_table() -> str:
        """Rows as JSON text, one more row each time."""
        version["n"] += 1
        return json.dumps(rows[: version["n"]])

    def structured() -> list[str]:
        """A structured result (``{"result": [...]}`` on the wire, beside its text)."""
        return [r["model"] + r["note"] for r in rows[:3]]

    server.add_tool(table, structured_output=False)  # text content only
    server.add_tool(changing_table, structured_output=False)
    server.add_tool(structured)
    server.add_tool(table, name="checked_table", structured_output=False)
    async with Client(server) as c:
        for _ in range(2):
            assert (await c.call_tool("table", {})).content[0].text == text
        for _ in range(2):
            await c.call_tool("changing_table", {})
        sent = await c.call_tool("structured", {})
        await c.call_tool("checked_table", {})  # has completeness checks: its text is parsed
    client.close()
    done = {}
    for e in sink.events:
        if e["event_name"] == "tool_call_completed":
            done.setdefault(e["metadata"]["tool_name"], []).append(e["metadata"])
    assert [d["result_size"] for d in done["table"]] == [len(text.encode())] * 2
    assert sent.structured_content == {"result": ["m-0ééé", "m-1ééé", "m-2ééé"]}
    assert done["structured"][0]["result_size"] == len(json.dumps(sent.structured_content, separators=(",", ":"),
                                                                   ensure_ascii=False).encode())
    retries = [e["metadata"]["tool_name"] for e in sink.events if e["event_name"] == "tool_call_retry"]
    assert retries == ["table"]  # the same text twice is a wasted step; a changed one is polling
    assert parsed == [len(text)]  # only the call whose tool has completeness checks parsed its text
    complete = [e["metadata"] for e in sink.events if e["event_name"] == "answer_complete"]
    assert [(m["tool_name"], m["result_count"]) for m in complete] == [("checked_table", 200)]


async def test_timeout_is_recorded_and_answered():
    """A hanging tool under a configured limit is cancelled, answered, and recorded as a timeout."""
    server, client, sink = tracked_server(timeout=0.2)

    async def hang() -> str:
        await anyio.sleep(30)
        return "never"

    server.add_tool(hang)
    async with Client(server) as c:
        r = await c.call_tool("hang", {})
    client.close()
    assert r.is_error and "timed out after 0.2 s" in r.content[0].text
    failed = next(e["metadata"] for e in sink.events if e["event_name"] == "tool_call_failed")
    assert failed["error_type"] == "timeout" and failed["execution_time_ms"] >= 190


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_fifty_concurrent_clients_get_their_own_gapless_sessions(mode):
    """50 clients x 20 calls at once: 50 sessions, call_sequence 1..20 in each, nothing lost or doubled."""
    server, client, sink = tracked_server()

    async def agent(i: int) -> None:
        async with Client(server, mode=mode) as c:
            for n in range(20):
                await c.call_tool("compare_models", {"model_names": [f"m{i}"], "benchmark": f"b{n}"})

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(agent, i)
    client.close()
    sessions = by_session(sink.events)
    assert len(sessions) == 50
    for events in sessions.values():
        seqs = [e["metadata"]["call_sequence"] for e in events if e["event_name"] == "tool_call_started"]
        assert seqs == list(range(1, 21))
        models = {e["metadata"]["tool_params"]["model_names"][0] for e in events
                  if e["event_name"] == "tool_call_started"}
        assert len(models) == 1  # never merged with another client
        assert [e["event_name"] for e in events].count("tool_call_completed") == 20
    ids = [e["event_id"] for e in sink.events]
    assert len(ids) == len(set(ids))


async def test_explicit_session_and_user_in_meta():
    """A session/user key in _meta wins over the connection."""
    server, client, sink = tracked_server()
    async with Client(server) as c:
        await c.call_tool("list_models", {}, meta={"io.mcp-tracking/session_id": "conv-42",
                                                   "io.mcp-tracking/user_id": "alice"})
    client.close()
    start = next(e for e in sink.events if e["event_name"] == "session_start")
    assert (start["session_id"], start["user_id"]) == ("conv-42", "alice")
    assert start["metadata"]["session_source"] == "explicit"


FAULT_STAGES = [
    ("mcp_tracking.core.recorder.Recorder.resolve_identity", None),
    ("mcp_tracking.core.tracker.params_digest", None),
    ("mcp_tracking.client.AnalyticsClient._emit", None),
    ("mcp_tracking.core.validation.ValidatorCache.get", None),
    ("mcp_tracking.core.recorder.suggest", None),
    ("mcp_tracking.core.results.WireResult.wire_bytes", None),
    ("mcp_tracking.core.completeness.has_result_data", None),
    ("mcp_tracking.adapters.mcpserver.call_info", None),
    ("mcp_tracking.adapters.mcpserver._peer_facts", None),
    ("mcp_tracking.core.identity.ByIdentity.get", None),
    ("mcp_tracking.core.recorder.validate", None),
    ("mcp_tracking.adapters._common.did_you_mean", None),
    ("mcp_tracking.adapters._common.pydantic_text_errors", None),
    ("mcp_tracking.core.results.payload_of", None),
    ("mcp_tracking.emit.emitter.Emitter.emit", None),
]

CALLS = [("list_models", {}), ("get_benchmark_results", {"model_name": "nope"}),
         ("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": 2}), ("compare_models",
                                                                                  {"model_names": ["gpt-4.1"],
                                                                                   "benchmark": "mmlu"})]


UNKNOWN = ("get_benchmark_results_advanced", {"model_name": "gpt-4.1"})
INVALID = ("get_benchmark_results_by_filters", {"limit": "ten"})


async def answers(server, mode="auto", calls=CALLS):
    out = []
    async with Client(server, mode=mode) as c:
        for name, args in calls:
            r = await c.call_tool(name, args)
            out.append((r.is_error, [x.model_dump() for x in r.content], r.structured_content))
    return out


@pytest.mark.parametrize("target", [t for t, _ in FAULT_STAGES])
async def test_every_internal_stage_failing_leaves_calls_untouched(monkeypatch, target):
    """Each stage of tracking made to raise in turn: every call returns exactly what it returns untracked."""
    baseline = await answers(build_server("drea"))

    reached = []

    def boom(*a, **k):
        reached.append(target)
        raise RuntimeError(f"injected fault in {target}")

    module_path, attr = target.rsplit(".", 1)
    import importlib

    try:
        owner = importlib.import_module(module_path)
    except ImportError:
        mod, cls = module_path.rsplit(".", 1)
        owner = getattr(importlib.import_module(mod), cls)
    monkeypatch.setattr(owner, attr, boom)
    server, client, _sink = tracked_server()
    got = await answers(server, calls=[*CALLS, INVALID, UNKNOWN])
    client.close(timeout=5)
    assert got[:-2] == baseline
    # invalid arguments: the SDK's own refusal (our corrective lines may follow it), an error either way
    assert got[-2][0] and got[-2][1][0]["text"].startswith("Error executing tool get_benchmark_results_by_filters: 1")
    # an unknown name: the corrective answer, or (tracking gave up) the SDK's own; an error either way
    is_error, content, _ = got[-1]
    assert is_error and content[0]["text"].startswith("Unknown tool: get_benchmark_results_advanced")
    assert reached, f"{target} was never called: the fault was not injected"


def raw_stdio(lines: list[dict], env: dict | None = None) -> tuple[list[dict], str]:
    """Speak raw JSON-RPC to the example server over stdio; every stdout line must parse as JSON."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "mcpserver_example.py"), "stdio"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    wanted = {m["id"] for m in lines if "id" in m}
    out: list[dict] = []
    try:
        for m in lines:
            proc.stdin.write(json.dumps(m) + "\n")
            proc.stdin.flush()
        while wanted:
            line = proc.stdout.readline()
            assert line, "server closed stdout early"
            msg = json.loads(line)  # anything but JSON-RPC on stdout fails here
            assert msg.get("jsonrpc") == "2.0"
            out.append(msg)
            wanted.discard(msg.get("id"))
    finally:
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(30)
    assert all(json.loads(x) for x in rest.splitlines() if x.strip())
    return out, proc.stderr.read() if proc.stderr else ""


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
               "io.modelcontextprotocol/clientCapabilities": {}}


def test_stdio_stream_stays_clean_and_answers_are_serialised_like_the_sdk(tmp_path):
    """Over stdio every stdout line is JSON-RPC; our answers have exactly the SDK's result keys per era."""
    import os

    env = {**os.environ, "MCP_TRACKING_URL": f"sqlite:///{tmp_path}/stdio.db"}
    legacy = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ad", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "get_benchmark_results_by_filters", "arguments": {"model_name": "x"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "get_benchmark_results_by_filters", "arguments": {"model_name": 5}}},
    ]
    out, _ = raw_stdio(legacy, env)
    results = {m["id"]: m["result"] for m in out if "result" in m}
    sdk_error, ours_unknown, ours_invalid = results[3], results[2], results[4]
    assert sdk_error["isError"] is True  # the tool raised: the SDK's own error result
    assert set(ours_unknown) == set(ours_invalid) == set(sdk_error) - {"structuredContent"}
    assert "resultType" not in ours_unknown
    modern = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "ad", "arguments": {}, "_meta": MODERN_META}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "get_benchmark_results_by_filters", "arguments": {"model_name": "x"}, "_meta": MODERN_META}},
    ]
    out, _ = raw_stdio(modern, env)
    results = {m["id"]: m["result"] for m in out if "result" in m}
    assert set(results[1]) == set(results[2]) - {"structuredContent"}
    assert results[1]["_meta"] == results[2]["_meta"]  # the serverInfo stamp, as the SDK adds it
    assert results[1]["resultType"] == "complete"


@pytest.mark.slow
async def test_stdio_subprocess_end_to_end(tmp_path):
    """A real stdio client against a tracked server process: corrective text, events in its SQLite store."""
    import os

    from mcp import StdioServerParameters

    db = tmp_path / "stdio.db"
    params = StdioServerParameters(command=sys.executable, args=[str(ROOT / "examples" / "mcpserver_example.py"),
                                                                 "stdio"],
                                   env={**os.environ, "MCP_TRACKING_URL": f"sqlite:///{db}"}, cwd=str(ROOT))
    for mode in ("auto", "legacy"):
        async with Client(params, mode=mode) as c:
            r = await c.call_tool("list_modles", {})
            assert r.is_error and "Did you mean 'list_models'?" in r.content[0].text
            assert (await c.call_tool("list_models", {})).is_error is False
    from mcp_tracking import compute_metrics

    result = compute_metrics(f"sqlite:///{db}")
    assert result.totals.hallucinations == 2 and result.totals.tool_calls == 2  # a hallucination is not a call
    assert result.totals.started_sessions == 2


@pytest.mark.slow
async def test_streamable_http_both_eras(tmp_path):
    """Over HTTP: legacy sessions come from Mcp-Session-Id, 2026-07-28 ones from the TCP connection."""
    port = free_port()
    db = tmp_path / "http.db"
    with server_process([str(ROOT / "examples" / "mcpserver_example.py"), "http", str(port)], port=port,
                        env={"MCP_TRACKING_URL": f"sqlite:///{db}"}):
        for mode in ("auto", "legacy"):
            async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as c:
                r = await c.call_tool("list_modles", {})
                assert "Did you mean 'list_models'?" in r.content[0].text
                await c.call_tool("list_models", {})
                await c.call_tool("list_models", {})
    from mcp_tracking.sinks import SQLiteSink

    events = list(SQLiteSink(db).iter_events())
    starts = [e for e in events if e["event_name"] == "session_start"]
    assert sorted(s["metadata"]["session_source"] for s in starts) == ["connection", "transport"]
    for s in starts:
        seqs = [e["metadata"]["call_sequence"] for e in events
                if e["session_id"] == s["session_id"] and e["event_name"] == "tool_call_started"]
        assert seqs == [1, 2]  # the unknown name before them took no number
        assert s["metadata"]["transport"] == "streamable-http"


def test_instrument_mcpserver_is_idempotent():
    """instrument() adds one middleware, however often it is called."""
    server = MCPServer("x")
    first = instrument(server, AnalyticsClient(MemorySink()))
    assert instrument(server) is first
    assert sum(isinstance(m, TrackingMiddleware) for m in server.middleware) == 1
