"""The framework-free core: what happened on one tool call, and which events follow.

Adapters (MCPServer middleware, fastmcp middleware, the mcp 1.x hook, the decorator) gather the facts of
an inbound call into a :class:`CallInfo`, ask :meth:`Recorder.begin` whether the call may run, run it,
and report the outcome to :meth:`Recorder.finish`. Per call, in the design's order:

identity → session_start (first sight) → manifest check → retry detection → wrong-tool detection →
``tool_call_started`` → (unknown name: ``hallucinated_tool_call`` + corrective answer) → schema validation
(``schema_validation_error`` + corrective answer in *enforce* mode) → run and time →
``tool_call_completed`` / ``tool_call_failed`` → answer completeness.

Every call into the recorder is contained: an internal failure is logged at a limited rate and the
tool call goes ahead untracked.
"""

from __future__ import annotations

import contextvars
import hashlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mcp_tracking._json import dumps, params_hash
from mcp_tracking._logging import warn_once
from mcp_tracking.core import completeness as _completeness
from mcp_tracking.core.identity import (
    SESSION_META_KEYS,
    USER_META_KEYS,
    ByIdentity,
    current_binding,
    meta_value,
    mint,
)
from mcp_tracking.core.manifest import SUGGESTION_CUTOFF, suggest, unknown_tool_message
from mcp_tracking.core.results import WireResult, value_bytes
from mcp_tracking.core.sessions import SessionState
from mcp_tracking.core.state import failure_reason
from mcp_tracking.core.validation import ValidatorCache, invalid_arguments_message, validate
from mcp_tracking.events import EventRecord

if TYPE_CHECKING:
    from mcp_tracking.client import AnalyticsClient


#: The call being tracked, set by every adapter around the tool's execution: a decorated tool inside
#: a tracked server steps aside instead of tracking the call twice, and the outcome tool finds its session.
current_call: contextvars.ContextVar[CallHandle | None] = contextvars.ContextVar("mcp_tracking_call", default=None)

ValidationMode = Literal["enforce", "observe", "off"]
MAX_FINGERPRINT_BYTES = 1 << 20
MAX_RESULT_ATTRIBUTE = 4096  # characters of a result put on a span (record_results only)


@dataclass
class TrackingOptions:
    """How the interceptors judge calls.

    Args:
        validation: ``"enforce"`` (default: invalid arguments get a corrective error and the tool does not
            run), ``"observe"`` (record, let the framework decide) or ``"off"``.
        check_manifest: answer unknown tool names with a "did you mean" error (default on).
        suggestion_cutoff: minimum rapidfuzz score (0-100) for a suggestion.
        completeness: per tool name, the checks run on its result (opt-in).
        completeness_threshold: fraction of checks that must pass for ``answer_complete``.
        polling_tools: tools legitimately called again with the same arguments (never retries).
        session_meta_keys / user_meta_keys: ``_meta`` keys read for an explicit session/user.
        timeout: seconds after which a tool call is cancelled and recorded as ``timeout`` (off by default).
    """

    validation: ValidationMode = "enforce"
    check_manifest: bool = True
    suggestion_cutoff: float = SUGGESTION_CUTOFF
    completeness: Mapping[str, Sequence[_completeness.Check]] = field(default_factory=dict)
    completeness_threshold: float = _completeness.DEFAULT_THRESHOLD
    polling_tools: Collection[str] = ()
    session_meta_keys: tuple[str, ...] = SESSION_META_KEYS
    user_meta_keys: tuple[str, ...] = USER_META_KEYS
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.validation not in ("enforce", "observe", "off"):
            raise ValueError(f"validation must be 'enforce', 'observe' or 'off', not {self.validation!r}")
        if not 0 <= self.suggestion_cutoff <= 100:
            raise ValueError("suggestion_cutoff must be between 0 and 100")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.polling_tools = frozenset(self.polling_tools)


@dataclass(slots=True)
class CallInfo:
    """What an adapter knows about an inbound tool call. Only ``tool_name`` and ``arguments`` are required."""

    tool_name: str
    arguments: Any
    meta: Mapping[str, Any] | None = None
    explicit_session: str | None = None
    explicit_user: str | None = None
    transport_session: str | None = None
    connection: Any = None
    auth_subject: str | None = None
    auth_client_id: str | None = None
    client_name: str | None = None
    client_version: str | None = None
    protocol_version: str | None = None
    transport: str | None = None
    request_id: Any = None
    mcp_name: str | None = None
    on_new_connection: Callable[[str], None] | None = None
    #: the framework wraps the call in its own SERVER span (MCPServer, fastmcp): enrich it, never duplicate it
    framework_span: bool = False


