"""OpenTelemetry: tool calls as SERVER spans with the MCP conventions, never duplicated, exported for real.

The OpenTelemetry SDK is real (TracerProvider, in-memory exporter, the OTLP/HTTP exporter to a receiver
started here). The process-wide provider that MCPServer's and fastmcp's own spans use is installed once,
with a sampler that records only while a test asks it to, so other tests see no spans at all.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import free_port
from mcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from mcp_tracking import AnalyticsClient, MemorySink, TrackingMiddleware, track_tool
from mcp_tracking.demo.server import build_server, completeness_checks
from mcp_tracking.sinks.fanout import FanoutError, FanoutSink
from mcp_tracking.sinks.otel import OTelSink

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"

SCRIPT = [
    ("get_benchmark_results_advanced", {"model_name": "gpt-4.1"}),  # hallucinated
    ("get_benchmark_results_by_filters", {"limit": "ten", "api_key": "sk-live-123"}),  # schema violation
    ("get_benchmark_results", {"model_name": "nope"}),  # tool raises
    ("get_benchmark_results", {"model_name": "nope"}),  # identical retry
    ("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": 3}),  # switch, success
]


class _Toggle(Sampler):
    on = False

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "toggle"


_SAMPLER = _Toggle()
_GLOBAL_SPANS = InMemorySpanExporter()


def _global_provider() -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(sampler=_SAMPLER)
    provider.add_span_processor(SimpleSpanProcessor(_GLOBAL_SPANS))
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture(name="framework_tracing")
def _framework_tracing() -> Iterator[InMemorySpanExporter]:
    """The process-wide provider recording: the frameworks' own SERVER spans exist."""
    _global_provider()
    _GLOBAL_SPANS.clear()
    _SAMPLER.on = True
    try:
        yield _GLOBAL_SPANS
    finally:
        _SAMPLER.on = False
        _GLOBAL_SPANS.clear()


def _local() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _tool_spans(spans) -> list:
    """The SERVER spans of tool calls (clients open CLIENT spans of the same name)."""
    return [s for s in spans if s.name.startswith("tools/call") and s.kind == trace.SpanKind.SERVER]


def _events(span) -> list[str]:
    return [e.name for e in span.events]


async def _run_script(server, meta=None) -> None:
    async with Client(server) as c:
        for name, args in SCRIPT:
            await c.call_tool(name, args, meta=meta)


async def test_span_built_by_the_sink_when_no_framework_span():
    """No tracing SDK behind the framework: our sink builds one SERVER span per call, with the conventions."""
    provider, exporter = _local()
    memory = MemorySink()
    client = AnalyticsClient(FanoutSink(memory, OTelSink(provider)), flush_interval=0.02)
    server = build_server("drea")
    server.middleware.append(TrackingMiddleware(client, server=server, completeness=completeness_checks()))
    await _run_script(server, meta={"traceparent": TRACEPARENT, "io.mcp-tracking/session_id": "conv-7"})
    client.close()
    spans = _tool_spans(exporter.get_finished_spans())
    assert [s.name for s in spans] == [f"tools/call {n}" for n, _ in SCRIPT]
    for i, span in enumerate(spans):
        a = span.attributes
        assert span.kind == trace.SpanKind.SERVER
        assert a["mcp.method.name"] == "tools/call" and a["gen_ai.operation.name"] == "execute_tool"
        assert a["gen_ai.tool.name"] == SCRIPT[i][0] and a["mcp.session.id"] == "conv-7"
        assert a["mcp.protocol.version"] == "2026-07-28" and a["jsonrpc.request.id"]
        assert a.get("mcp_tracking.call_sequence") == (i or None)  # the unknown name is not a numbered call
        assert "gen_ai.tool.call.arguments" not in a  # opt-in only
        assert format(span.context.trace_id, "032x") == TRACE_ID  # parented on the client's traceparent
        assert format(span.parent.span_id, "016x") == PARENT_SPAN
        assert span.end_time >= span.start_time
    assert "hallucinated_tool_call" in _events(spans[0])
    hall = spans[0].events[0].attributes
    assert hall["mcp_tracking.similar_tool_suggested"].startswith("get_benchmark_results")
    assert _events(spans[1]) == ["schema_validation_error"]  # refused by the SDK: the span ends there
    assert list(spans[1].events[0].attributes["mcp_tracking.fields"]) == ["limit", "api_key"]  # error, warning
    assert _events(spans[3]) == ["tool_call_retry"]
    assert spans[3].events[0].attributes["mcp_tracking.retry_attempt"] == 1
    assert _events(spans[4]) == ["wrong_tool_error", "answer_complete"]
    assert [s.attributes.get("error.type") for s in spans] == ["unknown_tool", "validation_error", "tool_error",
                                                                 "tool_error", None]
    assert [s.status.status_code for s in spans][:4] == [trace.StatusCode.ERROR] * 4
    assert spans[0].attributes["mcp_tracking.error_type"] == "unknown_tool"
    sessions = [s for s in exporter.get_finished_spans() if s.name == "mcp_tracking.session"]
    assert len(sessions) == 1 and sessions[0].attributes["mcp.session.id"] == "conv-7"
    assert sessions[0].attributes["mcp_tracking.outcome"] == "session_completed"
    assert _events(sessions[0]) == ["session_completed"]
    # the store got everything too, the secret redacted there as always
    stored = memory.events
    assert sum(e["event_name"] == "tool_call_started" for e in stored) == 4  # the unknown name is not a call
    assert "sk-live-123" not in repr(stored)


