"""OpenTelemetry: each tool call as a SERVER span ``tools/call {tool}``, our lifecycle events on it.

Needs only the OpenTelemetry **API** (extra ``otel``); you bring the SDK, its processors and exporters,
exactly as with any instrumentation library::

    from opentelemetry.sdk.trace import TracerProvider
    provider = TracerProvider(); provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    analytics = AnalyticsClient(FanoutSink(SQLiteSink("analytics.db"), OTelSink(provider)))

Two ways a call becomes a span, chosen per call so there is never a duplicate:

* **The framework already opened one.** ``MCPServer`` (the SDK's ``OpenTelemetryMiddleware``) and fastmcp
  (its native seam span) wrap each ``tools/call`` in a SERVER span when an OpenTelemetry SDK is installed.
  Then the interceptor *enriches that span* while the call runs (``mcp.session.id`` with our resolved
  session, ``mcp_tracking.*`` attributes, and our lifecycle events as span events), the way fastmcp
  enriches its own seam span, and this sink creates nothing for the call.
* **No live framework span** (the SDK's tracing not installed, the decorator, mcp 1.x, a different tracer
  provider): this sink builds the span on the emitter's worker thread from the call's events, with the
  call's real start and end times, parented on the ``traceparent`` the client sent in ``_meta``. Nothing
  is added to the request path but a few dict lookups.

Session outcomes become an INTERNAL span ``mcp_tracking.session`` covering the session, with the outcome
event on it. Tool arguments and results are attached only with ``record_arguments`` / ``record_results``
(the MCP conventions mark them opt-in), after the client's redaction and caps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_tracking._json import dumps
from mcp_tracking.events import EventRecord

try:
    from opentelemetry import trace as _trace
    from opentelemetry.propagate import extract as _extract
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("OTelSink needs the OpenTelemetry API: pip install 'mcp-tracking[otel]'") from exc

TRACER_NAME = "mcp_tracking"
MAX_PENDING_CALLS = 10_000
MAX_PENDING_SESSIONS = 10_000
MAX_RESULT_ATTRIBUTE = 4096  # characters of a result put on a span (record_results only)

#: ``network.transport`` per transport (OpenTelemetry's values); in-process calls have none
NETWORK_TRANSPORT = {"stdio": "pipe", "streamable-http": "tcp", "sse": "tcp", "http": "tcp"}

#: per lifecycle event, the metadata that becomes span-event attributes (never the arguments)
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "tool_call_retry": ("retry_attempt", "retry_reason", "original_call_sequence", "params_hash", "call_sequence"),
    "hallucinated_tool_call": ("requested_tool_name", "similar_tool_suggested", "similarity_score", "suggestions",
                               "call_sequence"),
    "schema_validation_error": ("enforced", "schema_version", "call_sequence"),
    "wrong_tool_error": ("first_tool_name", "second_tool_name", "first_error_type", "detection_pattern",
                         "call_sequence"),
    "answer_complete": ("completeness_score", "detection_method", "checks_passed", "checks_failed", "result_count"),
    "answer_incomplete": ("completeness_score", "detection_method", "checks_passed", "checks_failed",
                          "result_count"),
    "session_completed": ("completion_reason", "success", "steps_count", "failed_calls_count", "retry_count",
                          "schema_errors_count", "final_result_type"),
    "task_completed": ("success", "completion_reason", "source"),
}
EVENT_FIELDS["session_failed"] = EVENT_FIELDS["session_abandoned"] = EVENT_FIELDS["session_completed"]
CALL_EVENTS = frozenset({"tool_call_retry", "hallucinated_tool_call", "schema_validation_error", "wrong_tool_error",
                         "answer_complete", "answer_incomplete"})
OUTCOME_EVENTS = frozenset({"session_completed", "session_failed", "session_abandoned", "task_completed"})


def _attr_value(value: Any) -> Any:
    """An OpenTelemetry attribute value: scalars and lists of one scalar type as they are, the rest as JSON."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, (list, tuple)) and value and all(type(v) is int for v in value):
        return list(value)
    return dumps(value).decode()


