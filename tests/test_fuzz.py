"""Bad input gets a clear answer and a well-formed event: property-based tests over the interception path."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp import Client

from mcp_tracking import AnalyticsClient, MemorySink, TrackingMiddleware
from mcp_tracking.demo.server import build_server

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50), st.binary(max_size=30), st.datetimes(timezones=st.just(timezone.utc)),
    st.sets(st.integers(), max_size=3), st.builds(object),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=20)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=50))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=20)
names = st.one_of(st.text(max_size=300), st.sampled_from(["list_models", "get_leaderboard", "get_benchmark_results"]),
                  st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=31), max_size=20))


def deep(n: int) -> dict:
    d: dict = {}
    cur = d
    for _ in range(n):
        cur["k"] = {}
        cur = cur["k"]
    return d


def well_formed(sink: MemorySink) -> None:
    for e in sink.events:
        assert isinstance(e["metadata"], dict)
        assert len(orjson.dumps(e["metadata"])) < 200_000  # sizes capped
        assert e["event_id"] and e["created_at"].endswith("+00:00")


def server_and_sink():
    """A tracked demo server and its in-memory store."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.01, handle_sigterm=False)
    server = build_server("fuzz")
    server.middleware.append(TrackingMiddleware(client, server=server))
    return server, client, sink


WIRE = server_and_sink()


@SETTINGS
@given(name=names, arguments=st.dictionaries(st.text(max_size=20), json_values, max_size=5))
def test_any_name_and_arguments_get_an_answer(name, arguments):
    """Unknown unicode names, control characters, odd arguments over a real client: an answer, never a crash."""
    server, client, sink = WIRE

    async def call():
        async with Client(server) as c:
            return await c.call_tool(name, arguments)

    result = anyio.run(call)
    assert result.content  # the agent is told something
    if name not in {"list_models", "get_leaderboard", "get_benchmark_results"}:
        assert result.is_error and "Unknown tool" in result.content[0].text
    assert client.flush()
    well_formed(sink)
    sink.clear()


def test_a_ten_megabyte_argument_is_answered_and_capped():
    """A 10 MB string over a real client: the call is answered, the stored event is capped."""
    server, client, sink = server_and_sink()

    async def call():
        async with Client(server) as c:
            return await c.call_tool("get_leaderboard", {"benchmark": "x" * 10_000_000})

    assert anyio.run(call).content
    client.close()
    well_formed(sink)
    started = next(e for e in sink.events if e["event_name"] == "tool_call_started")
    stored = started["metadata"]["tool_params"]["benchmark"]
    assert len(stored) < 5000 and stored.endswith("more chars]")


def test_deep_cyclic_and_non_json_arguments_through_the_decorator():
    """1,000-deep nesting, cycles, NaN/inf, bytes, sets, datetimes (programmatic calls): the tool's own
    result comes back and every event is well-formed."""
    from mcp_tracking import track_tool

    sink = MemorySink()
    client = AnalyticsClient(sink, handle_sigterm=False)

    @track_tool(client, validate=False)
    def echo(payload: object) -> str:
        return "ok"

    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    odd = {"nan": math.nan, "inf": -math.inf, "raw": b"\x00\xff", "tags": {1, 2},
           "when": datetime.now(timezone.utc), "obj": object()}
    for payload in (deep(1000), cyclic, odd, "y" * 10_000_000):
        assert echo(payload=payload) == "ok"
    client.close()
    well_formed(sink)
    assert [e["event_name"] for e in sink.events].count("tool_call_completed") == 4


@SETTINGS
@given(event_name=st.text(max_size=600), metadata=st.dictionaries(st.text(max_size=20), values, max_size=6),
       user=st.one_of(st.none(), st.text(max_size=700)), session=st.one_of(st.none(), st.text(max_size=700)))
def test_track_accepts_anything_and_stores_json(event_name, metadata, user, session):
    """track() never raises and every stored event is JSON with capped identifiers."""
    sink = MemorySink()
    client = AnalyticsClient(sink, handle_sigterm=False)
    assert client.track(user, event_name, metadata, session) in (True, False)
    client.close(end_sessions=False)
    well_formed(sink)
    for e in sink.events:
        assert len(e["event_name"]) <= 512 and len(e["user_id"]) <= 512


def test_malformed_schemas_do_not_break_calls():
    """A tool whose input schema is invalid is still called; validation is skipped and logged once."""
    server, client, sink = server_and_sink()

    def odd(x: int) -> int:
        return x

    server.add_tool(odd)
    server._tool_manager.get_tool("odd").parameters = {"type": "object", "properties": {"x": {"type": 12}}}

    async def call():
        async with Client(server) as c:
            return await c.call_tool("odd", {"x": 1})

    assert anyio.run(call).content[0].text == "1"
    client.close()
    assert "tool_call_completed" in [e["event_name"] for e in sink.events]


