"""The one door: every event of a session is decided here, whoever reports the call.

The interceptors (MCPServer and fastmcp middleware, the mcp 1.x hook, the decorator) and the design's SDK
helpers (``AnalyticsClient.track_tool_call_started``, ``track_tool_usage``, ...) all call a
:class:`Tracker`. It owns the live sessions, their call state (sequence, retries, wrong-tool switches),
connection ids and the params-hash key, and it is handed an ``emit`` callable: it imports neither the
emitter nor the client, so the same calls through any door give the same events.

The event contract (the design's code; ``docs/events.md`` draws it):

* **unknown name** → ``hallucinated_tool_call`` only. Not a tool call: no ``call_sequence``, not a step,
  not in tool popularity, never part of a ``wrong_tool_error``.
* **a call** → ``[wrong_tool_error]`` ``tool_call_started`` ``[tool_call_retry]`` ``[schema_validation_error]``
  then exactly one terminal event: ``tool_call_completed``, ``tool_call_failed``, or — for a call refused on
  its arguments — the ``schema_validation_error`` itself. Then ``[answer_complete | answer_incomplete]``.
* ``tool_call_retry`` always follows the ``tool_call_started`` it belongs to, and that event's ``is_retry``
  / ``retry_attempt`` agree with it. A repeat of a *success* is a retry only if it fails or returns the same
  result (else the agent is polling): an interceptor holds such a call's events until its result decides;
  the SDK helpers never see results and count it as a retry at once.
* ``wrong_tool_error`` only when the session's previous call ended in ``tool_call_failed`` and this call
  starts a different, known tool.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_tracking._json import approx_size, cap_strings, params_digest, params_hash, stand_in
from mcp_tracking.core.identity import ByIdentity, ConnectionIds
from mcp_tracking.core.sessions import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, SessionState, SessionStore
from mcp_tracking.core.state import REFUSED, LocalState, StateBackend, failure_reason
from mcp_tracking.events import MAX_EVENT_BYTES, MAX_PAYLOAD_BYTES, MAX_STRING_CHARS

#: outcome events of a session
OUTCOMES = ("session_completed", "session_failed", "session_abandoned")
#: open calls the SDK helpers keep per session, to pair ``track_tool_usage`` with its ``tool_call_started``
MAX_OPEN_CALLS = 256


class Emit(Protocol):
    """Queue one event; ``True`` if accepted. ``created_us`` (µs since the epoch) defaults to now; ``size``
    is the payload's size in bytes, for the queue's byte budget (the envelope is counted on top)."""

    def __call__(self, name: str, user_id: str, session_id: str | None, mcp_name: str | None,
                 metadata: dict[str, Any], created_us: int | None = None,
                 context: dict[str, Any] | None = None, size: int = 0) -> bool: ...


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(slots=True)
class CallHandle:
    """One tool call in flight (started, not yet ended)."""

    state: SessionState
    user_id: str
    mcp_name: str | None
    tool_name: str
    params: Any
    params_hash: str
    sequence: int
    started: float  # perf_counter at the start
    is_retry: bool = False
    retry_attempt: int = 0
    deferred_retry: bool = False  # repeats an earlier success: retry or polling is decided by its result
    finished: bool = False
    refused: bool = False  # ended at its schema_validation_error (may still run: observe mode)
    schema_errors: list[dict[str, Any]] | None = None  # what our validation found (blocking ones)
    #: a deferred call's events, held until its result decides whether it was a retry:
    #: (name, metadata, created_us, context)
    held: list[tuple[str, dict[str, Any], int, dict[str, Any] | None]] | None = None
    reject: str | None = None  # the corrective answer when the call must not run (enforce mode)
    span: Any = None  # the framework's live span, enriched with our events (OpenTelemetry only)
    #: ``wrong_tool_error`` / ``tool_call_retry`` metadata decided at the start (for a live span)
    early: list[tuple[str, dict[str, Any]]] | None = None
    validation: Any = None  # the interceptor's own validation outcome and schema (for corrective text)
    payload_bytes: int = 0  # the size of ``params`` as queued (the byte budget counts it per event)


def capped(value: Any, size: int) -> tuple[Any, int]:
    """A payload of ``size`` bytes, over :data:`MAX_PAYLOAD_BYTES`, made small enough to queue: its long
    strings cut (what the worker's size caps would keep anyway), else only its size and keys. Returns it and
    its size. Runs on the request path only for such payloads; nothing in it reveals a value the worker's
    redaction would hide (keys are kept, so redaction still finds what sits under a secret key)."""
    cut = cap_strings(value, MAX_STRING_CHARS)
    n = approx_size(cut)
    if n <= MAX_PAYLOAD_BYTES:
        return cut, n
    return stand_in(value, size), 256


class Tracker:
    """Sessions, call state and every event decision, over an ``emit`` callable.

    Args:
        emit: queues one event (see :class:`Emit`).
        mcp_name: default ``mcp_name`` for events that do not give one.
        state: where per-session call state lives (default: this process).
        idle_timeout / max_sessions: bounds of the live sessions kept in memory.
        polling_tools: tools legitimately called again with the same arguments (never retries).
        hash_key: the key of the params hash (``None``: ``MCP_TRACKING_HASH_KEY`` or a per-process key).
    """

    def __init__(self, emit: Emit, *, mcp_name: str | None = None, state: StateBackend | None = None,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 polling_tools: Sequence[str] = (), hash_key: bytes | None = None) -> None:
        self._emit = emit
        self.mcp_name = mcp_name
        self.state: StateBackend = state if state is not None else LocalState()
        self.sessions = SessionStore(idle_timeout=idle_timeout, max_sessions=max_sessions, on_end=self._on_end)
        self.lock = self.sessions.lock
        self.polling_tools = frozenset(polling_tools)
        self.hash_key = hash_key
        #: the server's release, stamped on every ``session_start`` (``mcp-tracking compare`` groups by it)
        self.release: str | None = None
        self.connections = ConnectionIds()  # shared by every adapter on this tracker
        #: what adapters work out once per client connection (client name, transport, ...), by connection object
        self.peers: ByIdentity[Any] = ByIdentity()

    def hash(self, params: Any) -> str:
        return params_hash(params if params is not None else {}, self.hash_key)

    def payload(self, params: Any) -> tuple[Any, str, int]:
        """``(params as queued, their hash, bytes)``: arguments over :data:`MAX_PAYLOAD_BYTES` are replaced by
        their size before they are queued or kept in session state (the hash is of the real ones)."""
        phash, size = params_digest(params if params is not None else {}, self.hash_key)
        if size > MAX_PAYLOAD_BYTES:
            params, size = capped(params, size)
        return params, phash, size

    def _bounded(self, metadata: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """A host's ``track()`` metadata and its size; past :data:`MAX_EVENT_BYTES`, its values over
        :data:`MAX_PAYLOAD_BYTES` become stand-ins (the rest of the event is kept)."""
        size = approx_size(metadata)
        if size <= MAX_EVENT_BYTES:
            return metadata, size
        out: dict[str, Any] = {}
        for key, value in metadata.items():
            n = approx_size(value)
            out[key] = capped(value, n)[0] if n > MAX_PAYLOAD_BYTES else value
        return out, approx_size(out)

    def _mcp(self, mcp_name: Any) -> str | None:
        if mcp_name is None:
            return self.mcp_name
        return mcp_name if isinstance(mcp_name, str) else str(mcp_name)

    # -- sessions --------------------------------------------------------------------------------

    def session(self, session_id: str, user_id: str, mcp_name: str | None) -> SessionState:
        """The live state of a session (created on first sight). Call under :attr:`lock`."""
        state, _ = self.sessions.get_or_create(session_id, user_id, self._mcp(mcp_name))
        return state

    def _start(self, state: SessionState, facts: Mapping[str, Any] | None, *, claimed: bool = False,
               created_us: int | None = None) -> None:
        """``session_start``, once per session (under :attr:`lock`), stamped no later than the first call."""
        if facts is None or (not claimed and not self.state.claim_start(state)):
            return
        state.session_source = facts.get("session_source")
        state.user_source = facts.get("user_source")
        md = dict(facts)
        if self.release is not None and "release" not in md:
            md["release"] = self.release
        self._emit("session_start", state.user_id, state.session_id, state.mcp_name, md, created_us)

    def start_session(self, session_id: str, user_id: str, mcp_name: str | None, facts: Mapping[str, Any]) -> None:
        with self.lock:
            self._start(self.session(session_id, user_id, mcp_name), facts)

    def end_session(self, session_id: str, reason: str) -> bool:
        """End a session now: its outcome (unless already given) and ``session_end``."""
        return self.sessions.end(session_id, reason) is not None

    def end_all(self, reason: str) -> int:
        return self.sessions.end_all(reason)

    def expire(self) -> int:
        return self.sessions.expire()

    def _on_end(self, state: SessionState, reason: str) -> None:
        """Called by the session store (under its lock) when a session ends for any reason."""
        if not self.state.claim_end(state, reason, self.sessions.idle_timeout):
            return  # shared state: another replica served it more recently, or already ended it
        if state.outcome is None:
            if state.task_reported is False:
                self._outcome(state, "session_failed", reason, success=False)
            elif state.task_reported or (state.final_call_succeeded() and state.last_answer_complete is not False):
                why = "task_reported" if state.task_reported else "final_call_succeeded"
                self._outcome(state, "session_completed", why, success=True)
            else:
                self._outcome(state, "session_abandoned", reason, success=False)
        self._emit("session_end", state.user_id, state.session_id, state.mcp_name, {
            "end_reason": reason,
            "steps_count": state.sequence,
            "total_duration_ms": state.duration_ms(),
        })

    def _outcome(self, state: SessionState, name: str, reason: str, *, success: bool) -> None:
        md = {"completion_reason": reason, "success": success, **state.stats()}
        state.outcome = name
        self._emit(name, state.user_id, state.session_id, state.mcp_name, md)

    def session_outcome(self, name: str, session_id: str, user_id: str, mcp_name: str | None, reason: str,
                        success: bool | None, extra: Mapping[str, Any]) -> bool:
        """``session_completed`` / ``_failed`` / ``_abandoned`` given explicitly, with the session's stats.
        ``success`` ``None``: the session's final outcome (``False`` when its last call did not succeed)."""
        with self.lock:
            state = self.session(session_id, user_id, mcp_name)
            if success is None:
                success = name == "session_completed" and (state.last_call is None or state.final_call_succeeded())
            md = {"completion_reason": reason, "success": success, **state.stats(), **extra}
            self.state.note(state, name, md)
            return self._emit(name, user_id, session_id, self._mcp(mcp_name) or state.mcp_name, md)

    # -- the design's track(): any event, keeping session state in step ----------------------------

    def track(self, name: str, user_id: str, session_id: str | None, mcp_name: str | None,
              metadata: dict[str, Any]) -> bool:
        mcp = self._mcp(mcp_name)
        metadata, size = self._bounded(metadata)
        if name == "session_start" and self.release is not None and "release" not in metadata:
            metadata["release"] = self.release
        if session_id is None:
            return self._emit(name, user_id, None, mcp, metadata, size=size)
        with self.lock:
            state = self.session(session_id, user_id, mcp)
            self._observe(state, name, metadata)
            return self._emit(name, user_id, session_id, mcp, metadata, size=size)

    def _observe(self, state: SessionState, name: str, md: dict[str, Any]) -> None:
        """Session state from an event given whole through ``track()``."""
        if name == "tool_call_started":
            seq = md.get("call_sequence")
            seq = seq if type(seq) is int else state.sequence + 1
            phash = md.get("params_hash") or self.hash(md.get("tool_params"))
            state.call_started(str(md.get("tool_name")), md.get("tool_params"), phash, seq)
        elif name in ("tool_call_completed", "tool_call_failed"):
            failed = name == "tool_call_failed" or md.get("success") is False
            error_type = md.get("error_type") if failed else None
            phash = md.get("params_hash") or self.hash(md.get("tool_params"))
            seq = md.get("call_sequence")
            self.state.end(state, str(md.get("tool_name")), phash, seq if type(seq) is int else None,
                           failure_reason(error_type) if failed else "succeeded", error_type=error_type,
                           params=md.get("tool_params"))
        elif name == "session_start":
            self.state.claim_start(state)
        else:
            self.state.note(state, name, md)

    # -- tool calls -------------------------------------------------------------------------------

    def hallucinated(self, session_id: str, user_id: str, mcp_name: str | None, requested: str, params: Any,
                     available: Sequence[str], suggestions: Sequence[tuple[str, float]],
                     session_facts: Mapping[str, Any] | None = None, context: dict[str, Any] | None = None) -> bool:
        """``hallucinated_tool_call``: a name that is not a tool. Not a call: no sequence, no step."""
        params, _, size = self.payload(params)
        with self.lock:
            state = self.session(session_id, user_id, mcp_name)
            self._start(state, session_facts)
            state.info["after_unknown"] = requested  # the tool the agent calls next is what it meant
            md = {
                "requested_tool_name": requested, "tool_params": params, "available_tools": sorted(available),
                "similar_tool_suggested": suggestions[0][0] if suggestions else None,
                "similarity_score": suggestions[0][1] if suggestions else None,
                "suggestions": [name for name, _ in suggestions],
            }
            self.state.note(state, "hallucinated_tool_call", md)
            return self._emit("hallucinated_tool_call", state.user_id, session_id, state.mcp_name, md, None, context,
                              size=size)

    def begin_call(self, session_id: str, user_id: str, mcp_name: str | None, tool: str, params: Any, *,
                   session_facts: Mapping[str, Any] | None = None,
                   mcp_tool_available: bool = True, hold_repeats: bool = True, created_us: int | None = None,
                   context: dict[str, Any] | None = None, called_as: str | None = None) -> CallHandle:
        """A known tool's call starts: ``[wrong_tool_error]`` ``tool_call_started`` ``[tool_call_retry]``.

        ``session_facts``: the ``session_start`` metadata, written if this is the session's first sight
        (``None``: the caller writes ``session_start`` itself, as the design's helpers leave it to the server).
        ``hold_repeats``: a repeat of a success waits for its result (interceptors); else it is a retry now.
        """
        params, phash, size = self.payload(params)
        started = time.perf_counter()
        created = created_us if created_us is not None else now_us()
        with self.lock:
            state = self.session(session_id, user_id, mcp_name)
            polling = tool in self.polling_tools
            start = self.state.begin(state, tool, phash, params, polling, claim=session_facts is not None)
            if start.new_session:
                self._start(state, session_facts, claimed=True, created_us=created)
            handle = CallHandle(state, user_id, state.mcp_name, tool, params, phash, start.sequence, started,
                                payload_bytes=size)
            retry_md = None
            if start.retry is not None:
                handle.is_retry = True
                handle.retry_attempt, original, reason = start.retry
                retry_md = self._retry_md(handle, original, reason)
            elif start.deferred:
                if hold_repeats:
                    handle.deferred_retry = True
                    handle.held = []
                else:  # no result to compare: a repeat of a success counts as a retry at once
                    handle.retry_attempt, original = self.state.count_repeat(state, tool, phash)
                    handle.is_retry = True
                    retry_md = self._retry_md(handle, original, "repeated_after_success")
            if start.wrong_after is not None:
                first_tool, first_params, first_seq, first_error = start.wrong_after
                wrong_md = {
                    "first_tool_name": first_tool, "second_tool_name": tool,
                    "first_tool_params": first_params, "second_tool_params": params,
                    "detection_pattern": "retry_with_different_tool", "call_sequence": [first_seq, start.sequence],
                    "first_error_type": first_error,
                }
                handle.early = [("wrong_tool_error", wrong_md)]
                self._call_event(handle, "wrong_tool_error", wrong_md, created)
            md = {
                "tool_name": tool, "tool_params": params, "call_sequence": start.sequence,
                "is_retry": handle.is_retry, "retry_attempt": handle.retry_attempt,
                "previous_tool_name": start.previous_tool, "params_hash": phash,
                "mcp_tool_available": mcp_tool_available,
            }
            after = state.info.pop("after_unknown", None)
            if after is not None:
                md["after_hallucinated_tool"] = after
            if called_as is not None:
                md["called_as"] = called_as
            self._call_event(handle, "tool_call_started", md, created, context)
            if retry_md is not None:
                self._call_event(handle, "tool_call_retry", retry_md, created)
                handle.early = [*(handle.early or ()), ("tool_call_retry", retry_md)]
        return handle

    def _retry_md(self, handle: CallHandle, original: int, reason: str) -> dict[str, Any]:
        return {
            "tool_name": handle.tool_name, "tool_params": handle.params, "params_hash": handle.params_hash,
            "original_call_sequence": original, "retry_attempt": handle.retry_attempt, "retry_reason": reason,
            "call_sequence": handle.sequence,
        }

    def _call_event(self, handle: CallHandle, name: str, md: dict[str, Any], created_us: int | None = None,
                    context: dict[str, Any] | None = None) -> None:
        """Emit one of a call's events, or hold it while the call's retry status is undecided."""
        created = created_us if created_us is not None else now_us()
        if handle.held is not None:
            handle.held.append((name, md, created, context))
        else:
            self._emit(name, handle.user_id, handle.state.session_id, handle.mcp_name, md, created, context,
                       size=handle.payload_bytes)

    def _release(self, handle: CallHandle, retried: tuple[int, int] | None) -> dict[str, Any] | None:
        """A held call's events, now that its result decided: with ``tool_call_retry`` after its
        ``tool_call_started`` when it was a retry. Returns the retry's metadata, if any."""
        held, handle.held = handle.held, None
        handle.deferred_retry = False  # decided: a later end (observe mode, after a refusal) decides nothing
        retry_md = None
        if retried is not None:
            handle.is_retry = True
            handle.retry_attempt, original = retried
            retry_md = self._retry_md(handle, original, "repeated_after_success")
        for name, md, created, context in held or ():
            if name == "tool_call_started":
                md["is_retry"], md["retry_attempt"] = handle.is_retry, handle.retry_attempt
            self._emit(name, handle.user_id, handle.state.session_id, handle.mcp_name, md, created, context,
                       size=handle.payload_bytes)
            if name == "tool_call_started" and retry_md is not None:
                self._emit("tool_call_retry", handle.user_id, handle.state.session_id, handle.mcp_name, retry_md,
                           created, size=handle.payload_bytes)
        return retry_md

    def schema_error(self, handle: CallHandle, errors: list[dict[str, Any]], schema_version: str | None, *,
                     enforced: bool, source: str = "mcp-tracking") -> dict[str, Any]:
        """``schema_validation_error`` for a started call (before it runs, or once the framework refused it)."""
        md: dict[str, Any] = {
            "tool_name": handle.tool_name, "tool_params": handle.params, "validation_errors": errors,
            "call_sequence": handle.sequence, "enforced": enforced, "detected_by": source,
        }
        if schema_version is not None:
            md["schema_version"] = schema_version
        with self.lock:
            self.state.note(handle.state, "schema_validation_error", md)
            self._call_event(handle, "schema_validation_error", md)
        return md

    def refuse(self, handle: CallHandle) -> dict[str, Any] | None:
        """The call was refused on its arguments: its ``schema_validation_error`` is its terminal event.
        An identical repeat is a retry (``validation_failed``); a switch after it is not a wrong-tool error."""
        if handle.finished:
            return None
        handle.finished = handle.refused = True
        with self.lock:
            retried = self.state.end(handle.state, handle.tool_name, handle.params_hash, handle.sequence, REFUSED,
                                     error_type="validation_error", deferred=handle.deferred_retry)
            return self._release(handle, retried)

    def complete(self, handle: CallHandle, *, elapsed_ms: float, result_size: int | None = None,
                 fingerprint: str | None = None, context: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``tool_call_completed``; returns the retry metadata when the call turned out a retry."""
        if handle.finished and not handle.refused:
            return None
        handle.finished = True
        md: dict[str, Any] = {
            "tool_name": handle.tool_name, "tool_params": handle.params, "success": True,
            "execution_time_ms": elapsed_ms, "call_sequence": handle.sequence, "params_hash": handle.params_hash,
        }
        if result_size is not None:
            md["result_size"] = result_size
        with self.lock:
            retried = self.state.end(handle.state, handle.tool_name, handle.params_hash, handle.sequence,
                                     "succeeded", fingerprint=fingerprint, deferred=handle.deferred_retry)
            retry_md = self._release(handle, retried)
            self._emit("tool_call_completed", handle.user_id, handle.state.session_id, handle.mcp_name, md, None,
                       context)
            return retry_md

    def fail(self, handle: CallHandle, error_type: str, message: str | None, *, elapsed_ms: float = 0.0,
             retry_eligible: bool = True, **extra: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``tool_call_failed``; returns its metadata and the retry metadata when the call was a retry."""
        md: dict[str, Any] = {
            "tool_name": handle.tool_name, "tool_params": handle.params, "error_type": error_type,
            "error_message": message, "execution_time_ms": elapsed_ms, "call_sequence": handle.sequence,
            "retry_eligible": retry_eligible, "params_hash": handle.params_hash, **extra,
        }
        if handle.finished and not handle.refused:
            return md, None
        handle.finished = True
        with self.lock:
            retried = self.state.end(handle.state, handle.tool_name, handle.params_hash, handle.sequence,
                                     failure_reason(error_type), error_type=error_type,
                                     deferred=handle.deferred_retry)
            retry_md = self._release(handle, retried)
            self._emit("tool_call_failed", handle.user_id, handle.state.session_id, handle.mcp_name, md)
        return md, retry_md

    def answer(self, handle: CallHandle, complete: bool, md: dict[str, Any]) -> None:
        """``answer_complete`` / ``answer_incomplete`` for a call's result."""
        name = "answer_complete" if complete else "answer_incomplete"
        with self.lock:
            self.state.note(handle.state, name, md)
            self._emit(name, handle.user_id, handle.state.session_id, handle.mcp_name, md)

    # -- the SDK helpers' open calls: pair a completion with its start ------------------------------

    def open_call(self, handle: CallHandle) -> None:
        """Remember a call started through the SDK helpers until its completion is reported."""
        calls = handle.state.info.setdefault("open", {})
        calls[handle.sequence] = handle
        while len(calls) > MAX_OPEN_CALLS:
            calls.pop(next(iter(calls)))

    def find_open(self, session_id: str, tool: str, phash: str, *, refused_too: bool = True) -> CallHandle | None:
        """The latest open helper call of ``tool`` in a session, the same arguments preferred."""
        state = self.sessions.get(session_id)
        calls: dict[int, CallHandle] = state.info.get("open", {}) if state is not None else {}
        fallback = None
        for handle in reversed(list(calls.values())):
            if handle.tool_name != tool or (handle.refused and not refused_too):
                continue
            if handle.params_hash == phash:
                return handle
            fallback = fallback or handle
        return fallback

    def close_open(self, handle: CallHandle) -> None:
        handle.state.info.get("open", {}).pop(handle.sequence, None)