def event_attributes(name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The span-event attributes of one lifecycle event (``mcp_tracking.<field>``; no argument values)."""
    attrs: dict[str, Any] = {}
    for key in EVENT_FIELDS.get(name, ()):
        value = _attr_value(metadata.get(key))
        if value is not None:
            attrs[f"mcp_tracking.{key}"] = value
    if name == "schema_validation_error":
        errors = metadata.get("validation_errors") or []
        if isinstance(errors, list):
            attrs["mcp_tracking.fields"] = [str(e.get("field", "")) for e in errors if isinstance(e, dict)]
            attrs["mcp_tracking.schema_paths"] = [str(e.get("schema_path", "")) for e in errors
                                                  if isinstance(e, dict)]
            attrs["mcp_tracking.error_kinds"] = [str(e.get("kind", "")) for e in errors if isinstance(e, dict)]
    return attrs


def call_attributes(tool: str, session_id: str | None, context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The MCP semantic-convention attributes of a ``tools/call`` SERVER span."""
    attrs: dict[str, Any] = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
                             "gen_ai.tool.name": tool}
    if session_id is not None:
        attrs["mcp.session.id"] = session_id
    if context:
        if context.get("protocol_version"):
            attrs["mcp.protocol.version"] = str(context["protocol_version"])
        if context.get("request_id") is not None:
            attrs["jsonrpc.request.id"] = str(context["request_id"])
        transport = NETWORK_TRANSPORT.get(str(context.get("transport")))
        if transport is not None:
            attrs["network.transport"] = transport
    return attrs


@dataclass
class _Call:
    tool: str
    start_ns: int
    attributes: dict[str, Any]
    parent: Any
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    end_ns: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    refused_ns: int | None = None  # its schema_validation_error: the end, unless the call runs (observe mode)


