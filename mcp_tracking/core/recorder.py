"""The interceptors' pipeline over the tracker: what happened on one tool call, as a framework saw it.

Adapters (MCPServer middleware, fastmcp middleware, the mcp 1.x hook, the decorator) gather the facts of
an inbound call into a :class:`CallInfo`. The framework is the authority on dispatch and validation; this
pipeline observes, classifies and enriches its answer:

* a name the framework would dispatch: :meth:`Recorder.begin` (identity → ``session_start`` on first sight →
  the tracker's ``[wrong_tool_error]`` ``tool_call_started`` ``[tool_call_retry]`` → our schema check:
  ``schema_validation_error``, refusing the call only in *enforce* mode), run it, :meth:`Recorder.finish`
  (``tool_call_completed`` / ``tool_call_failed`` → answer completeness), or :meth:`Recorder.refused` when
  the framework refused the arguments (the ``schema_validation_error`` is then the call's terminal event);
* a name the framework itself answered "not found": :meth:`Recorder.unknown` (``hallucinated_tool_call``
  only) and the suggestions the adapter adds to the framework's own error.

Every call into the recorder is contained: an internal failure is logged at a limited rate and the
tool call goes ahead untracked.
"""

from __future__ import annotations

import contextvars
import hashlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from mcp_tracking._json import dumps
from mcp_tracking._logging import warn_limited
from mcp_tracking.core import completeness as _completeness
from mcp_tracking.core.identity import (
    SESSION_META_KEYS,
    USER_META_KEYS,
    ByIdentity,
    claim,
    current_binding,
    mint,
)
from mcp_tracking.core.manifest import SUGGESTION_CUTOFF, Suggestion, suggest
from mcp_tracking.core.results import WireResult, value_bytes
from mcp_tracking.core.tracing import CallTracing
from mcp_tracking.core.tracker import CallHandle, Tracker
from mcp_tracking.core.validation import ValidatorCache, invalid_arguments_message, validate

#: The call being tracked, set by every adapter around the tool's execution: a decorated tool inside
#: a tracked server steps aside instead of tracking the call twice, and the outcome tool finds its session.
current_call: contextvars.ContextVar[CallHandle | None] = contextvars.ContextVar("mcp_tracking_call", default=None)

ValidationMode = Literal["enforce", "observe", "off"]
MAX_FINGERPRINT_BYTES = 1 << 20


@dataclass
class TrackingOptions:
    """How the interceptors judge calls.

    Args:
        validation: ``"observe"`` (the default on servers: our check records ``schema_validation_error`` and the
            framework's own validation decides; when it refuses, its answer gains our corrective lines),
            ``"enforce"`` (the default of ``@track_tool``: invalid arguments get our corrective error and the
            tool does not run; stricter than the frameworks, which coerce ``"3"`` to ``3``) or ``"off"``.
        check_manifest: add "Did you mean ...?" to the framework's answer for an unknown tool name (default on).
        suggestion_cutoff: minimum rapidfuzz score (0-100) for a suggestion.
        completeness: per tool name, the checks run on its result (opt-in).
        completeness_threshold: fraction of checks that must pass for ``answer_complete``.
        polling_tools: tools legitimately called again with the same arguments (never retries).
        session_meta_keys / user_meta_keys: ``_meta`` keys read for an explicit session/user.
        timeout: seconds after which a tool call is cancelled and recorded as ``timeout`` (off by default).
        aliases: opt-in names routed to a tool, ``{"getLeaderboard": "get_leaderboard"}``: a call to a name the
            framework does not know is dispatched to the tool it names instead, and recorded as a call of that
            tool with ``called_as`` (not a hallucination). A name the framework knows is never rerouted.
            ``mcp-tracking advise`` says which aliases the agents need.
    """

    validation: ValidationMode = "observe"
    check_manifest: bool = True
    suggestion_cutoff: float = SUGGESTION_CUTOFF
    completeness: Mapping[str, Sequence[_completeness.Check]] = field(default_factory=dict)
    completeness_threshold: float = _completeness.DEFAULT_THRESHOLD
    polling_tools: Collection[str] = ()
    session_meta_keys: tuple[str, ...] = SESSION_META_KEYS
    user_meta_keys: tuple[str, ...] = USER_META_KEYS
    timeout: float | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.validation not in ("enforce", "observe", "off"):
            raise ValueError(f"validation must be 'enforce', 'observe' or 'off', not {self.validation!r}")
        if not 0 <= self.suggestion_cutoff <= 100:
            raise ValueError("suggestion_cutoff must be between 0 and 100")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.polling_tools = frozenset(self.polling_tools)
        if not all(isinstance(k, str) and isinstance(v, str) and k != v for k, v in dict(self.aliases).items()):
            raise ValueError("aliases maps names to other tool names: {'asked_for': 'tool_name'}")
        self.aliases = dict(self.aliases)


