"""Hostile input and hostile surroundings (issue #16): the agent chooses names, arguments and ``_meta``; tool
schemas come from code we do not control. Each test drives the real component."""

from __future__ import annotations

import socket
import threading
from typing import Annotated

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import Field

from mcp_tracking import AnalyticsClient, MemorySink, instrument, track_tool
from mcp_tracking.core.validation import ValidatorCache, compile_schema, validate

pytestmark = pytest.mark.anyio


class Listener:
    """A local TCP listener that accepts connections, never answers, and records each one."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.connections.append(addr)
            self._held.append(conn)  # accepted, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._held:
            c.close()
        self.sock.close()


@pytest.fixture(name="listener")
def _listener():
    listener = Listener()
    yield listener
    listener.close()


def _server_with_schema(client: AnalyticsClient, schema: dict, **options) -> MCPServer:
    server = MCPServer("hostile")

    def lookup(x: object = None) -> str:
        """Look something up."""
        return "ok"

    server.add_tool(lookup)
    server._tool_manager.get_tool("lookup").parameters = schema  # a tool author's hand-written schema
    instrument(server, client, **options)
    return server


@pytest.mark.timeout(60)
@pytest.mark.parametrize("validation", ["observe", "enforce"])
async def test_a_remote_ref_is_never_fetched(listener, validation):
    """A ``$ref`` to a host that accepts and never answers: nothing connects to it, the call is answered,
    and the server keeps serving a second client meanwhile (before: the event loop froze for good)."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    remote = f"http://127.0.0.1:{listener.port}/schema.json"
    schema = {"type": "object", "properties": {"x": {"$ref": remote}, "y": {"$ref": f"{remote}#/defs/y"}}}
    server = _server_with_schema(client, schema, validation=validation)
    async with Client(server) as a, Client(server) as b:
        first = await a.call_tool("lookup", {"x": 1})
        second = await b.call_tool("lookup", {"x": 2})
    client.close()
    assert listener.connections == []
    assert first.content[0].text == second.content[0].text == "ok"  # not ours to refuse: left to the framework
    assert [e["event_name"] for e in sink.events].count("tool_call_completed") == 2


def test_remote_refs_are_refused_by_the_validator_itself(listener):
    """The same through the validator alone: every way a schema can point outside itself."""
    url = f"http://127.0.0.1:{listener.port}"
    for schema in (
        {"$ref": f"{url}/a.json"},
        {"type": "object", "properties": {"x": {"$ref": f"{url}/b.json#/x"}}},
        {"$id": f"{url}/root.json", "type": "object", "properties": {"x": {"$ref": "other.json"}}},
        {"type": "object", "properties": {"x": {"$dynamicRef": f"{url}/c.json"}}},
        {"$schema": f"{url}/meta.json", "type": "object"},
    ):
        assert validate(compile_schema(schema), {"x": 1}) is None
    assert listener.connections == []


@pytest.mark.timeout(60)
async def test_catastrophic_patterns_run_in_linear_time():
    """``^(a+)+$`` against 40 a's and a '!' (2^40 backtracking steps in Python's ``re``): answered at once,
    recorded as a pattern violation, and the framework's own refusal stands (before: seconds to hours)."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    server = MCPServer("patterns")

    def tag(name: Annotated[str, Field(pattern=r"^(a+)+$")]) -> str:
        """Tag it."""
        return name

    server.add_tool(tag)
    instrument(server, client)
    async with Client(server) as c:
        bad = await c.call_tool("tag", {"name": "a" * 40 + "!"})
        good = await c.call_tool("tag", {"name": "aaaa"})
    client.close()
    assert bad.is_error and not good.is_error
    error = next(e for e in sink.events if e["event_name"] == "schema_validation_error")
    assert error["metadata"]["validation_errors"][0]["kind"] == "pattern"


@pytest.mark.timeout(60)
def test_every_regex_keyword_is_linear_time():
    """``pattern`` (also under ``propertyNames``), ``patternProperties`` and the additional-properties test
    on agent-chosen keys: each over 100,000 characters built to make a backtracking engine explode."""
    evil = r"^(a+)+$"
    long_text = "a" * 100_000 + "!"
    schemas = [
        {"type": "object", "properties": {"s": {"type": "string", "pattern": evil}}},
        {"type": "object", "propertyNames": {"pattern": evil}},
        {"type": "object", "patternProperties": {evil: {"type": "integer"}}},
        {"type": "object", "patternProperties": {evil: {}}, "additionalProperties": False},
        {"type": "object", "patternProperties": {evil: {}}, "unevaluatedProperties": False},
    ]
    args = {"s": long_text, long_text: "x", "aaa": "x"}  # the long ones do not match: the worst case
    for schema in schemas[:4]:
        outcome = validate(compile_schema(schema), args)
        assert outcome is not None  # each of these schemas is broken by the arguments, and says so
    # unevaluatedProperties beside patternProperties would run jsonschema's own backtracking search: not
    # checked by us (documented), and never slow
    assert validate(compile_schema(schemas[4]), args) is None
    ok = validate(compile_schema(schemas[0]), {"s": "aaa"})
    assert ok is None


def test_a_pattern_the_linear_engine_cannot_run_is_left_to_the_framework():
    """Look-behind and back-references are beyond a linear-time engine: not checked by us, never raised."""
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": r"(a)\1"}}}
    assert validate(compile_schema(schema), {"s": "xyz"}) is None


def test_a_schema_changed_in_place_is_compiled_again():
    """Validators are keyed by the schema's content, not by the object's identity."""
    cache = ValidatorCache()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert validate(cache.get("t", schema), {"n": 1}) is None
    schema["properties"]["n"]["type"] = "string"  # the tool author swaps the type at run time
    outcome = validate(cache.get("t", schema), {"n": 1})
    assert outcome is not None and outcome.errors[0]["field"] == "n"
    assert validate(cache.get("t", schema), {"n": "1"}) is None


def test_the_decorator_validates_against_the_schema_as_it_is_now():
    """The same through a real door: ``@track_tool`` refuses by the schema it holds today."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)

    @track_tool(client)
    def double(n: int) -> int:
        """Double it."""
        return 2 * n

    assert double(n=2) == 4
    with pytest.raises(ValueError, match="expected integer"):
        double(n="two")
    client.close()


