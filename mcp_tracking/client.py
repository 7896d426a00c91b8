"""``AnalyticsClient``: the design's SDK, drop-in.

Every call the design shows works verbatim (``track``, ``track_tool_usage``, ``track_tool_call_started``,
``track_tool_call_failed``, ``track_schema_validation_error``, ``track_session_completed``,
``get_session_events``, ``get_session_tool_call_count``, ``get_current_session_id``), plus the ones it
implies (session start/end/failed/abandoned, retry, wrong tool, task completed, answer completeness).

Unlike the design's sketch, nothing here re-reads the session's events on a call: each live session
keeps its sequence, params history and counters in memory (:mod:`mcp_tracking.core.sessions`), and
``track()`` only queues (:mod:`mcp_tracking.emit.emitter`). Calls return in microseconds and never
raise because a store is slow or down.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mcp_tracking._json import params_hash as _params_hash
from mcp_tracking._logging import warn_once
from mcp_tracking.core.identity import Binding, ConnectionIds, current_binding, mint
from mcp_tracking.core.manifest import suggest
from mcp_tracking.core.sessions import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, SessionState, SessionStore
from mcp_tracking.core.state import LocalState, StateBackend, failure_reason
from mcp_tracking.emit.emitter import Emitter, EmitterStats
from mcp_tracking.emit.emitter import _close_all as _close_all_emitters
from mcp_tracking.emit.processors import Processor, default_processors
from mcp_tracking.emit.shutdown import install_sigterm_handler, register_drainer
from mcp_tracking.events import EventName, EventRecord
from mcp_tracking.sinks import sink_from_url
from mcp_tracking.sinks.base import QueryableSink, Sink

E = EventName
class AnalyticsClient:
    """Queue events for a sink and keep per-session state.

    Args:
        sink: a :class:`~mcp_tracking.sinks.base.Sink`, a store URL (``sqlite:///x.db``, ``jsonl:///x.jsonl``,
            ``postgresql://...``, ``memory://``) or a path; ``None`` uses ``MCP_TRACKING_URL`` or
            ``sqlite:///mcp_tracking.db``.
        mcp_name: default ``mcp_name`` for events that do not give one.
        redact: replace values under secret-looking keys with ``[REDACTED]`` (default on).
        keys_only: store no parameter values at all, only keys and types.
        processors: extra per-event processors, run after JSON-safety and before redaction.
        idle_timeout: seconds of inactivity after which a session ends (default 30 min).
        max_sessions: live sessions kept in memory; the least recently active beyond it are ended.
        polling_tools: tools that are legitimately called again with the same arguments (never retries).
        max_queue_size / batch_size / flush_interval / retry_timeout / spool_dir / spool_after: the
            emitter's bounds and its disk spool for store outages (see :class:`~mcp_tracking.emit.emitter.Emitter`).
        shared_state: where per-session call state lives: this process (default), or a ``redis://`` URL
            or :class:`~mcp_tracking.core.redis_state.RedisState` shared by every replica of the server, so
            sequence numbers, retries and wrong-tool switches stay right behind a load balancer (default:
            ``MCP_TRACKING_SHARED_STATE`` when set).
        handle_sigterm: drain queued events on SIGTERM before the process ends (see
            :mod:`mcp_tracking.emit.shutdown`); installed once, from the main thread, chained to any handler
            already there.

    Example:
        analytics = AnalyticsClient("sqlite:///analytics.db", mcp_name="drea")
        analytics.track(user_id="user_123", event_name="session_start", session_id="s1")
        analytics.track_tool_usage(user_id="user_123", tool_name="list_models", tool_params={},
                                   success=True, execution_time_ms=12.5, session_id="s1")
        analytics.flush()
    """

    def __init__(
        self,
        sink: Sink | str | os.PathLike[str] | None = None,
        *,
        mcp_name: str | None = None,
        redact: bool = True,
        keys_only: bool = False,
        processors: Sequence[Processor] = (),
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        polling_tools: Sequence[str] = (),
        max_queue_size: int | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        retry_timeout: float | None = None,
        spool_dir: str | os.PathLike[str] | bool | None = None,
        spool_after: float | None = None,
        handle_sigterm: bool = True,
        shared_state: StateBackend | str | None = None,
    ) -> None:
        self.sink: Sink = sink if isinstance(sink, Sink) else sink_from_url(sink)
        self.mcp_name = mcp_name
        self.polling_tools = frozenset(polling_tools)
        emitter_opts: dict[str, Any] = {}
        if max_queue_size is not None:
            emitter_opts["max_queue_size"] = max_queue_size
        if batch_size is not None:
            emitter_opts["batch_size"] = batch_size
        if flush_interval is not None:
            emitter_opts["flush_interval"] = flush_interval
        if retry_timeout is not None:
            emitter_opts["retry_timeout"] = retry_timeout
        if spool_after is not None:
            emitter_opts["spool_after"] = spool_after
        self.emitter = Emitter(
            self.sink, processors=default_processors(redact=redact, keys_only=keys_only, extra=processors),
            spool_dir=spool_dir, **emitter_opts,
        )
        if shared_state is None:
            shared_state = os.environ.get("MCP_TRACKING_SHARED_STATE") or None
        self.state: StateBackend = _state_backend(shared_state, idle_timeout)
        #: the params-hash key: MCP_TRACKING_HASH_KEY, else one shared through the state backend (replicas
        #: must hash alike to recognise each other's retries), else random per process
        self.hash_key: bytes | None = None
        if self.state.shared and not os.environ.get("MCP_TRACKING_HASH_KEY"):
            self.hash_key = self.state.shared_hash_key()  # type: ignore[attr-defined]
        self.sessions = SessionStore(idle_timeout=idle_timeout, max_sessions=max_sessions, on_end=self._on_session_end)
        self.connections = ConnectionIds()  # shared by every adapter on this client
        self._default_session: str | None = None
        self._default_touched = 0.0
        self.emitter.add_tick(self.sessions.expire)
        self._closed = False
        _LIVE_CLIENTS.add(self)
        if handle_sigterm:
            install_sigterm_handler()

    def __repr__(self) -> str:
        return f"AnalyticsClient(sink={self.sink!r}, mcp_name={self.mcp_name!r})"

    # -- the core: queue one event and keep session state in step -------------------------------

    def track(
        self,
        user_id: str | None,
        event_name: str | EventName,
        metadata: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        mcp_name: str | None = None,
    ) -> bool:
        """Queue one event (any name; the design's names update session state). ``True`` if queued."""
        try:
            name = event_name.value if isinstance(event_name, EventName) else str(event_name)
            md = dict(metadata) if metadata is not None else {}
            user = str(user_id) if user_id is not None else "anonymous"
            mcp = mcp_name if mcp_name is not None else self.mcp_name
            if session_id is not None:
                with self.sessions.lock:
                    state, _ = self.sessions.get_or_create(str(session_id), user, mcp)
                    self._observe(state, name, md)
                    return self._emit(name, user, str(session_id), mcp, md)
            return self._emit(name, user, None, mcp, md)
        except Exception:
            warn_once("track", "mcp_tracking: track() failed for %r", event_name, exc_info=True)
            return False

    def _emit(self, name: str, user_id: str, session_id: str | None, mcp_name: Any,
              metadata: dict[str, Any], context: dict[str, Any] | None = None) -> bool:
        if mcp_name is not None and not isinstance(mcp_name, str):
            mcp_name = str(mcp_name)
        if context is None:  # the record is built on the worker
            return self.emitter.emit((name, user_id, session_id, mcp_name, metadata, time.time_ns() // 1000))
        record = EventRecord(name, user_id, session_id, mcp_name, metadata)
        record.call_context = context
        return self.emitter.emit(record)

    def _observe(self, state: SessionState, name: str, md: dict[str, Any]) -> None:
        """Update the session's state from an event passing through ``track()``."""
        if name == "tool_call_started":
            seq = md.get("call_sequence")
            seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else state.sequence + 1
            phash = md.get("params_hash") or self._hash(md.get("tool_params"))
            state.call_started(str(md.get("tool_name")), md.get("tool_params"), phash, seq)
        elif name in ("tool_call_completed", "tool_call_failed"):
            failed = name == "tool_call_failed" or md.get("success") is False
            error_type = md.get("error_type") if failed else None
            phash = md.get("params_hash") or self._hash(md.get("tool_params"))
            seq = md.get("call_sequence")
            self.state.end(state, str(md.get("tool_name")), phash, seq if isinstance(seq, int) else None,
                           failure_reason(error_type) if failed else "succeeded", error_type=error_type,
                           params=md.get("tool_params"))
        else:
            self.state.note(state, name, md)

    # -- sessions --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, session_id: str | None = None, user_id: str | None = None) -> Iterator[str]:
        """Bind a session (and user) to the tool calls made inside the block, across threads and tasks
        started within it. Yields the session id (minted when not given)."""
        sid = session_id or mint("sess")
        token = current_binding.set(Binding(sid, user_id))
        try:
            yield sid
        finally:
            current_binding.reset(token)

    def get_current_session_id(self) -> str:
        """The session bound with :meth:`session`, else this client's default session (renewed after
        ``idle_timeout`` of inactivity)."""
        bound = current_binding.get()
        if bound is not None and bound.session_id:
            return bound.session_id
        now = self.sessions.clock()
        sid = self._default_session
        if sid is not None:
            state = self.sessions.get(sid)
            last = max(self._default_touched, state.last_activity if state is not None else 0.0)
            if now - last <= self.sessions.idle_timeout:
                self._default_touched = now
                return sid
        self._default_session, self._default_touched = mint("sess"), now
        return self._default_session

    def get_session_tool_call_count(self, session_id: str | None) -> int:
        """Tool calls started in the session so far (from memory: O(1))."""
        if session_id is None:
            return 0
        state = self.sessions.get(str(session_id))
        return state.sequence if state is not None else 0

    def get_session_events(self, session_id: str | None, user_id: str | None = None,
                           timeout: float = 5.0) -> list[dict[str, Any]]:
        """Stored events of a session, oldest first (flushes first). Reads the store: not for hot paths."""
        if session_id is None:
            return []
        self.flush(timeout)
        sink = self.sink
        if not isinstance(sink, QueryableSink):
            return []
        try:
            return list(sink.iter_events(session_id=str(session_id), user_id=user_id))
        except Exception:
            warn_once("read", "mcp_tracking: could not read session events from %r", sink, exc_info=True)
            return []

    def start_session(self, user_id: str | None = None, session_id: str | None = None,
                      mcp_name: str | None = None, **metadata: Any) -> str:
        """Emit ``session_start`` (once per session) and return the session id."""
        sid = str(session_id) if session_id is not None else mint("sess")
        user = str(user_id) if user_id is not None else "anonymous"
        try:
            with self.sessions.lock:
                state, _ = self.sessions.get_or_create(sid, user, mcp_name or self.mcp_name)
                self._start_locked(state, {"session_source": "explicit", "user_source": "explicit", **metadata})
        except Exception:
            warn_once("start_session", "mcp_tracking: start_session failed", exc_info=True)
        return sid

    def _start_locked(self, state: SessionState, metadata: dict[str, Any], *, claimed: bool = False) -> None:
        """``session_start``, once per session (call under the session store's lock; ``claimed`` when the
        state backend already said this is the session's first sight)."""
        if not claimed and not self.state.claim_start(state):
            return
        state.session_source = metadata.get("session_source")
        state.user_source = metadata.get("user_source")
        self._emit("session_start", state.user_id, state.session_id, state.mcp_name, metadata)

    def end_session(self, session_id: str | None = None, reason: str = "explicit") -> bool:
        """End a session now: its outcome (unless already given) and ``session_end``."""
        sid = session_id or self.get_current_session_id()
        try:
            return self.sessions.end(str(sid), reason) is not None
        except Exception:
            warn_once("end_session", "mcp_tracking: end_session failed", exc_info=True)
            return False

    def _on_session_end(self, state: SessionState, reason: str) -> None:
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

    def _session_outcome(self, name: str, user_id: str | None, session_id: str | None, reason: str,
                         success: bool | None, mcp_name: str | None, extra: Mapping[str, Any]) -> bool:
        sid = str(session_id) if session_id is not None else self.get_current_session_id()
        user = str(user_id) if user_id is not None else "anonymous"
        try:
            with self.sessions.lock:
                state, _ = self.sessions.get_or_create(sid, user, mcp_name or self.mcp_name)
                if success is None:
                    success = name == "session_completed" and not (state.last_call is not None
                                                                   and state.last_call.failed)
                md = {"completion_reason": reason, "success": success, **state.stats(), **extra}
                self._observe(state, name, md)
                return self._emit(name, user, sid, mcp_name or state.mcp_name, md)
        except Exception:
            warn_once("outcome", "mcp_tracking: %s failed", name, exc_info=True)
            return False

    def track_session_completed(self, user_id: str | None, session_id: str | None = None,
                                completion_reason: str = "task_finished", mcp_name: str | None = None,
                                success: bool | None = None, **metadata: Any) -> bool:
        """``session_completed`` with the session's stats, computed from memory.

        ``success`` defaults to the session's final outcome: ``False`` when its last tool call failed.
        """
        return self._session_outcome("session_completed", user_id, session_id, completion_reason, success,
                                     mcp_name, metadata)

    def track_session_failed(self, user_id: str | None, session_id: str | None = None,
                             completion_reason: str = "task_failed", mcp_name: str | None = None,
                             **metadata: Any) -> bool:
        """``session_failed``: the host or agent says the task failed."""
        return self._session_outcome("session_failed", user_id, session_id, completion_reason, False, mcp_name,
                                     metadata)

    def track_session_abandoned(self, user_id: str | None, session_id: str | None = None,
                                completion_reason: str = "abandoned", mcp_name: str | None = None,
                                **metadata: Any) -> bool:
        """``session_abandoned``: the session ended without a completion."""
        return self._session_outcome("session_abandoned", user_id, session_id, completion_reason, False, mcp_name,
                                     metadata)

    def track_task_completed(self, user_id: str | None, session_id: str | None = None, success: bool = True,
                             completion_reason: str = "task_finished", mcp_name: str | None = None,
                             source: str = "client_api", **metadata: Any) -> bool:
        """``task_completed``: an explicit signal that the task is done (or failed, with ``success=False``)."""
        sid = session_id if session_id is not None else self.get_current_session_id()
        return self.track(user_id, "task_completed", {"success": success, "completion_reason": completion_reason,
                                                      "source": source, **metadata}, sid, mcp_name)

    # -- tool calls (the design's helper methods) --------------------------------------------------

    def _hash(self, params: Any) -> str:
        return _params_hash(params if params is not None else {}, self.hash_key)

    def track_tool_call_started(
        self,
        user_id: str | None,
        tool_name: str,
        tool_params: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        mcp_name: str | None = None,
        mcp_tools_manifest: Sequence[str] | None = None,
    ) -> bool:
        """``tool_call_started`` (with sequence, retry and previous tool from memory); ``tool_call_retry``
        for a repeat; ``hallucinated_tool_call`` with a suggestion when the name is not in the manifest.

        Returns ``False`` for a hallucinated tool (as the design does), else whether the event was queued.
        """
        try:
            sid = str(session_id) if session_id is not None else self.get_current_session_id()
            user = str(user_id) if user_id is not None else "anonymous"
            mcp = mcp_name if mcp_name is not None else self.mcp_name
            params = tool_params if tool_params is not None else {}
            phash = self._hash(params)
            known = mcp_tools_manifest is None or tool_name in mcp_tools_manifest
            with self.sessions.lock:
                state, _ = self.sessions.get_or_create(sid, user, mcp)
                # the design's helpers never wrote session_start themselves (its server does): claim=False
                start = self.state.begin(state, tool_name, phash, params, tool_name in self.polling_tools,
                                         claim=False)
                seq, previous = start.sequence, start.previous_tool
                is_retry, attempt = start.retry is not None or start.deferred, 0
                if is_retry:  # no result to compare here: a repeat of a success counts as a retry
                    if start.retry is not None:
                        attempt, original, reason = start.retry
                    else:
                        attempt, original, reason = self._count_repeat(state, tool_name, phash)
                    self._emit("tool_call_retry", user, sid, mcp, {
                        "tool_name": tool_name, "tool_params": params, "params_hash": phash,
                        "original_call_sequence": original, "retry_attempt": attempt, "retry_reason": reason,
                        "call_sequence": seq,
                    })
                if start.wrong_after is not None:
                    self._wrong_tool(state, user, mcp, start.wrong_after, tool_name, params, seq)
                self._emit("tool_call_started", user, sid, mcp, {
                    "tool_name": tool_name, "tool_params": params, "call_sequence": seq, "is_retry": is_retry,
                    "retry_attempt": attempt, "previous_tool_name": previous, "params_hash": phash,
                    "mcp_tool_available": known,
                })
                if not known:
                    manifest = list(mcp_tools_manifest or ())
                    found = suggest(tool_name, manifest)
                    self._track_locked(state, "hallucinated_tool_call", user, mcp, {
                        "requested_tool_name": tool_name, "tool_params": params, "available_tools": manifest,
                        "call_sequence": seq,
                        "similar_tool_suggested": found[0].name if found else None,
                        "similarity_score": found[0].score if found else None,
                        "suggestions": [s.name for s in found],
                    })
                    return False
            return True
        except Exception:
            warn_once("track_tool_call_started", "mcp_tracking: track_tool_call_started failed", exc_info=True)
            return False

    def _track_locked(self, state: SessionState, name: str, user: str, mcp: str | None, md: dict[str, Any]) -> bool:
        self._observe(state, name, md)
        return self._emit(name, user, state.session_id, mcp, md)

    def _count_repeat(self, state: SessionState, tool: str, phash: str) -> tuple[int, int, str]:
        """A repeat of a success reported through the design's helpers: counted as a retry at once."""
        attempt, original = self.state.count_repeat(state, tool, phash)
        return attempt, original, "repeated_after_success"

    def _wrong_tool(self, state: SessionState, user: str, mcp: str | None,
                    previous: tuple[str, Any, int, str | None], tool: str, params: Any, seq: int) -> dict[str, Any]:
        """``wrong_tool_error``: the session's last call failed and this one goes to another tool."""
        first_tool, first_params, first_seq, first_error = previous
        md = {
            "first_tool_name": first_tool, "second_tool_name": tool,
            "first_tool_params": first_params, "second_tool_params": params,
            "detection_pattern": "retry_with_different_tool", "call_sequence": [first_seq, seq],
            "first_error_type": first_error,
        }
        self._emit("wrong_tool_error", user, state.session_id, mcp, md)
        return md

    def track_tool_usage(
        self,
        user_id: str | None,
        tool_name: str,
        tool_params: Mapping[str, Any] | None = None,
        success: bool = True,
        execution_time_ms: float | None = None,
        session_id: str | None = None,
        mcp_name: str | None = None,
        **metadata: Any,
    ) -> bool:
        """``tool_call_completed``, or ``tool_call_failed`` when ``success`` is false (the design's existing method)."""
        if not success:
            error_type = metadata.pop("error_type", "tool_error")
            return self.track_tool_call_failed(user_id, tool_name, tool_params, error_type,
                                               metadata.pop("error_message", None), execution_time_ms, session_id,
                                               mcp_name, **metadata)
        sid = session_id if session_id is not None else self.get_current_session_id()
        return self.track(user_id, "tool_call_completed", {
            "tool_name": tool_name, "tool_params": tool_params if tool_params is not None else {}, "success": True,
            "execution_time_ms": execution_time_ms, "call_sequence": self.get_session_tool_call_count(sid) or None,
            **metadata,
        }, sid, mcp_name)

    def track_tool_call_failed(
        self,
        user_id: str | None,
        tool_name: str,
        tool_params: Mapping[str, Any] | None = None,
        error_type: str = "execution_error",
        error_message: str | None = None,
        execution_time_ms: float | None = None,
        session_id: str | None = None,
        mcp_name: str | None = None,
        retry_eligible: bool | None = None,
        **metadata: Any,
    ) -> bool:
        """``tool_call_failed``."""
        sid = session_id if session_id is not None else self.get_current_session_id()
        return self.track(user_id, "tool_call_failed", {
            "tool_name": tool_name, "tool_params": tool_params if tool_params is not None else {},
            "error_type": error_type, "error_message": None if error_message is None else str(error_message),
            "execution_time_ms": execution_time_ms, "call_sequence": self.get_session_tool_call_count(sid) or None,
            "retry_eligible": retry_eligible if retry_eligible is not None else error_type != "unknown_tool",
            **metadata,
        }, sid, mcp_name)

    def track_schema_validation_error(
        self,
        user_id: str | None,
        tool_name: str,
        tool_params: Mapping[str, Any] | None = None,
        validation_errors: Sequence[Mapping[str, Any]] | None = None,
        session_id: str | None = None,
        mcp_name: str | None = None,
        schema_version: str | None = None,
        **metadata: Any,
    ) -> bool:
        """``schema_validation_error``."""
        sid = session_id if session_id is not None else self.get_current_session_id()
        md: dict[str, Any] = {
            "tool_name": tool_name, "tool_params": tool_params if tool_params is not None else {},
            "validation_errors": [dict(e) for e in (validation_errors or [])],
            "call_sequence": self.get_session_tool_call_count(sid) or None, **metadata,
        }
        if schema_version is not None:
            md["schema_version"] = schema_version
        return self.track(user_id, "schema_validation_error", md, sid, mcp_name)

    def track_tool_call_retry(self, user_id: str | None, tool_name: str, tool_params: Mapping[str, Any] | None = None,
                              original_call_sequence: int | None = None, retry_attempt: int = 1,
                              retry_reason: str = "execution_failed", session_id: str | None = None,
                              mcp_name: str | None = None) -> bool:
        """``tool_call_retry`` given explicitly (the interceptors detect retries themselves)."""
        sid = session_id if session_id is not None else self.get_current_session_id()
        return self.track(user_id, "tool_call_retry", {
            "tool_name": tool_name, "tool_params": tool_params if tool_params is not None else {},
            "params_hash": self._hash(tool_params), "original_call_sequence": original_call_sequence,
            "retry_attempt": retry_attempt, "retry_reason": retry_reason,
            "call_sequence": self.get_session_tool_call_count(sid) + 1,
        }, sid, mcp_name)

    def track_wrong_tool(self, user_id: str | None, first_tool_name: str, second_tool_name: str,
                         first_tool_params: Any = None, second_tool_params: Any = None,
                         detection_pattern: str = "retry_with_different_tool",
                         call_sequence: Sequence[int] | None = None, session_id: str | None = None,
                         mcp_name: str | None = None) -> bool:
        """``wrong_tool_error`` given explicitly."""
        sid = session_id if session_id is not None else self.get_current_session_id()
        return self.track(user_id, "wrong_tool_error", {
            "first_tool_name": first_tool_name, "second_tool_name": second_tool_name,
            "first_tool_params": first_tool_params, "second_tool_params": second_tool_params,
            "detection_pattern": detection_pattern, "call_sequence": list(call_sequence or []),
        }, sid, mcp_name)

    def track_answer_completeness(self, user_id: str | None, complete: bool, completeness_score: float | None = None,
                                  checks_passed: Sequence[str] = (), checks_failed: Sequence[str] = (),
                                  tool_name: str | None = None, result_count: int | None = None,
                                  detection_method: str = "explicit_signal", session_id: str | None = None,
                                  mcp_name: str | None = None) -> bool:
        """``answer_complete`` / ``answer_incomplete``."""
        sid = session_id if session_id is not None else self.get_current_session_id()
        return self.track(user_id, "answer_complete" if complete else "answer_incomplete", {
            "completeness_score": completeness_score, "detection_method": detection_method,
            "checks_passed": list(checks_passed), "checks_failed": list(checks_failed), "tool_name": tool_name,
            "result_count": result_count,
        }, sid, mcp_name)

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write everything queued so far; ``True`` if it drained within ``timeout``."""
        return self.emitter.flush(timeout)

    def close(self, timeout: float | None = 10.0, *, end_sessions: bool = True) -> bool:
        """End live sessions (reason ``shutdown``), drain and close the sink. Idempotent."""
        if self._closed:
            return True
        self._closed = True
        if end_sessions:
            try:
                self.sessions.end_all("shutdown")
            except Exception:
                warn_once("close", "mcp_tracking: ending sessions at close failed", exc_info=True)
        drained = self.emitter.close(timeout)
        close_state = getattr(self.state, "close", None)
        if close_state is not None:
            close_state()
        return drained

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> EmitterStats:
        """The emitter's counters: accepted, written, dropped, failed writes, queue depth, ..."""
        return self.emitter.stats

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = {**self.stats.as_dict(), "live_sessions": len(self.sessions)}
        if self.state.shared:
            health["shared_state"] = repr(self.state)
            health["shared_state_fallbacks"] = getattr(self.state, "fallbacks", 0)
        return health


_LIVE_CLIENTS: weakref.WeakSet[AnalyticsClient] = weakref.WeakSet()


def _close_clients(timeout: float) -> None:
    """Exit or SIGTERM: end live sessions and drain every client, then any emitter used alone."""
    for client in list(_LIVE_CLIENTS):
        try:
            client.close(timeout)
        except Exception:
            pass
    _close_all_emitters(timeout)


register_drainer(_close_clients)


def _state_backend(spec: StateBackend | str | None, idle_timeout: float) -> StateBackend:
    if spec is None:
        return LocalState()
    if isinstance(spec, str):
        if not spec.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"shared_state must be a redis:// URL or a state backend, not {spec!r}")
        from mcp_tracking.core.redis_state import RedisState  # lazy: optional extra

        return RedisState(spec, idle_timeout=idle_timeout)
    return spec