secretish = st.sampled_from(["password", "API_KEY", "token", "query", "name", "Authorization", "limit", "k"])
payload_values = st.recursive(
    st.one_of(json_scalars, st.text(min_size=400, max_size=5000), st.binary(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(secretish, st.integers()),
                                                                         inner, max_size=4)),
    max_leaves=12)
event_names = st.sampled_from(["tool_call_started", "tool_call_completed", "wrong_tool_error", "custom_event",
                               "x" * 600])
metadata_fields = st.dictionaries(
    st.sampled_from(["tool_name", "tool_params", "first_tool_params", "error_message", "requested_tool_name",
                     "params_hash", "execution_time_ms", "success", "password", "note"]),
    payload_values, min_size=1, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(st.tuples(event_names, metadata_fields, st.one_of(st.none(), st.text(max_size=600))),
                      min_size=1, max_size=8))
@example(batch=[("tool_call_started", {"tool_params": {"q": "x" * 5000}}, None)])
@example(batch=[("tool_call_failed", {"error_message": "e" * 3000, "tool_name": "t"}, None)])
@example(batch=[("tool_call_started", {"tool_name": "t" * 600, "tool_params": {}}, None)])
@example(batch=[("custom_event", {"password": "p"}, "s" * 600), ("tool_call_completed", {"success": True}, None)])
@example(batch=[("tool_call_started", {"tool_params": {"token": "t"}}, None),
                ("tool_call_completed", {"tool_params": {}}, None)])
def test_the_worker_fast_path_stores_what_the_full_chain_stores(batch):
    """The worker's one-loop fast path (clean events skip the processor chain) changes nothing: every event
    ends as the chain alone would leave it (same stored bytes, same identifiers), in the same order."""
    import copy

    from mcp_tracking.emit.emitter import Emitter
    from mcp_tracking.emit.processors import FastPath, default_processors
    from mcp_tracking.events import EventRecord

    def records(shared=None):
        out = [EventRecord(name, "u", session, "m", copy.deepcopy(md), event_id=f"id{i}")
               for i, (name, md, session) in enumerate(batch)]
        if shared is not None:  # as a call's events do: one arguments object in several events of the batch
            for r in out:
                if "tool_params" in r.metadata:
                    r.metadata["tool_params"] = shared
        return out

    first = next((md["tool_params"] for _, md, _ in batch if "tool_params" in md), None)
    for redact, shared in ((True, None), (False, None), (True, first)):  # default chain, no redaction, shared args
        emitter = Emitter(MemorySink(), processors=default_processors(redact=redact), spool_dir=False)
        assert FastPath.of(emitter.processors) is not None
        fast = emitter._process(records(copy.deepcopy(shared)))
        slow = []
        for record in records():
            if shared is not None and "tool_params" in record.metadata:
                record.metadata["tool_params"] = copy.deepcopy(shared)
            event = record
            for proc in default_processors(redact=redact):
                event = proc(event)
            slow.append(event)
        assert [(e.event_id, e.event_name, e.session_id, e.metadata_json) for e in fast] == \
               [(e.event_id, e.event_name, e.session_id, e.metadata_json) for e in slow]


# --- the validation fast path agrees with jsonschema ------------------------------------------------------

JSON_TYPES = ["string", "integer", "number", "boolean", "null", "array", "object"]
prop_specs = st.one_of(
    st.builds(lambda t: {"type": t}, st.sampled_from(JSON_TYPES)),
    st.builds(lambda ts: {"type": ts}, st.lists(st.sampled_from(JSON_TYPES), min_size=1, max_size=3, unique=True)),
    st.builds(lambda ts: {"anyOf": [{"type": t} for t in ts]},
              st.lists(st.sampled_from(JSON_TYPES), min_size=1, max_size=3, unique=True)),
    st.just({}), st.just({"title": "anything", "description": "goes"}),
)
flat_schemas = st.dictionaries(st.sampled_from(list("abcdef")), prop_specs, max_size=5).flatmap(
    lambda props: st.builds(
        lambda required, extra: {"type": "object", "properties": props, "required": required,
                                 **({} if extra is None else {"additionalProperties": extra}), "title": "T"},
        st.lists(st.sampled_from(list("abcdefg")), max_size=3, unique=True),
        st.sampled_from([None, True, False])))
arg_values = st.one_of(json_scalars, st.floats(allow_nan=False, allow_infinity=False).map(float),
                       st.integers(-5, 5).map(float), st.lists(json_scalars, max_size=2),
                       st.dictionaries(st.text(max_size=3), json_scalars, max_size=2))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(flat_schemas, st.dictionaries(st.sampled_from(list("abcdefgh")), arg_values, max_size=6))