class Identity(NamedTuple):
    """Who made a call and in which session (see :mod:`mcp_tracking.core.identity` for the order)."""

    session_id: str
    session_source: str
    user_id: str
    user_source: str
    new_connection: bool


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
    #: the name the agent used, when an alias routed it to ``tool_name``
    called_as: str | None = None


class Recorder:
    """The per-call pipeline over a :class:`~mcp_tracking.core.tracker.Tracker`.

    Args:
        tracker: the one door that decides every event.
        options: how calls are judged (validation mode, suggestions, completeness, ...).
        otel: the tracing hooks (:class:`~mcp_tracking.core.tracing.CallTracing`: the OpenTelemetry sink), when
            events also go to one.
        sanitize: ``value -> JSON text`` as the store keeps it (redacted, capped), for span attributes.
        show_values: whether validation messages may quote argument values (``False`` in keys-only mode).
    """

    def __init__(self, tracker: Tracker, options: TrackingOptions | None = None, *, otel: CallTracing | None = None,
                 sanitize: Callable[[Any], str] | None = None, show_values: bool = True) -> None:
        self.tracker = tracker
        self.options = options or TrackingOptions()
        self.validators = ValidatorCache()
        self._polling = frozenset(self.options.polling_tools)
        self._meta_keys = frozenset(self.options.session_meta_keys) | frozenset(self.options.user_meta_keys)
        self._otel = otel
        self.show_values = show_values
        self._sanitize = sanitize or (lambda value: dumps(value).decode())
        if self._polling - tracker.polling_tools:
            tracker.polling_tools = tracker.polling_tools | self._polling

    @property
    def peers(self) -> ByIdentity[Any]:
        """What adapters work out once per client connection (client name, transport, ...)."""
        return self.tracker.peers

    # -- identity --------------------------------------------------------------------------------

    def resolve_identity(self, info: CallInfo) -> Identity:
        """Who is calling and in which session; the order is :mod:`mcp_tracking.core.identity`'s."""
        opts = self.options
        meta = info.meta
        if meta and self._meta_keys.isdisjoint(meta):
            meta = None  # the common case: no identity keys in _meta (one pass over its keys, nothing built)
        c = claim(explicit_user=info.explicit_user, explicit_session=info.explicit_session,
                  bound=current_binding.get(), meta=meta, user_keys=opts.user_meta_keys,
                  session_keys=opts.session_meta_keys, auth_subject=info.auth_subject,
                  auth_client_id=info.auth_client_id, transport_session=info.transport_session,
                  client_name=info.client_name, client_version=info.client_version)
        user = c.user_id
        if c.session_id is not None and c.session_source is not None:  # 1-2: explicit, transport
            return Identity(c.session_id, c.session_source, user, c.user_source, False)
        if isinstance(info.connection, str):  # 3: a connection known only by name (an HTTP peer address)
            return Identity(self._session_for_key(f"{info.mcp_name}|{info.connection}", user, info.mcp_name),
                            "connection", user, c.user_source, False)
        if info.connection is not None:  # 3: a live connection object
            sid, created = self.tracker.connections.get(info.connection)
            return Identity(sid, "connection", user, c.user_source, created)
        # 4: no session anywhere (a direct call): the caller's identity + an inactivity window
        return Identity(self._session_for_key(f"{info.mcp_name}|{c.identity_key}", user, info.mcp_name),
                        "identity", user, c.user_source, False)

    def _session_for_key(self, key: str, user: str, mcp_name: str | None) -> str:
        """The live session bound to ``key`` within the idle window, else a new one."""
        tracker = self.tracker
        store = tracker.sessions
        with store.lock:
            sid = store.session_for_identity(key)
            if sid is None:
                sid = mint("idn")
                if tracker.state.shared:  # another replica may have this caller's session
                    sid = tracker.state.identity_session(key, sid)  # type: ignore[attr-defined]
                tracker.session(sid, user, mcp_name)
                store.bind_identity(key, sid)
        return sid

    def _identify(self, info: CallInfo) -> tuple[Identity, dict[str, Any]]:
        """The caller's identity, its ``session_start`` facts, and the connection-close hook installed."""
        who = self.resolve_identity(info)
        if who.new_connection and info.on_new_connection is not None:
            try:
                info.on_new_connection(who.session_id)
            except Exception:
                warn_limited("on-conn", "mcp_tracking: could not watch the connection for its end", exc_info=True)
        facts = {
            "client_name": info.client_name, "client_version": info.client_version,
            "protocol_version": info.protocol_version, "transport": info.transport,
            "session_source": who.session_source, "user_source": who.user_source,
        }
        return who, facts

    # -- a known tool's call ---------------------------------------------------------------------

    def begin(self, info: CallInfo, *, schema: Any = None, created_us: int | None = None) -> CallHandle | None:
        """Record the start of a call to a tool the framework will dispatch. ``None`` means tracking failed
        internally: run the call untracked. ``handle.reject`` is set when *enforce* mode refuses it."""
        try:
            return self._begin(info, schema, created_us)
        except Exception:
            warn_limited("begin", "mcp_tracking: tracking the start of %r failed; the call proceeds untracked",
                      getattr(info, "tool_name", None), exc_info=True)
            return None

    def _begin(self, info: CallInfo, schema: Any, created_us: int | None) -> CallHandle:
        who, facts = self._identify(info)
        tool = info.tool_name if type(info.tool_name) is str else str(info.tool_name)
        args = info.arguments
        # snapshot: the tool may mutate its args
        params = dict(args) if type(args) is dict or isinstance(args, Mapping) else args
        span, context = self._trace(info, who.session_source)
        handle = self.tracker.begin_call(who.session_id, who.user_id, info.mcp_name, tool, params,
                                         session_facts=facts, created_us=created_us, context=context,
                                         called_as=info.called_as)
        tracing = self._otel
        if span is not None and tracing is not None and self._traced(
                lambda: tracing.began(span, handle.tool_name, handle.state.session_id, handle.sequence,
                                      who.session_source, handle.params, self._sanitize, handle.early or ())):
            handle.span = span
        if schema is not None and self.options.validation != "off":
            self._validate(handle, schema, params)  # the arguments as sent (the handle may hold a stand-in)
        return handle

    def late(self, info: CallInfo, since: tuple[int, float], *, error_type: str | None = None,
             exception: BaseException | None = None) -> CallHandle | None:
        """A call the framework dispatched although our lookup did not know the name (hashed or late-bound
        names): tracked from ``since`` (µs since the epoch, ``perf_counter``), when the framework was asked.
        With ``exception``, it already ended in it."""
        created, started = since
        handle = self.begin(info, created_us=created)
        if handle is not None:
            handle.started = started
            if exception is not None:
                self.finish(handle, error_type=error_type, exception=exception)
        return handle

    def _validate(self, handle: CallHandle, schema: Any, params: Any) -> None:
        try:
            compiled = self.validators.get(handle.tool_name, schema)
            outcome = validate(compiled, params if params is not None else {}, self.show_values)
        except Exception:
            warn_limited("validate", "mcp_tracking: validating arguments of %r failed", handle.tool_name,
                      exc_info=True)
            return
        if outcome is None:
            return
        enforce = bool(outcome.errors) and self.options.validation == "enforce"
        errors = [{**e, "blocking": True} for e in outcome.errors] + [{**w, "blocking": False}
                                                                      for w in outcome.warnings]
        md = self.tracker.schema_error(handle, errors, outcome.schema_version, enforced=enforce)
        self._live_event(handle, "schema_validation_error", md)
        if outcome.errors:
            handle.validation = (outcome, schema)
        if enforce:
            handle.reject = invalid_arguments_message(handle.tool_name, outcome, schema)
            self._released(handle, self.tracker.refuse(handle))

    def refused(self, handle: CallHandle | None, framework_errors: list[dict[str, Any]] | None = None) -> str | None:
        """The framework refused the call's arguments: its ``schema_validation_error`` (ours, or one built
        from the framework's errors when our check found nothing) is the call's terminal event. Returns our
        corrective lines for the framework's answer, when our check found the violations."""
        if handle is None or handle.finished:
            return None
        try:
            self._live_session(handle)
            if handle.validation is None:
                md = self.tracker.schema_error(handle, framework_errors or [], None, enforced=False,
                                               source="framework")
                self._live_event(handle, "schema_validation_error", md)
            self._released(handle, self.tracker.refuse(handle))
            if handle.validation is not None and self.options.validation != "off":
                outcome, schema = handle.validation
                return invalid_arguments_message(None, outcome, schema)  # follows the framework's error
        except Exception:
            warn_limited("refused", "mcp_tracking: tracking a refused call of %r failed", handle.tool_name,
                      exc_info=True)
        return None

    # -- a name the framework does not know ------------------------------------------------------

    def unknown(self, info: CallInfo,
                available: Callable[[], Sequence[str]] | Sequence[str] | None) -> list[Suggestion]:
        """The framework answered "not found": ``hallucinated_tool_call`` (nothing else: not a tool call).
        Returns the close names this caller can call, best first, for the adapter to add to the framework's
        answer (empty when nothing is close, or on an internal failure)."""
        try:
            who, facts = self._identify(info)
            names = list(available() if callable(available) else available or ())
            try:
                found = suggest(info.tool_name, names, cutoff=self.options.suggestion_cutoff)
            except Exception:
                warn_limited("suggest", "mcp_tracking: the fuzzy matcher failed", exc_info=True)
                found = []
            args = info.arguments
            params = dict(args) if isinstance(args, Mapping) else args
            span, context = self._trace(info, who.session_source)
            tracing = self._otel
            if span is not None and tracing is not None:  # the framework traces the request: its span gets our event
                self._traced(lambda: tracing.unknown(span, who.session_id, str(info.tool_name),
                                                     found[0].name if found else None))
            self.tracker.hallucinated(who.session_id, who.user_id, info.mcp_name, str(info.tool_name), params,
                                      names, [(f.name, f.score) for f in found], session_facts=facts,
                                      context=context)
            return found
        except Exception:
            warn_limited("unknown", "mcp_tracking: tracking an unknown tool name failed", exc_info=True)
            return []

    # -- tracing: the hooks of the tracing sink (core/tracing.py), contained ----------------------

    def _trace(self, info: CallInfo, session_source: str) -> tuple[Any, dict[str, Any] | None]:
        """The framework's live span to enrich, or the context the tracing sink builds its span from."""
        tracing = self._otel
        if tracing is None:
            return None, None
        facts = {"request_id": info.request_id, "protocol_version": info.protocol_version,
                 "transport": info.transport, "session_source": session_source, "meta": info.meta}
        try:
            return tracing.trace(info.framework_span, facts)
        except Exception:
            warn_limited("otel-live", "mcp_tracking: could not read the call's trace context", exc_info=True)
            return None, None

    @staticmethod
    def _traced(hook: Callable[[], Any]) -> bool:
        """Run one tracing hook; a failure is logged (rate-limited) and never reaches the call."""
        try:
            hook()
            return True
        except Exception:
            warn_limited("otel-live", "mcp_tracking: could not enrich the framework's span", exc_info=True)
            return False

    def _live_event(self, handle: CallHandle, name: str, metadata: dict[str, Any] | None) -> None:
        """The event on the framework's live span, when we enrich one."""
        span, tracing = handle.span, self._otel
        if span is not None and tracing is not None and metadata is not None:
            self._traced(lambda: tracing.event(span, name, metadata))

    def _live_session(self, handle: CallHandle) -> None:
        """The session id on the live span again (the framework may have set its own meanwhile: fastmcp)."""
        span, tracing = handle.span, self._otel
        if span is not None and tracing is not None:
            self._traced(lambda: tracing.session(span, handle.state.session_id))

    def _released(self, handle: CallHandle, retry_md: dict[str, Any] | None) -> None:
        if retry_md is not None:
            self._live_event(handle, "tool_call_retry", retry_md)

    # -- finish ----------------------------------------------------------------------------------

    def finish(self, handle: CallHandle | None, *, error_type: str | None = None, error_message: str | None = None,
               result: Any = None, exception: BaseException | None = None) -> None:
        """Record the outcome of a call that ran. Never raises.

        ``result`` is the tool's return value, or a :class:`~mcp_tracking.core.results.WireResult` (what a server
        adapter passes: sized and fingerprinted from its bytes as sent, parsed only for completeness checks and
        results on spans)."""
        if handle is None or handle.finished:
            return
        self._live_session(handle)
        try:
            self._finish(handle, error_type, error_message, result, exception)
        except Exception:
            warn_limited("finish", "mcp_tracking: tracking the end of %r failed", handle.tool_name, exc_info=True)

    def _finish(self, handle: CallHandle, error_type: str | None, error_message: str | None, result: Any,
                exception: BaseException | None) -> None:
        elapsed = round((time.perf_counter() - handle.started) * 1000.0, 3)
        if exception is not None and error_type is None:
            error_type = "execution_error"
        if error_type is not None:
            extra = {"exception_type": type(exception).__name__} if exception is not None else {}
            if error_message is None and exception is not None:
                error_message = str(exception) or type(exception).__name__
            md, retry_md = self.tracker.fail(handle, error_type, error_message, elapsed_ms=elapsed,
                                             retry_eligible=error_type != "unknown_tool", **extra)
            self._released(handle, retry_md)
            self._live_event(handle, "tool_call_failed", md)
            return
        if type(result) is WireResult:  # from a server: its bytes as sent; parsed only for the opt-in readers
            payload = result.wire_bytes()
        else:
            payload = value_bytes(result) if result is not None else b"null"
        fingerprint = (hashlib.sha256(payload).hexdigest()[:16]  # SHA extensions: ~2x BLAKE2b on big results
                       if len(payload) <= MAX_FINGERPRINT_BYTES else None)
        context = self._result_context(handle, result) if self._otel is not None else None
        self._released(handle, self.tracker.complete(handle, elapsed_ms=elapsed, result_size=len(payload),
                                                     fingerprint=fingerprint, context=context))
        checks = self.options.completeness.get(handle.tool_name)
        if checks:
            if type(result) is WireResult:
                result = result.payload
            report = _completeness.evaluate(checks, result, threshold=self.options.completeness_threshold)
            md = {
                "completeness_score": report.score, "detection_method": "heuristic_validation",
                "checks_passed": report.passed, "checks_failed": report.failed, "tool_name": handle.tool_name,
                "result_count": report.result_count, "call_sequence": handle.sequence,
            }
            self.tracker.answer(handle, report.complete, md)
            self._live_event(handle, "answer_complete" if report.complete else "answer_incomplete", md)

    def _result_context(self, handle: CallHandle, result: Any) -> dict[str, Any] | None:
        """The result for the tracing sink (on the live span, or as context for the completed event)."""
        tracing = self._otel
        if tracing is None:
            return None
        if type(result) is WireResult:
            result = result.payload
        try:
            return tracing.result(handle.span, result, self._sanitize)
        except Exception:
            warn_limited("otel-live", "mcp_tracking: could not enrich the framework's span", exc_info=True)
            return None

    def end_connection(self, session_id: str) -> None:
        """The connection behind a ``connection`` session closed: end the session now."""
        try:
            self.tracker.end_session(session_id, "connection_closed")
        except Exception:
            warn_limited("end-conn", "mcp_tracking: ending a session at connection close failed", exc_info=True)