async def test_arguments_and_results_only_when_opted_in_and_redacted():
    provider, exporter = _local()
    client = AnalyticsClient(OTelSink(provider, record_arguments=True, record_results=True), flush_interval=0.02)
    server = build_server("drea")
    server.middleware.append(TrackingMiddleware(client, server=server))
    async with Client(server) as c:
        await c.call_tool("get_benchmark_results_by_filters", {"benchmark": "mmlu", "limit": 2, "token": "t0p"})
    client.close()
    (span,) = _tool_spans(exporter.get_finished_spans())
    args = span.attributes["gen_ai.tool.call.arguments"]
    assert '"benchmark":"mmlu"' in args and "t0p" not in args and "REDACTED" in args
    assert "mmlu" in span.attributes["gen_ai.tool.call.result"]


async def test_results_on_spans_are_redacted():
    from mcp.server.mcpserver import MCPServer

    provider, exporter = _local()
    client = AnalyticsClient(OTelSink(provider, record_results=True), flush_interval=0.02)
    server = MCPServer("s")

    @server.tool()
    def login(user: str) -> dict:
        return {"user": user, "access_token": "tok-123"}

    server.middleware.append(TrackingMiddleware(client, server=server))
    async with Client(server) as c:
        await c.call_tool("login", {"user": "ann"})
    client.close()
    (span,) = _tool_spans(exporter.get_finished_spans())
    result = span.attributes["gen_ai.tool.call.result"]
    assert "ann" in result and "tok-123" not in result and "REDACTED" in result


async def test_framework_span_is_enriched_not_duplicated(framework_tracing):
    """With the SDK's OpenTelemetryMiddleware recording, each call has exactly one SERVER span: the SDK's,
    carrying our session id and lifecycle events. Our sink adds no second span."""
    client = AnalyticsClient(OTelSink(), flush_interval=0.02)
    server = build_server("drea")
    server.middleware.append(TrackingMiddleware(client, server=server, completeness=completeness_checks()))
    await _run_script(server, meta={"io.mcp-tracking/session_id": "conv-8"})
    client.close()
    spans = _tool_spans(framework_tracing.get_finished_spans())
    assert [s.name for s in spans] == [f"tools/call {n}" for n, _ in SCRIPT]
    assert {s.instrumentation_scope.name for s in spans} == {"mcp-python-sdk"}  # the SDK's spans, not ours
    assert all(s.attributes["mcp.session.id"] == "conv-8" for s in spans)
    # the unknown name is not a numbered call; the SDK's span of that request still carries our event
    assert [s.attributes.get("mcp_tracking.call_sequence") for s in spans] == [None, 1, 2, 3, 4]
    assert _events(spans[0]) == ["hallucinated_tool_call"]
    assert _events(spans[1]) == ["schema_validation_error"]
    assert _events(spans[3]) == ["tool_call_retry"]
    assert _events(spans[4]) == ["wrong_tool_error", "answer_complete"]
    assert spans[0].attributes["error.type"] == "tool_error"  # the SDK's own judgement stands
    assert spans[0].attributes["mcp_tracking.error_type"] == "unknown_tool"
    ours = [s for s in framework_tracing.get_finished_spans() if s.instrumentation_scope.name == "mcp_tracking"]
    assert [s.name for s in ours] == ["mcp_tracking.session"]


async def test_fastmcp_native_span_is_enriched_not_duplicated(framework_tracing):
    from fastmcp import Client as FClient
    from fastmcp import FastMCP

    from mcp_tracking import FastMCPTrackingMiddleware

    server = FastMCP("fm")

    @server.tool
    def add(a: int, b: int) -> int:
        return a + b

    client = AnalyticsClient(OTelSink(), flush_interval=0.02)
    server.add_middleware(FastMCPTrackingMiddleware(client, server=server))
    async with FClient(server) as c:
        await c.call_tool("add", {"a": 1, "b": "x"}, raise_on_error=False)
        await c.call_tool("add", {"a": 1, "b": 2})
        await c.call_tool("ad", {"a": 1, "b": 2}, raise_on_error=False)
    client.close()
    spans = _tool_spans(framework_tracing.get_finished_spans())
    assert [s.name for s in spans] == ["tools/call add", "tools/call add", "tools/call ad"]
    assert {s.instrumentation_scope.name for s in spans} == {"fastmcp"}
    assert [s.attributes["gen_ai.tool.name"] for s in spans] == ["add", "add", "ad"]
    assert _events(spans[0]) == ["schema_validation_error", "exception"]  # fastmcp records its own refusal
    assert _events(spans[2]) == ["hallucinated_tool_call", "exception"]  # fastmcp records its NotFoundError
    sids = {s.attributes["mcp.session.id"] for s in spans[:2]}
    assert len(sids) == 1  # our session, not fastmcp's per-request id (the calls fastmcp dispatched)