@dataclass(slots=True)
class CallHandle:
    """One call in flight. ``reject`` is the corrective answer when the call must not run."""

    state: SessionState
    user_id: str
    mcp_name: str | None
    tool_name: str
    params: Any
    params_hash: str
    sequence: int
    started: float
    reject: str | None = None
    reject_kind: str | None = None
    deferred_retry: bool = False  # repeats an earlier success: retry or polling is decided by its result
    finished: bool = False
    span: Any = None  # the framework's live span, enriched with our events (OpenTelemetry sink only)


class Recorder:
    """The per-call pipeline over an :class:`~mcp_tracking.client.AnalyticsClient`."""

    def __init__(self, client: AnalyticsClient, options: TrackingOptions | None = None) -> None:
        self.client = client
        self.options = options or TrackingOptions()
        self.validators = ValidatorCache()
        self._polling = frozenset(self.options.polling_tools) | client.polling_tools
        self._meta_keys = frozenset(self.options.session_meta_keys) | frozenset(self.options.user_meta_keys)
        #: the OpenTelemetry sink, when the client writes to one (it wants per-call trace context)
        self._otel: Any = getattr(client.sink, "call_context_consumer", None)
        #: what adapters work out once per client connection (client name, transport, ...), by connection object
        self.peers: ByIdentity[Any] = ByIdentity()

    # -- identity --------------------------------------------------------------------------------

    def resolve_identity(self, info: CallInfo) -> tuple[str, str, str, str, bool]:
        """(session_id, session_source, user_id, user_source, new_connection)."""
        opts = self.options
        bound = current_binding.get()
        meta = info.meta
        if meta and self._meta_keys.isdisjoint(meta):
            meta = None  # the common case: no identity keys in _meta (one pass over its keys, nothing built)
        user = info.explicit_user or (bound.user_id if bound else None) or (
            meta_value(meta, opts.user_meta_keys) if meta else None)
        if user:
            user_source = "explicit"
        elif info.auth_subject or info.auth_client_id:
            user, user_source = (info.auth_subject or info.auth_client_id), "auth"
        else:
            user, user_source = "anonymous", "anonymous"
        session = info.explicit_session or (bound.session_id if bound else None) or (
            meta_value(meta, opts.session_meta_keys) if meta else None)
        if session:
            return session, "explicit", str(user), user_source, False
        if info.transport_session:
            return str(info.transport_session), "transport", str(user), user_source, False
        if isinstance(info.connection, str):  # a connection known only by name (an HTTP peer address)
            return self._session_for_key(f"{info.mcp_name}|{info.connection}", str(user), info.mcp_name), \
                "connection", str(user), user_source, False
        if info.connection is not None:
            sid, created = self.client.connections.get(info.connection)
            return sid, "connection", str(user), user_source, created
        # no session anywhere (a direct call): the caller's identity + an inactivity window
        who = (f"auth:{info.auth_subject or info.auth_client_id}" if user_source == "auth"
               else f"client:{info.client_name}/{info.client_version}" if info.client_name else f"user:{user}")
        return self._session_for_key(f"{info.mcp_name}|{who}", str(user), info.mcp_name), "identity", str(user), \
            user_source, False

    def _session_for_key(self, key: str, user: str, mcp_name: str | None) -> str:
        """The live session bound to ``key`` within the idle window, else a new one."""
        store = self.client.sessions
        with store.lock:
            sid = store.session_for_identity(key)
            if sid is None:
                sid = mint("idn")
                shared = self.client.state
                if shared.shared:  # another replica may have this caller's session
                    sid = shared.identity_session(key, sid)  # type: ignore[attr-defined]
                store.get_or_create(sid, user, mcp_name or self.client.mcp_name)
                store.bind_identity(key, sid)
        return sid

    # -- begin -----------------------------------------------------------------------------------

    def begin(self, info: CallInfo, *, known: bool, schema: Any = None,
              available: Callable[[], Sequence[str]] | None = None) -> CallHandle | None:
        """Record the start of a call. ``None`` means tracking failed internally: run the call untracked."""
        try:
            return self._begin(info, known, schema, available)
        except Exception:
            warn_once("begin", "mcp_tracking: tracking the start of %r failed; the call proceeds untracked",
                      getattr(info, "tool_name", None), exc_info=True)
            return None

    def _begin(self, info: CallInfo, known: bool, schema: Any,
               available: Callable[[], Sequence[str]] | None) -> CallHandle:
        client = self.client
        sid, session_source, user, user_source, new_conn = self.resolve_identity(info)
        mcp = info.mcp_name or client.mcp_name
        tool = info.tool_name if type(info.tool_name) is str else str(info.tool_name)
        args = info.arguments
        # snapshot: the tool may mutate its args
        params = dict(args) if type(args) is dict or isinstance(args, Mapping) else args
        phash = params_hash(params if params is not None else {}, client.hash_key)
        if new_conn and info.on_new_connection is not None:
            try:
                info.on_new_connection(sid)
            except Exception:
                warn_once("on-conn", "mcp_tracking: could not watch the connection for its end", exc_info=True)
        otel = self._otel
        span = context = None
        if otel is not None:
            span, context = self._trace_context(otel, info, session_source)
        retry_md = wrong_md = None
        store = client.sessions
        with store.lock:
            state, _ = store.get_or_create(sid, user, mcp)
            start = client.state.begin(state, tool, phash, params, tool in self._polling)
            seq = start.sequence
            if start.new_session:
                client._start_locked(state, {
                    "client_name": info.client_name, "client_version": info.client_version,
                    "protocol_version": info.protocol_version, "transport": info.transport,
                    "session_source": session_source, "user_source": user_source,
                }, claimed=True)
            is_retry, attempt = False, 0
            if start.retry is not None:
                is_retry = True
                attempt, original, reason = start.retry
                retry_md = {
                    "tool_name": tool, "tool_params": params, "params_hash": phash,
                    "original_call_sequence": original, "retry_attempt": attempt,
                    "retry_reason": reason, "call_sequence": seq,
                }
                client._emit("tool_call_retry", user, sid, mcp, retry_md)
            if start.wrong_after is not None:
                wrong_md = client._wrong_tool(state, user, mcp, start.wrong_after, tool, params, seq)
            client._emit("tool_call_started", user, sid, mcp, {
                "tool_name": tool, "tool_params": params, "call_sequence": seq, "is_retry": is_retry,
                "retry_attempt": attempt, "previous_tool_name": start.previous_tool, "params_hash": phash,
                "mcp_tool_available": known,
            }, context)
        handle = CallHandle(state, user, mcp, tool, params, phash, seq, time.perf_counter(),
                            deferred_retry=start.deferred)
        if span is not None:
            self._open_span(otel, span, handle, session_source, retry_md, wrong_md)
        if not known and self.options.check_manifest:
            self._hallucinated(handle, available)
        elif known and schema is not None and self.options.validation != "off":
            self._validate(handle, schema)
        return handle

    def _trace_context(self, otel: Any, info: CallInfo, session_source: str) -> tuple[Any, dict[str, Any]]:
        """The framework's live span to enrich, or the facts the sink needs to build the span itself."""
        span = otel.live_span() if info.framework_span else None
        if span is not None:
            return span, {"enriched": True}
        context: dict[str, Any] = {"request_id": info.request_id, "protocol_version": info.protocol_version,
                                   "transport": info.transport, "session_source": session_source}
        meta = info.meta
        if meta:
            for key in ("traceparent", "tracestate"):
                value = meta.get(key)
                if isinstance(value, str):
                    context[key] = value
        return None, context

    def _open_span(self, otel: Any, span: Any, handle: CallHandle, session_source: str,
                   retry_md: dict[str, Any] | None, wrong_md: dict[str, Any] | None) -> None:
        try:
            args = self._sanitized(handle.params) if otel.record_arguments else None
            otel.open_live(span, handle.tool_name, handle.state.session_id, handle.sequence, session_source, args)
            if retry_md is not None:
                otel.live_event(span, "tool_call_retry", retry_md)
            if wrong_md is not None:
                otel.live_event(span, "wrong_tool_error", wrong_md)
            handle.span = span
        except Exception:
            warn_once("otel-live", "mcp_tracking: could not enrich the framework's span", exc_info=True)

    def _sanitized(self, value: Any) -> str:
        """``value`` as the store would keep it (the client's redaction and caps applied), as JSON text."""
        record: EventRecord | None = EventRecord("tool_call_started", "", None, None, {"tool_params": value})
        for proc in self.client.emitter.processors:
            if record is None:
                return "null"
            record = proc(record)
        return dumps(record.metadata.get("tool_params")).decode() if record is not None else "null"

    def _hallucinated(self, handle: CallHandle, available: Callable[[], Sequence[str]] | None) -> None:
        names = list(available()) if available is not None else []
        try:
            found = suggest(handle.tool_name, names, cutoff=self.options.suggestion_cutoff)
        except Exception:
            warn_once("suggest", "mcp_tracking: the fuzzy matcher failed", exc_info=True)
            found = []
        handle.reject = unknown_tool_message(handle.tool_name, found, names)
        handle.reject_kind = "unknown_tool"
        self._emit(handle, "hallucinated_tool_call", {
            "requested_tool_name": handle.tool_name, "tool_params": handle.params, "available_tools": sorted(names),
            "call_sequence": handle.sequence,
            "similar_tool_suggested": found[0].name if found else None,
            "similarity_score": found[0].score if found else None,
            "suggestions": [s.name for s in found],
        })
        self._finish_failed(handle, "unknown_tool", handle.reject, retry_eligible=False)

    def _validate(self, handle: CallHandle, schema: Any) -> None:
        try:
            compiled = self.validators.get(handle.tool_name, schema)
            outcome = validate(compiled, handle.params if handle.params is not None else {})
        except Exception:
            warn_once("validate", "mcp_tracking: validating arguments of %r failed", handle.tool_name,
                      exc_info=True)
            return
        if outcome is None:
            return
        errors = [{**e, "blocking": True} for e in outcome.errors] + [{**w, "blocking": False}
                                                                      for w in outcome.warnings]
        self._emit(handle, "schema_validation_error", {
            "tool_name": handle.tool_name, "tool_params": handle.params, "validation_errors": errors,
            "call_sequence": handle.sequence, "schema_version": outcome.schema_version,
            "enforced": bool(outcome.errors) and self.options.validation == "enforce",
        })
        if outcome.errors and self.options.validation == "enforce":
            handle.reject = invalid_arguments_message(handle.tool_name, outcome, schema)
            handle.reject_kind = "validation_error"
            self._finish_failed(handle, "validation_error", handle.reject, retry_eligible=True)

    # -- finish ----------------------------------------------------------------------------------

    def finish(self, handle: CallHandle | None, *, error_type: str | None = None, error_message: str | None = None,
               result: Any = None, exception: BaseException | None = None) -> None:
        """Record the outcome of a call that ran. Never raises.

        ``result`` is the tool's return value, or a :class:`~mcp_tracking.core.results.WireResult` (what a server
        adapter passes: sized and fingerprinted from its bytes as sent, parsed only for completeness checks and
        results on spans)."""
        if handle is None or handle.finished:
            return
        if handle.span is not None:  # the framework may have set its own per-request id meanwhile (fastmcp)
            try:
                handle.span.set_attribute("mcp.session.id", handle.state.session_id)
            except Exception:
                warn_once("otel-live", "mcp_tracking: could not enrich the framework's span", exc_info=True)
        try:
            self._finish(handle, error_type, error_message, result, exception)
        except Exception:
            warn_once("finish", "mcp_tracking: tracking the end of %r failed", handle.tool_name, exc_info=True)

    def _finish(self, handle: CallHandle, error_type: str | None, error_message: str | None, result: Any,
                exception: BaseException | None) -> None:
        elapsed = round((time.perf_counter() - handle.started) * 1000.0, 3)
        if exception is not None and error_type is None:
            error_type = "execution_error"
        if error_type is not None:
            extra = {"exception_type": type(exception).__name__} if exception is not None else {}
            if error_message is None and exception is not None:
                error_message = str(exception) or type(exception).__name__
            self._finish_failed(handle, error_type, error_message, elapsed=elapsed,
                                retry_eligible=error_type not in ("unknown_tool",), **extra)
            return
        if type(result) is WireResult:  # from a server: its bytes as sent; parsed only for the opt-in readers
            payload = result.wire_bytes()
        else:
            payload = value_bytes(result) if result is not None else b"null"
        fingerprint = (hashlib.sha256(payload).hexdigest()[:16]  # SHA extensions: ~2x BLAKE2b on big results
                       if len(payload) <= MAX_FINGERPRINT_BYTES else None)
        handle.finished = True
        state = handle.state
        with self.client.sessions.lock:
            retried = self.client.state.end(state, handle.tool_name, handle.params_hash, handle.sequence, "succeeded",
                                            fingerprint=fingerprint, deferred=handle.deferred_retry)
            if retried is not None:
                self._repeat_was_retry(handle, retried)
            self.client._emit("tool_call_completed", handle.user_id, state.session_id, handle.mcp_name, {
                "tool_name": handle.tool_name, "tool_params": handle.params, "success": True,
                "execution_time_ms": elapsed, "call_sequence": handle.sequence, "params_hash": handle.params_hash,
                "result_size": len(payload),
            }, self._result_context(handle, result) if self._otel is not None else None)
        checks = self.options.completeness.get(handle.tool_name)
        if checks:
            if type(result) is WireResult:
                result = result.payload
            report = _completeness.evaluate(checks, result, threshold=self.options.completeness_threshold)
            self._emit(handle, "answer_complete" if report.complete else "answer_incomplete", {
                "completeness_score": report.score, "detection_method": "heuristic_validation",
                "checks_passed": report.passed, "checks_failed": report.failed, "tool_name": handle.tool_name,
                "result_count": report.result_count, "call_sequence": handle.sequence,
            })

    def _result_context(self, handle: CallHandle, result: Any) -> dict[str, Any] | None:
        """The result for the OpenTelemetry span, when the user opted in: redacted and capped like the
        arguments."""
        if not self._otel.record_results:
            return None
        if type(result) is WireResult:
            result = result.payload
        text = self._sanitized(result)[:MAX_RESULT_ATTRIBUTE]
        if handle.span is not None:
            try:
                handle.span.set_attribute("gen_ai.tool.call.result", text)
            except Exception:
                warn_once("otel-live", "mcp_tracking: could not enrich the framework's span", exc_info=True)
            return None
        return {"result": text}

    def _repeat_was_retry(self, handle: CallHandle, retried: tuple[int, int]) -> None:
        """A repeat of an earlier success failed or returned the same result: it was a retry."""
        attempt, original = retried
        md = {
            "tool_name": handle.tool_name, "tool_params": handle.params, "params_hash": handle.params_hash,
            "original_call_sequence": original, "retry_attempt": attempt,
            "retry_reason": "repeated_after_success", "call_sequence": handle.sequence,
        }
        self.client._emit("tool_call_retry", handle.user_id, handle.state.session_id, handle.mcp_name, md)
        self._live_event(handle, "tool_call_retry", md)

    def _finish_failed(self, handle: CallHandle, error_type: str, message: str | None, *, elapsed: float = 0.0,
                       retry_eligible: bool = True, **extra: Any) -> None:
        handle.finished = True
        md = {
            "tool_name": handle.tool_name, "tool_params": handle.params, "error_type": error_type,
            "error_message": message, "execution_time_ms": elapsed, "call_sequence": handle.sequence,
            "retry_eligible": retry_eligible, "params_hash": handle.params_hash, **extra,
        }
        client = self.client
        with client.sessions.lock:
            retried = client.state.end(handle.state, handle.tool_name, handle.params_hash, handle.sequence,
                                       failure_reason(error_type), error_type=error_type,
                                       deferred=handle.deferred_retry)
            if retried is not None:
                self._repeat_was_retry(handle, retried)
            client._emit("tool_call_failed", handle.user_id, handle.state.session_id, handle.mcp_name, md)
        self._live_event(handle, "tool_call_failed", md)

    def _emit(self, handle: CallHandle, name: str, metadata: dict[str, Any]) -> None:
        with self.client.sessions.lock:
            self.client._track_locked(handle.state, name, handle.user_id, handle.mcp_name, metadata)
        self._live_event(handle, name, metadata)

    def _live_event(self, handle: CallHandle, name: str, metadata: dict[str, Any]) -> None:
        """The event on the framework's live span, when we enrich one."""
        if handle.span is not None:
            try:
                if name == "tool_call_failed":
                    handle.span.set_attribute("mcp_tracking.error_type", str(metadata.get("error_type")))
                else:
                    self._otel.live_event(handle.span, name, metadata)
            except Exception:
                warn_once("otel-live", "mcp_tracking: could not enrich the framework's span", exc_info=True)

    def end_connection(self, session_id: str) -> None:
        """The connection behind a ``connection`` session closed: end the session now."""
        try:
            self.client.sessions.end(session_id, "connection_closed")
        except Exception:
            warn_once("end-conn", "mcp_tracking: ending a session at connection close failed", exc_info=True)
