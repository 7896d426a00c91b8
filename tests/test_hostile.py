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
    """400 calls with 1 MB arguments while another connection holds the SQLite file locked (nothing can be
    written): the arguments are cut before they are queued, the queue stays within its byte budget (what
    does not fit is dropped and counted: the writer process's pipe, 1 MB, fills first), and memory does not
    grow by the arguments' size."""
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
        for i in range(400):
            r = await c.call_tool("upload", {"blob": str(i % 10) * 1_000_000})
            assert not r.is_error
    gc.collect()
    grown = _rss_mb() - before
    stats = client.stats
    assert stats.queued_bytes <= budget and stats.dropped > 0 and stats.dropped_bytes > 0
    assert grown < 100, f"RSS grew by {grown:.0f} MB while 400 MB of arguments went by"
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


# --- 5. redaction: normalised keys at any depth, no echo, tokens in free text, keys-only ---------------

SECRETS = {"X-Api-Key": "xk-4f9a7c21", "Api-Key": "ak-77c0d9e1", "private-key": "pk-9d8e7f6a",
           "access-key": "acc-1b2c3d4e", "session-key": "sk1-5e6f7a8b", "clientSecret": "cs-0a1b2c3d"}


def _deep(levels: int, leaf: dict) -> dict:
    out = leaf
    for i in range(levels):
        out = {f"level{i}": out}
    return out


def _raw_rows(url: str) -> str:
    """Everything a store holds, as text (the SQLite file's rows, or the JSON-lines file)."""
    import sqlite3

    path = url.split(":///", 1)[1]
    if url.startswith("jsonl"):
        with open(path, encoding="utf-8") as f:
            return f.read()
    rows = sqlite3.connect(path).execute("SELECT * FROM raw_analytics").fetchall()
    return "\n".join(repr(r) for r in rows)


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
async def test_secrets_never_reach_the_store(kind, tmp_path):
    """Hyphenated and mixed-case secret keys, a password 80 levels deep, a secret echoed by the validation
    message, by the tool's own exception text and as a token in it: none of the values is stored."""
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"jsonl:///{tmp_path / 's.jsonl'}"
    client = AnalyticsClient(url, flush_interval=0.02)
    server = MCPServer("secrets")

    def connect(headers: dict, deep: dict, api_key: str = "") -> str:
        """Connect with these headers."""
        raise ValueError(f"login refused for key {headers.get('X-Api-Key')} with Bearer abcdefghij0123456789 "
                         f"(token=tk-31415926) sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv")

    server.add_tool(connect)
    instrument(server, client)
    async with Client(server) as c:
        failed = await c.call_tool("connect", {"headers": SECRETS, "deep": _deep(80, {"password": "pw-80deep!"})})
        refused = await c.call_tool("connect", {"headers": {}, "deep": {}, "api_key": 12345678})
    with pytest.raises(ValueError):  # the decorator stores the exception's own text: scrubbed
        track_tool(client)(connect)(headers=SECRETS, deep={})
    assert client.close(timeout=30)
    assert failed.is_error and refused.is_error
    text = _raw_rows(url)
    for value in [*SECRETS.values(), "pw-80deep!", "12345678", "abcdefghij0123456789", "tk-31415926",
                  "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"]:
        assert value not in text, f"{value!r} was stored"
    assert "REDACTED" in text and "login refused for key" in text  # the message is kept, its secrets are not


async def test_a_secret_is_not_echoed_back_in_our_corrective_lines():
    """The corrective text we add to the framework's refusal never quotes a value under a secret key."""
    client = AnalyticsClient(MemorySink(), flush_interval=0.02)
    server = MCPServer("echo")

    def login(user: str, password: str) -> str:
        """Log in."""
        return user

    server.add_tool(login)
    instrument(server, client)
    async with Client(server) as c:
        r = await c.call_tool("login", {"user": "ann", "password": 31337421})
    client.close()
    ours = r.content[0].text.split("What the tool's input schema says", 1)[1]
    assert "password: expected string, got integer" in ours and "31337421" not in ours