def test_validation_fast_path_agrees_with_jsonschema(schema, args):
    """For the schemas frameworks generate, the fast check says "clean" exactly when jsonschema accepts the
    arguments and none falls outside the schema's properties; and the outcome is the same with or without it."""
    from dataclasses import replace

    from jsonschema import Draft202012Validator

    from mcp_tracking.core.validation import compile_schema, validate

    compiled = compile_schema(schema)
    assert compiled.fast_check is not None
    clean = Draft202012Validator(schema).is_valid(args) and set(args) <= set(schema["properties"])
    assert compiled.fast_check(args) is clean
    assert validate(compiled, args) == validate(replace(compiled, fast_check=None), args)


# --- hostile input through every door: surrogates, control characters, depth, size, secrets ----------------

hostile_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=5),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=20),  # C0 and C1 controls, escapes
    st.just("\x1b]0;t\x07\x1b[2J\u202e"), st.just("x" * 100_000),
)
#: keys without lone surrogates: the SDK clients themselves cannot serialise such a key (values they can)
hostile_keys = st.one_of(st.text(max_size=20), st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=10))
hostile_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_keys, inner, max_size=3)),
    max_leaves=12)
secret_keys = st.sampled_from(["password", "X-Api-Key", "api-key", "apiKey", "Private_Key", "ACCESS.KEY",
                               "session-key", "client_secret", "Authorization", "refreshToken"])
HOSTILE = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


def _hostile_arguments(extra: dict, key: str, depth: int, secret: str) -> dict:
    leaf: dict = {key: secret}
    for i in range(depth):
        leaf = {f"d{i}": leaf}
    return {"payload": {**extra, "nested": leaf}}


def echo(payload: dict) -> int:
    """Count the payload's top-level keys (the same answer tracked or not)."""
    return len(payload)


def _check_store(sink: MemorySink, secret: str, calls: int) -> None:
    text = orjson.dumps(sink.events).decode()
    assert secret not in text, "a secret value was stored"
    names = [e["event_name"] for e in sink.events]
    assert names.count("tool_call_started") == calls and names.count("tool_call_completed") == calls


def _door_run(door: str, arguments_list: list[dict]) -> tuple[list, MemorySink]:
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.01, handle_sigterm=False)
    results: list = []
    if door in ("mcpserver", "fastmcp"):
        import fastmcp

        from mcp_tracking import instrument

        if door == "mcpserver":
            from mcp.server.mcpserver import MCPServer

            server: object = MCPServer("hostile")
            server.add_tool(echo)  # type: ignore[attr-defined]
        else:
            server = fastmcp.FastMCP("hostile")
            server.tool(echo)  # type: ignore[attr-defined]
        instrument(server, client)

        async def calls() -> None:
            if door == "fastmcp":
                async with fastmcp.Client(server) as fc:
                    for args in arguments_list:
                        r = await fc.call_tool_mcp("echo", args)
                        results.append((r.is_error, r.content[0].text if r.content else None))
                return
            async with Client(server) as c:
                for args in arguments_list:
                    r = await c.call_tool("echo", args)
                    results.append((r.is_error, r.content[0].text if r.content else None))

        anyio.run(calls)
    elif door == "decorator":
        from mcp_tracking import track_tool

        tracked = track_tool(client)(echo)
        results.extend((False, str(tracked(**args))) for args in arguments_list)
    else:  # the design's SDK helpers, as a server that calls them would
        for args in arguments_list:
            client.track_tool_call_started(user_id="u", tool_name="echo", tool_params=args, session_id="s",
                                           mcp_tools_manifest=["echo"])
            value = echo(**args)
            client.track_tool_usage(user_id="u", tool_name="echo", tool_params=args, success=True,
                                    execution_time_ms=1.0, session_id="s")
            results.append((False, str(value)))
    assert client.close(timeout=30)
    return results, sink


@pytest.mark.timeout(600)
@HOSTILE
@given(door=st.sampled_from(["mcpserver", "fastmcp", "decorator", "helpers"]),
       extras=st.lists(st.dictionaries(hostile_keys, hostile_values, max_size=3), min_size=1, max_size=3),
       key=secret_keys, depth=st.sampled_from([0, 3, 70]), secret=st.from_regex(r"S3cr3t-[a-f0-9]{12}", fullmatch=True))
def test_hostile_arguments_through_every_door(door, extras, key, depth, secret):
    """Lone surrogates, control characters, 70-deep nesting and 100 KB values, with a secret under a secret
    key, through each door: the tool answers as untracked, no call's events are lost, the secret is never
    stored."""
    arguments = [_hostile_arguments(extra, key, depth, secret) for extra in extras]
    expected = [str(echo(**a)) for a in arguments]
    results, sink = _door_run(door, arguments)
    if door in ("mcpserver", "fastmcp"):
        assert all(not err for err, _ in results) and [t for _, t in results] == expected
    else:
        assert [t for _, t in results] == expected
    _check_store(sink, secret, len(arguments))