async def test_decorated_tool_gets_its_own_span():
    provider, exporter = _local()
    client = AnalyticsClient(OTelSink(provider), flush_interval=0.02)

    @track_tool(client)
    def lookup(key: str) -> str:
        if key == "bad":
            raise KeyError(key)
        return key.upper()

    with client.session("deco-1"):
        assert lookup("a") == "A"
        with pytest.raises(KeyError):
            lookup("bad")
    client.close()
    spans = _tool_spans(exporter.get_finished_spans())
    assert [s.name for s in spans] == ["tools/call lookup", "tools/call lookup"]
    assert spans[1].attributes["error.type"] == "KeyError"
    assert spans[0].attributes["mcp.session.id"] == "deco-1"


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.path == "/v1/traces":
            type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_otlp_http_export_end_to_end():
    """Through the real OTLP/HTTP exporter to a receiver on 127.0.0.1, decoded with the OTLP protobufs."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    port = free_port()
    _Receiver.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=5)))
        memory = MemorySink()
        client = AnalyticsClient(FanoutSink(memory, OTelSink(provider)), flush_interval=0.02)
        server = build_server("drea")
        server.middleware.append(TrackingMiddleware(client, server=server))
        await _run_script(server, meta={"traceparent": TRACEPARENT})
        client.close()
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        httpd.shutdown()
        httpd.server_close()
    spans = []
    for body in _Receiver.bodies:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                assert ss.scope.name == "mcp_tracking"
                spans.extend(ss.spans)
    calls = [s for s in spans if s.name.startswith("tools/call")]
    assert sorted(s.name for s in calls) == sorted(f"tools/call {n}" for n, _ in SCRIPT)
    assert all(s.trace_id.hex() == TRACE_ID and s.parent_span_id.hex() == PARENT_SPAN for s in calls)
    retry = next(s for s in calls if any(e.name == "tool_call_retry" for e in s.events))
    attrs = {kv.key: kv.value for kv in retry.attributes}
    assert attrs["gen_ai.tool.name"].string_value == "get_benchmark_results"
    assert attrs["mcp_tracking.call_sequence"].int_value == 3  # the unknown name took no number
    stored = [e for e in memory.events if e["event_name"] == "tool_call_started"]
    assert {e["session_id"] for e in stored} == {s_attr.value.string_value for s in calls
                                                  for s_attr in s.attributes if s_attr.key == "mcp.session.id"}


class _FlakySink(MemorySink):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.writes = 0

    def write(self, batch) -> None:
        self.writes += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("down")
        super().write(batch)


def test_fanout_retry_reaches_only_the_sinks_that_missed_the_batch():
    steady, flaky = MemorySink(), _FlakySink(failures=2)
    client = AnalyticsClient(FanoutSink(steady, flaky), flush_interval=0.02, retry_timeout=10)
    for i in range(50):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert client.flush(20)
    client.close()
    for sink in (steady, flaky):  # once each, in order, in both
        assert [e["metadata"]["i"] for e in sink.events if e["event_name"] == "custom_event"] == list(range(50))
    assert flaky.writes >= 3 and client.stats.failed_events == 0


def test_fanout_reads_back_from_the_primary(tmp_path):
    from mcp_tracking import SQLiteSink, compute_metrics

    provider, _ = _local()
    fan = FanoutSink(SQLiteSink(tmp_path / "a.db"), OTelSink(provider))
    client = AnalyticsClient(fan, flush_interval=0.02)
    client.track_tool_usage("u", "t", {"a": 1}, success=True, execution_time_ms=3.0, session_id="s")
    # a completion reported without its start gets its start (every completion has one)
    assert [e["event_name"] for e in client.get_session_events("s")] == ["tool_call_started", "tool_call_completed"]
    assert compute_metrics(fan).totals.completed_calls == 1
    client.close()
    with pytest.raises(ValueError):
        FanoutSink()
    with pytest.raises(TypeError):
        FanoutSink(object())  # type: ignore[arg-type]
    assert issubclass(FanoutError, RuntimeError)


def test_comma_separated_urls_fan_out(tmp_path):
    from mcp_tracking import SQLiteSink, sink_from_url

    fan = sink_from_url(f"sqlite:///{tmp_path / 'x.db'}, otel://")
    assert isinstance(fan, FanoutSink) and isinstance(fan.primary, SQLiteSink) and isinstance(fan.sinks[1], OTelSink)
    fan.close()