async def test_otel_span_status_carries_no_secret():
    """The span our OpenTelemetry sink builds for a failed call: its status and events quote no secret."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mcp_tracking.sinks.otel import OTelSink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = AnalyticsClient(OTelSink(provider), flush_interval=0.02)

    @track_tool(client)
    def fetch(url: str, token: str) -> str:
        """Fetch."""
        raise PermissionError(f"token {token} expired for {url}")

    with pytest.raises(PermissionError):
        fetch(url="https://x.test", token="tok-2718281828")
    client.close()
    spans = exporter.get_finished_spans()
    dump = repr([(s.status.description, s.attributes, [(e.name, e.attributes) for e in s.events]) for s in spans])
    assert spans and "tok-2718281828" not in dump


async def test_keys_only_stores_no_argument_value_anywhere(tmp_path):
    """``keys_only=True``: not in the arguments, not in a validation message, not in an error message."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    client = AnalyticsClient(url, flush_interval=0.02, keys_only=True)
    server = MCPServer("keys")

    def lookup(city: str, limit: int = 3) -> str:
        """Look a city up."""
        raise LookupError(f"no data for {city}")

    server.add_tool(lookup)
    instrument(server, client)
    async with Client(server) as c:
        await c.call_tool("lookup", {"city": "Quahog-Rhode", "limit": "sevenish"})
        await c.call_tool("lookup", {"city": "Springfield-Oregon"})
    assert client.close(timeout=30)
    text = _raw_rows(url)
    for value in ("Quahog-Rhode", "sevenish", "Springfield-Oregon"):
        assert value not in text, f"{value!r} was stored"
    assert "city" in text and "limit" in text  # the keys are kept


# --- 7-10. the command line and the SQLite file ----------------------------------------------------------

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil.test\x1b\\click\x1b]8;;\x1b\\\x9b31m\r"


#: root ignores file modes: without these two capabilities the kernel checks them for root as for anyone
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
          "--inh-caps=-dac_override,-dac_read_search", "--"]


def _cli(*args: str, cwd=None, modes_apply: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mcp_tracking.cli", *args]
    if modes_apply and os.getuid() == 0:
        cmd = [*NO_DAC, *cmd]
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def _hostile_store(path) -> str:
    """A store whose names and argument fields carry terminal escapes and spreadsheet formulas."""
    client = AnalyticsClient(f"sqlite:///{path}", flush_interval=0.02)
    with client.session("s1", user_id=f"=HYPERLINK(\"http://evil.test\"){ESCAPES}"):
        pass
    client.track_tool_call_started(user_id="=cmd|' /C calc'!A0", tool_name=f"evil{ESCAPES}", tool_params={},
                                   session_id="s1", mcp_tools_manifest=["search"])
    client.track_tool_call_started(user_id="=cmd|' /C calc'!A0", tool_name="search", tool_params={"q": 1},
                                   session_id="s1", mcp_tools_manifest=["search"])
    client.track_schema_validation_error(user_id="=cmd|' /C calc'!A0", tool_name="search", tool_params={"q": 1},
                                         validation_errors=[{"field": f"q{ESCAPES}", "error": f"bad{ESCAPES}",
                                                             "schema_path": "properties.q"}], session_id="s1")
    client.track("@SUM(1+1)*cmd", "session_start", {}, session_id="-2+3")
    assert client.close(timeout=30)
    return f"sqlite:///{path}"


def test_report_output_never_carries_terminal_escapes_or_formulas(tmp_path):
    url = _hostile_store(tmp_path / "h.db")
    table = _cli("report", "--db", url, "--breakdown", "user")
    assert table.returncode == 0, table.stderr
    for raw in ("\x1b", "\x07", "\x9b", "\r"):
        assert raw not in table.stdout
    assert "\\x1b]0;pwned" in table.stdout  # shown, escaped
    import csv
    import io

    rows = list(csv.reader(io.StringIO(_cli("report", "--db", url, "--format", "csv", "--breakdown", "user").stdout)))
    assert rows and all(not cell or cell[0] not in "=+-@\t\r" or cell.lstrip("-").replace(".", "").isdigit()
                        for r in rows for cell in r)
    assert any(cell.startswith("'=cmd|") for r in rows for cell in r)  # neutralised, not dropped
    status = _cli("status", "--db", url)
    assert status.returncode == 0 and "\x1b" not in status.stdout


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_deleted_database_is_recreated_and_nothing_after_is_lost(tmp_path, writer, capfd):
    """The SQLite file, its -wal and -shm removed while the client runs: the next batch notices, recreates
    the file and stores everything written after the deletion (whichever writes: the worker thread counts it
    on the sink; the writer process says so on the server's stderr)."""
    from mcp_tracking.sinks.sqlite import SQLiteSink

    path = tmp_path / "gone.db"
    sink = SQLiteSink(path)
    client = AnalyticsClient(sink, flush_interval=0.02, writer=writer)
    for i in range(1000):
        client.track("u", "before", {"i": i})
    assert client.flush(10)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"gone.db{suffix}").unlink(missing_ok=True)
    for i in range(1000):
        client.track("u", "after", {"i": i})
    assert client.close(timeout=30)
    assert path.exists()
    if writer == "thread":
        assert sink.reopened == 1
    else:
        assert capfd.readouterr().err.count("was deleted or replaced while open") == 1
    names = [e["event_name"] for e in SQLiteSink(path, read_only=True).iter_events()]
    assert names.count("after") == 1000


