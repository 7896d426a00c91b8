"""The hooks the recorder calls on a call's trace, when events also go to a tracing sink.

The recorder is framework- and vendor-free: it says *what* happened to a call (it began, an event, a result,
an unknown name) and the tracing side (:class:`mcp_tracking.sinks.otel.OTelSink`) decides *how* that shows
on a span: which attributes, which span events, whether the framework's own span is enriched or the sink
builds one later from the stored events. A sink offers these hooks through ``live_spans()``
(:class:`mcp_tracking.sinks.base.LiveSpans`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class CallTracing(Protocol):
    """Per-call trace hooks. ``span`` is whatever :meth:`trace` returned; every hook may raise (the recorder
    contains it)."""

    def trace(self, framework_span: bool, facts: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """At a call's start: ``(span, context)``. ``span`` is the framework's live span to enrich (``None``
        when there is none); ``context`` goes into the stored events for the sink to build the span from
        (``facts``: ``request_id``, ``protocol_version``, ``transport``, ``session_source``, ``meta``)."""
        ...

    def began(self, span: Any, tool: str, session_id: str, sequence: int, session_source: str | None,
              params: Any, sanitize: Callable[[Any], str], early: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """The call has its session and sequence: name the span, set its facts (the arguments, sanitized,
        if the sink records them) and add the events emitted before the span was known (``early``)."""

    def event(self, span: Any, name: str, metadata: Mapping[str, Any]) -> None:
        """One of the call's events (retry, schema error, failure, completeness)."""

    def session(self, span: Any, session_id: str) -> None:
        """The call's session id again, just before its end (a framework may have set its own meanwhile)."""

    def result(self, span: Any, result: Any, sanitize: Callable[[Any], str]) -> dict[str, Any] | None:
        """The call's result: put on ``span`` when there is one, else returned as context for the completed
        event; nothing unless the sink records results."""
        ...

    def unknown(self, span: Any, session_id: str, requested: str, suggested: str | None) -> None:
        """The framework answered "not found" for ``requested`` (a ``hallucinated_tool_call``)."""