def test_hostile_input_never_reaches_the_network_in_the_event_loop(listener):
    """anyio's loop stays free while a schema with a remote reference is compiled and used."""

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            for _ in range(20):
                validate(compile_schema({"$ref": f"http://127.0.0.1:{listener.port}/x.json"}), {})
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        assert ticks > 5

    anyio.run(main)
    assert listener.connections == []


# --- 1. one poisoned value costs at most that value --------------------------------------------------

LONE = "\ud800"  # a lone surrogate: what bytes decoded with surrogateescape leave behind


def _store(kind: str, tmp_path, pg_url_factory) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'p.db'}"
    if kind == "jsonl":
        return f"jsonl:///{tmp_path / 'p.jsonl'}"
    return pg_url_factory()


@pytest.fixture(name="pg_url_factory")
def _pg_url_factory(request):
    return lambda: request.getfixturevalue("pg_url")


@pytest.mark.parametrize("kind", ["sqlite", "jsonl", "postgres"])
def test_a_lone_surrogate_anywhere_costs_nothing_but_itself(kind, tmp_path, pg_url_factory):
    """1,000 clean events and one with a lone surrogate in every string it has (user, session, server, event
    name, metadata key and value, error text): all 1,001 are stored, the bad characters as U+FFFD."""
    from mcp_tracking import sink_from_url

    url = _store(kind, tmp_path, pg_url_factory)
    client = AnalyticsClient(url, flush_interval=0.05, spool_dir=False)
    for i in range(500):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    client.track(f"user{LONE}", f"custom{LONE}", {f"k{LONE}": f"v{LONE}", "error_message": f"boom {LONE}",
                                                  "nested": [{"x": LONE}]},
                 session_id=f"sess{LONE}", mcp_name=f"srv{LONE}")
    for i in range(500, 1000):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert client.close(timeout=30)
    events = list(sink_from_url(url, read_only=True).iter_events())
    assert client.stats.failed_events == 0 and client.stats.written == len(events)
    custom = [e for e in events if e["event_name"].startswith("custom")]
    assert len(custom) == 1001
    bad = next(e for e in custom if e["user_id"] != "u")
    assert (bad["user_id"], bad["session_id"], bad["mcp_name"], bad["event_name"]) == (
        "user\ufffd", "sess\ufffd", "srv\ufffd", "custom\ufffd")
    assert bad["metadata"]["k\ufffd"] == "v\ufffd" and bad["metadata"]["nested"] == [{"x": "\ufffd"}]