def _read_only_dir(path) -> bool:
    """Make ``path`` read-only for the CLI run with ``modes_apply`` (as root: without the capabilities that
    let root ignore modes)."""
    os.chmod(path, 0o555)
    if os.getuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot take write access away")
    return True


def test_report_on_a_wal_database_leaves_nothing_behind(tmp_path):
    """A read-only report opens the file truly read-only: no -wal / -shm left next to it, also in a
    directory it cannot write to."""
    store = tmp_path / "store"
    store.mkdir()
    url = _hostile_store(store / "w.db")
    assert sorted(os.listdir(store)) == ["w.db"]
    assert _cli("report", "--db", url).returncode == 0
    assert sorted(os.listdir(store)) == ["w.db"]
    _read_only_dir(store)
    try:
        proc = _cli("report", "--db", url, "--format", "json", cwd="/", modes_apply=True)
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(store)) == ["w.db"]
    finally:
        os.chmod(store, 0o755)


def test_cli_errors_are_one_line_and_never_show_a_password(tmp_path):
    """Bad output paths, a store that cannot be read back, unreachable PostgreSQL URLs and DSNs with
    passwords (one with unescaped ``@``): one line on stderr, non-zero exit, no traceback, no password."""
    url = _hostile_store(tmp_path / "ok.db")
    locked = tmp_path / "locked"
    locked.mkdir()
    _read_only_dir(locked)
    cases = [
        (("dashboard", "--db", url, "--out", str(locked / "d.html")), "cannot write the dashboard"),
        (("report", "--db", "otel://"), "cannot be read back"),
        (("report", "--db", "postgresql://mcp:p@ss@w0rd-99@127.0.0.1:1/analytics"), ""),
        (("report", "--db", "postgresql://mcp@127.0.0.1:1/analytics?password=hunter2-77"), ""),
        (("report", "--db", "host=127.0.0.1 port=1 user=mcp password=hunter3-55 dbname=x"), ""),
    ]
    try:
        for args, words in cases:
            proc = _cli(*args, cwd="/", modes_apply=True)
            err = proc.stderr.strip()
            assert proc.returncode != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
            assert err.startswith("mcp-tracking: error:") and words in err, (args, err)
            for secret in ("p@ss", "ss@w0rd", "w0rd-99", "hunter2-77", "hunter3-55"):
                assert secret not in err, (args, err)
    finally:
        os.chmod(locked, 0o755)
    made = tmp_path / "new" / "deeper" / "d.html"  # a missing parent is created
    proc = _cli("dashboard", "--db", url, "--out", str(made))
    assert proc.returncode == 0 and made.exists(), proc.stderr


# --- 6. the spool is private and replays only what we wrote --------------------------------------------

DOWN = "postgresql://mcp@127.0.0.1:1/analytics"  # nothing listens on port 1: the store is down


def _spooling_client(spool_dir=None, **kw) -> AnalyticsClient:
    pytest.importorskip("psycopg")
    return AnalyticsClient(DOWN, flush_interval=0.02, spool_after=0.05, retry_timeout=0.2, spool_dir=spool_dir,
                           handle_sigterm=False, **kw)


