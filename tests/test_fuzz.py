"""Bad input gets a clear answer and a well-formed event: property-based tests over the interception path."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import anyio
import orjson
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