def test_a_store_refusing_one_event_keeps_its_neighbours(tmp_path):
    """The second line of defence, with no processors at all: SQLite refuses the one event it cannot encode,
    the 1,000 around it are stored, and the loss is counted as ``rejected``."""
    from mcp_tracking.emit.emitter import Emitter
    from mcp_tracking.events import EventRecord
    from mcp_tracking.sinks.sqlite import SQLiteSink

    sink = SQLiteSink(tmp_path / "raw.db")
    emitter = Emitter(sink, processors=[], flush_interval=0.05, spool_dir=False, batch_size=1024)
    for i in range(1001):
        sid = f"s{LONE}" if i == 500 else "s"
        emitter.emit(EventRecord("custom_event", "u", sid, None, {"i": i}))
    assert not emitter.close(timeout=30)  # something accepted was not delivered: said so
    stats = emitter.stats
    assert (stats.written, stats.failed_events, stats.rejected) == (1000, 1, 1)
    stored = sorted(e["metadata"]["i"] for e in SQLiteSink(tmp_path / "raw.db", read_only=True).iter_events())
    assert stored == [i for i in range(1001) if i != 500]


async def test_surrogates_in_arguments_and_meta_are_tracked_and_validated(tmp_path):
    """Over a real server: a lone surrogate in an argument typed ``int`` is still validated (its schema error
    recorded, the framework's refusal stands); one in a ``_meta`` session id among 40 calls loses nothing."""
    from mcp_tracking import sink_from_url

    url = f"sqlite:///{tmp_path / 'calls.db'}"
    client = AnalyticsClient(url, flush_interval=0.05)
    server = MCPServer("surrogates")

    def count(x: int) -> int:
        """Count."""
        return x

    server.add_tool(count)
    instrument(server, client)
    async with Client(server) as c:
        refused = await c.call_tool("count", {"x": f"{LONE}abc"})
        for i in range(40):
            meta = {"io.mcp-tracking/session_id": f"agent{LONE}" if i == 20 else "agent"}
            await c.call_tool("count", {"x": i}, meta=meta)
    assert client.close(timeout=30)
    assert refused.is_error
    events = list(sink_from_url(url, read_only=True).iter_events())
    error = next(e for e in events if e["event_name"] == "schema_validation_error")
    assert error["metadata"]["tool_params"] == {"x": "\ufffdabc"}
    assert error["metadata"]["validation_errors"][0]["field"] == "x"
    completed = [e for e in events if e["event_name"] == "tool_call_completed"]
    assert len(completed) == 40 and {e["session_id"] for e in completed} == {"agent", "agent\ufffd"}


# --- 4. memory is bounded by bytes, not only by events ------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def test_megabyte_arguments_into_a_stalled_store_stay_within_the_byte_budget(tmp_path):
    """200 calls with 1 MB arguments while another connection holds the SQLite file locked (the worker can
    write nothing): the arguments are cut before they are queued, the queue stays within its byte budget
    (what does not fit is dropped and counted), and memory does not grow by the arguments' size."""
    import gc
    import sqlite3

    path = tmp_path / "stalled.db"
    budget = 400_000
    client = AnalyticsClient(f"sqlite:///{path}", flush_interval=0.02, spool_dir=False, retry_timeout=120,
                             max_queue_bytes=budget)
    client.track("u", "warm_up", {}, session_id="w")
    assert client.flush(10)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # the store stalls: every write waits, then retries
    server = MCPServer("big")

    def upload(blob: str) -> int:
        """Take a blob."""
        return len(blob)

    server.add_tool(upload)
    instrument(server, client)
    gc.collect()
    before = _rss_mb()
    async with Client(server) as c:
        for i in range(200):
            r = await c.call_tool("upload", {"blob": str(i) * 1_000_000})
            assert not r.is_error
    gc.collect()
    grown = _rss_mb() - before
    stats = client.stats
    assert stats.queued_bytes <= budget and stats.dropped > 0 and stats.dropped_bytes > 0
    assert grown < 100, f"RSS grew by {grown:.0f} MB while 200 MB of arguments went by"
    blocker.rollback()
    blocker.close()
    client.close(timeout=30)
    from mcp_tracking import sink_from_url

    stored = [e for e in sink_from_url(f"sqlite:///{path}", read_only=True).iter_events()
              if e["event_name"] == "tool_call_started"]
    assert stored and all(len(e["metadata"]["tool_params"]["blob"]) <= 4096 for e in stored)
    assert client.stats.written + client.stats.dropped >= len(stored)


def test_track_with_huge_metadata_keeps_the_event_and_cuts_the_values():
    """The design's ``track()`` with a 5 MB value: the event is queued with its other fields whole, the big
    value cut before it is queued."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    assert client.track("u", "custom_event", {"tool_name": "x", "dump": ["y" * 5_000_000, {"z": "w" * 10}]},
                        session_id="s")
    queued = client.stats.queued_bytes
    assert queued < 64_000
    client.close()
    event = next(e for e in sink.events if e["event_name"] == "custom_event")
    assert event["metadata"]["tool_name"] == "x" and len(event["metadata"]["dump"][0]) <= 4096