def test_the_default_spool_is_private(tmp_path, monkeypatch):
    """By default under the user's state directory: directories 0700, segments and key 0600."""
    monkeypatch.delenv("MCP_TRACKING_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    client = _spooling_client()
    spool = client.emitter.spool
    assert spool is not None and str(spool.dir).startswith(str(tmp_path / "state" / "mcp-tracking" / "spool"))
    client.track("u", "custom_event", {"n": 1})
    client.flush(5)
    client.close(timeout=5)
    assert client.stats.spooled >= 1
    for d in (spool.dir, spool.dir.parent):
        assert oct(os.stat(d).st_mode & 0o777) == "0o700"
    files = list(spool.dir.iterdir())
    assert files and all(oct(os.stat(f).st_mode & 0o777) == "0o600" for f in files)


def test_a_spool_directory_of_another_user_is_refused(tmp_path):
    """A spool directory someone else owns is not used (the client runs without a spool, and says so)."""
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o777)
    if os.getuid() == 0:
        os.chown(foreign, 65534, 65534)  # nobody
    else:
        pytest.skip("needs root to hand a directory to another user")
    client = _spooling_client(spool_dir=foreign)
    assert client.emitter.spool is None
    client.close(timeout=1)


def test_planted_segments_are_never_replayed(tmp_path):
    """A segment owned by another user, and lines in our own segment without a valid mark (written by
    anyone but us), are never written to the store: only our own spooled event is."""
    from mcp_tracking.emit.spool import Spool
    from mcp_tracking.events import EventRecord

    spool_dir = tmp_path / "spool"
    ours = Spool(spool_dir)
    ours.append([EventRecord("session_completed", "victim", "s1", None, {"success": True, "n": "ours"})])
    forged = (b'{"id":"01a23411-0000-7000-8000-000000000001","n":"session_completed","u":"victim","s":"s2",'
              b'"m":null,"t":1764547200000000,"v":1,"md":{"success":true,"n":"forged"}}')
    unmarked = spool_dir / "segment-4194000-000000000001.jsonl"  # a process long gone
    unmarked.write_bytes(forged + b"\n")  # no mark
    os.chmod(unmarked, 0o600)
    planted = spool_dir / "segment-4194001-000000000001.jsonl"
    planted.write_bytes(ours._mark(forged) + b" " + forged + b"\n")  # even a valid mark: not our file
    if os.getuid() == 0:
        os.chown(planted, 65534, 65534)
    else:
        os.chmod(planted, 0o644)
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02, spool_dir=spool_dir, handle_sigterm=False)
    client.track("u", "trigger", {})
    assert client.close(timeout=10)
    stored = [e["metadata"].get("n") for e in sink.events if e["event_name"] == "session_completed"]
    assert stored == ["ours"]
    assert client.stats.forged >= 2 and (spool_dir / f"rejected-{planted.name}").exists()


def test_a_full_disk_leaves_no_half_segment(tmp_path):
    """A spool write the kernel stops part way (a file-size limit: the same partial write as a full disk) is
    cut back, so nothing half-written is left to replay; the batch is reported as not spooled."""
    script = f"""
import os, resource, signal, sys
from pathlib import Path
from mcp_tracking.emit.spool import Spool
from mcp_tracking.events import EventRecord
spool = Spool(Path({str(tmp_path / "spool")!r}))
spool.append([EventRecord("e", "u", "s", None, {{"n": 0}})])
seg = next(spool.dir.glob("segment-*.jsonl"))
size = seg.stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, resource.RLIM_INFINITY))
try:
    spool.append([EventRecord("e", "u", "s", None, {{"n": i, "pad": "x" * 100}}) for i in range(100)])
    print("no error")
except OSError as exc:
    print("refused", exc.errno)
print(size, seg.stat().st_size, len(list(spool._read(seg))))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status, sizes = proc.stdout.strip().splitlines()
    before, after, events = map(int, sizes.split())
    assert status.startswith("refused") and after == before and events == 1


def test_without_a_state_directory_the_spool_falls_back_to_a_private_temp_dir(tmp_path, monkeypatch):
    """A service user whose state directory cannot be created: the spool goes to <tmp>/mcp-tracking-<uid>,
    private as well."""
    import tempfile

    not_a_dir = tmp_path / "state-is-a-file"
    not_a_dir.write_text("x")
    monkeypatch.delenv("MCP_TRACKING_SPOOL_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(not_a_dir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    client = _spooling_client()
    spool = client.emitter.spool
    client.close(timeout=1)
    assert spool is not None and str(spool.dir).startswith(str(tmp_path / "tmp" / f"mcp-tracking-{os.getuid()}"))
    assert oct(os.stat(spool.dir).st_mode & 0o777) == "0o700"