class OTelSink:
    """Tool calls as OpenTelemetry SERVER spans, sessions as INTERNAL spans (see the module docs).

    Args:
        tracer_provider: where spans go; the global provider when omitted.
        record_arguments: add ``gen_ai.tool.call.arguments`` (redacted, capped JSON). Off by default.
        record_results: add ``gen_ai.tool.call.result`` (capped text). Off by default.
        session_spans: one ``mcp_tracking.session`` span per ended session (default on).
    """

    def __init__(self, tracer_provider: Any = None, *, record_arguments: bool = False, record_results: bool = False,
                 session_spans: bool = True) -> None:
        provider = tracer_provider if tracer_provider is not None else _trace.get_tracer_provider()
        from mcp_tracking._version import __version__

        self.tracer = provider.get_tracer(TRACER_NAME, __version__)
        self.record_arguments = record_arguments
        self.record_results = record_results
        self.session_spans = session_spans
        self._calls: OrderedDict[tuple[str | None, int], _Call] = OrderedDict()
        self._early: OrderedDict[tuple[str | None, int], list[tuple[str, dict[str, Any], int]]] = OrderedDict()
        self._enriched: OrderedDict[tuple[str | None, int], None] = OrderedDict()
        self._outcomes: OrderedDict[str, tuple[str, dict[str, Any], int]] = OrderedDict()

    def __repr__(self) -> str:
        return f"OTelSink(tracer={TRACER_NAME!r})"

    # -- on the request path: the recorder's tracing hooks (core/tracing.py's CallTracing) -----------

    def live_spans(self) -> OTelSink:
        """This sink takes per-call trace hooks (see ``sinks.base.LiveSpans``)."""
        return self

    def trace(self, framework_span: bool, facts: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """The framework's recording ``tools/call`` span to enrich; else the facts this sink builds the call's
        span from when its events arrive (request id, protocol, transport, the client's ``traceparent``)."""
        if framework_span:
            span = _trace.get_current_span()
            if span.is_recording():
                return span, {"enriched": True}
        context: dict[str, Any] = {k: facts.get(k) for k in
                                   ("request_id", "protocol_version", "transport", "session_source")}
        meta = facts.get("meta")
        if meta:
            for key in ("traceparent", "tracestate"):
                value = meta.get(key)
                if isinstance(value, str):
                    context[key] = value
        return None, context

    def began(self, span: Any, tool: str, session_id: str, sequence: int, session_source: str | None,
              params: Any, sanitize: Callable[[Any], str], early: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Our facts on the framework's span. The name and ``gen_ai`` attributes are the ones the framework
        gives a call it reaches itself; set here too because a call refused on its arguments may never reach
        the framework's code that names it."""
        span.update_name(f"tools/call {tool}")
        span.set_attribute("gen_ai.tool.name", tool)
        span.set_attribute("gen_ai.operation.name", "execute_tool")
        span.set_attribute("mcp.session.id", session_id)
        span.set_attribute("mcp_tracking.call_sequence", sequence)
        if session_source:
            span.set_attribute("mcp_tracking.session_source", session_source)
        if self.record_arguments:
            span.set_attribute("gen_ai.tool.call.arguments", sanitize(params))
        for name, md in early:
            self.event(span, name, md)

    @staticmethod
    def event(span: Any, name: str, metadata: Mapping[str, Any]) -> None:
        """A failure is the span's error type (the framework records the exception itself); every other
        event is a span event."""
        if name == "tool_call_failed":
            span.set_attribute("mcp_tracking.error_type", str(metadata.get("error_type")))
        else:
            span.add_event(name, event_attributes(name, metadata))

    @staticmethod
    def session(span: Any, session_id: str) -> None:
        span.set_attribute("mcp.session.id", session_id)

    def result(self, span: Any, result: Any, sanitize: Callable[[Any], str]) -> dict[str, Any] | None:
        """``gen_ai.tool.call.result`` (redacted and capped like the arguments), when the user opted in."""
        if not self.record_results:
            return None
        text = sanitize(result)[:MAX_RESULT_ATTRIBUTE]
        if span is not None:
            span.set_attribute("gen_ai.tool.call.result", text)
            return None
        return {"result": text}

    def unknown(self, span: Any, session_id: str, requested: str, suggested: str | None) -> None:
        span.set_attribute("mcp_tracking.error_type", "unknown_tool")
        span.set_attribute("mcp.session.id", session_id)
        self.event(span, "hallucinated_tool_call",
                   {"requested_tool_name": requested, "similar_tool_suggested": suggested})

    # -- on the worker ---------------------------------------------------------------------------

    def write(self, batch: Sequence[EventRecord]) -> None:
        for record in batch:
            self._take(record)

    def _end_refused(self, sid: str | None) -> None:
        """A call refused on its arguments has no completion: it ended at its ``schema_validation_error``,
        known once the session moves on (its next call, its outcome or its end)."""
        for (call_sid, _), call in self._calls.items():
            if call_sid == sid and call.end_ns is None and call.refused_ns is not None:
                call.end_ns = call.refused_ns
                call.error_type = "validation_error"
                call.attributes["mcp_tracking.error_type"] = "validation_error"

    def _take(self, record: EventRecord) -> None:
        name = record.event_name
        md = record.metadata if isinstance(record.metadata, dict) else {}
        sid = record.session_id
        ts = record.ts_us * 1000
        if name in ("tool_call_started", "session_end", "hallucinated_tool_call") or name in OUTCOME_EVENTS:
            self._end_refused(sid)
        if name == "hallucinated_tool_call":  # not a tool call: one instant span saying what was asked for
            context = getattr(record, "call_context", None) or {}
            if context.get("enriched"):
                return  # the framework's own span of the request carries it
            tool = str(md.get("requested_tool_name"))
            attrs = call_attributes(tool, sid, context)
            attrs["mcp_tracking.error_type"] = "unknown_tool"
            call = _Call(tool, ts, attrs, _parent_context(context), [(name, event_attributes(name, md), ts)], end_ns=ts,
                         error_type="unknown_tool", error_message=f"Unknown tool: {tool}"[:500])
            self._calls[(sid, -record.ts_us)] = call
            return
        if name == "tool_call_started":
            seq = md.get("call_sequence")
            if not isinstance(seq, int):
                return
            key = (sid, seq)
            context = getattr(record, "call_context", None) or {}
            early = self._early.pop(key, [])
            if context.get("enriched"):
                _bounded_set(self._enriched, key, MAX_PENDING_CALLS)
                return
            tool = str(md.get("tool_name"))
            attrs = call_attributes(tool, sid, context)
            attrs["mcp_tracking.call_sequence"] = seq
            if md.get("is_retry"):
                attrs["mcp_tracking.is_retry"] = True
            if context.get("session_source"):
                attrs["mcp_tracking.session_source"] = context["session_source"]
            if self.record_arguments and "tool_params" in md:
                attrs["gen_ai.tool.call.arguments"] = dumps(md["tool_params"]).decode()
            parent = _parent_context(context)
            call = _Call(tool, ts, attrs, parent, early)
            self._calls[key] = call
            while len(self._calls) > MAX_PENDING_CALLS:
                self._calls.popitem(last=False)
            return
        if name in CALL_EVENTS:
            seq = md.get("call_sequence")
            if isinstance(seq, list) and seq:
                seq = seq[-1]
            if not isinstance(seq, int):
                return
            key = (sid, seq)
            if key in self._enriched:
                return
            event = (name, event_attributes(name, md), ts)
            pending = self._calls.get(key)
            if pending is not None:
                pending.events.append(event)
                if name == "schema_validation_error" and any(
                        isinstance(e, dict) and e.get("blocking") is not False for e in md.get("validation_errors")
                        or ()):
                    pending.refused_ns = ts
                    if md.get("enforced"):  # refused by us: no completion can follow
                        self._end_refused(sid)
            elif name in ("tool_call_retry", "wrong_tool_error"):  # these precede tool_call_started
                self._early.setdefault(key, []).append(event)
                while len(self._early) > MAX_PENDING_CALLS:
                    self._early.popitem(last=False)
            return
        if name in ("tool_call_completed", "tool_call_failed"):
            seq = md.get("call_sequence")
            if not isinstance(seq, int) or (sid, seq) in self._enriched:
                return
            pending = self._calls.get((sid, seq))
            if pending is None or pending.end_ns is not None:
                return
            pending.end_ns = max(ts, pending.start_ns)
            if name == "tool_call_failed":
                exc_type = md.get("exception_type")
                pending.error_type = str(exc_type) if exc_type else "tool_error"
                message = md.get("error_message")
                pending.error_message = str(message)[:500] if message is not None else None
                pending.attributes["mcp_tracking.error_type"] = str(md.get("error_type"))
            if self.record_results:
                result = (getattr(record, "call_context", None) or {}).get("result")
                if result is not None:
                    pending.attributes["gen_ai.tool.call.result"] = str(result)
            return
        if not self.session_spans or sid is None:
            return
        if name in OUTCOME_EVENTS:
            self._outcomes[sid] = (name, md, ts)
            while len(self._outcomes) > MAX_PENDING_SESSIONS:
                self._outcomes.popitem(last=False)
        elif name == "session_end":
            self._session_span(record, md, ts)

    def _session_span(self, record: EventRecord, md: Mapping[str, Any], end_ns: int) -> None:
        duration_ms = md.get("total_duration_ms")
        start_ns = end_ns - int(float(duration_ms) * 1e6) if isinstance(duration_ms, (int, float)) else end_ns
        attrs: dict[str, Any] = {"mcp.session.id": str(record.session_id),
                                 "mcp_tracking.end_reason": str(md.get("end_reason")),
                                 "mcp_tracking.steps_count": md.get("steps_count") or 0}
        if record.mcp_name:
            attrs["mcp_tracking.mcp_name"] = record.mcp_name
        outcome = self._outcomes.pop(str(record.session_id), None)
        if outcome is not None:
            attrs["mcp_tracking.outcome"] = outcome[0]
        span = self.tracer.start_span("mcp_tracking.session", kind=SpanKind.INTERNAL, attributes=attrs,
                                      start_time=start_ns)
        if outcome is not None:
            oname, omd, ots = outcome
            span.add_event(oname, event_attributes(oname, omd), timestamp=max(ots, start_ns))
        span.end(end_time=end_ns)

    def _end_finished(self) -> None:
        for key in [k for k, c in self._calls.items() if c.end_ns is not None]:
            call = self._calls.pop(key)
            span = self.tracer.start_span(f"tools/call {call.tool}", context=call.parent, kind=SpanKind.SERVER,
                                          attributes=call.attributes, start_time=call.start_ns)
            for name, attrs, ts in call.events:
                span.add_event(name, attrs, timestamp=ts)
            if call.error_type is not None:
                span.set_attribute("error.type", call.error_type)
                span.set_status(Status(StatusCode.ERROR, call.error_message))
            span.end(end_time=call.end_ns)

    def flush(self) -> None:
        """End the spans of every finished call (their answer-completeness events arrive just after)."""
        self._end_finished()

    def close(self) -> None:
        self._end_finished()


def _bounded_set(items: OrderedDict[Any, None], key: Any, limit: int) -> None:
    items[key] = None
    while len(items) > limit:
        items.popitem(last=False)


def _parent_context(context: Mapping[str, Any]) -> Any:
    """The client's trace context from ``_meta`` (W3C ``traceparent``/``tracestate``), if valid."""
    carrier = {k: context[k] for k in ("traceparent", "tracestate") if isinstance(context.get(k), str)}
    if "traceparent" not in carrier:
        return None
    try:
        ctx = _extract(carrier)
    except (ValueError, TypeError):
        return None
    return ctx if _trace.get_current_span(ctx).get_span_context().is_valid else None
