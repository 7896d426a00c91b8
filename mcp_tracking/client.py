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

from mcp_tracking._logging import warn_limited
from mcp_tracking.core.identity import Binding, current_binding, mint
from mcp_tracking.core.manifest import suggest
from mcp_tracking.core.sessions import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, SessionStore
from mcp_tracking.core.state import LocalState, StateBackend
from mcp_tracking.core.tracker import Tracker
from mcp_tracking.emit.emitter import EVENT_OVERHEAD, Emitter, EmitterStats
from mcp_tracking.emit.emitter import _close_all as _close_all_emitters
from mcp_tracking.emit.processors import Processor, default_processors
from mcp_tracking.emit.shutdown import install_sigterm_handler, register_drainer
from mcp_tracking.emit.writer import WriterSpec
from mcp_tracking.events import EventName, EventRecord
from mcp_tracking.sinks import sink_from_url
from mcp_tracking.sinks.base import QueryableSink, Respawnable, Sink

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
        max_queue_size / max_queue_bytes / batch_size / flush_interval / retry_timeout / spool_dir / spool_after: the
            emitter's bounds and its disk spool for store outages (see :class:`~mcp_tracking.emit.emitter.Emitter`).
        shared_state: where per-session call state lives: this process (default), or a ``redis://`` URL
            or :class:`~mcp_tracking.core.redis_state.RedisState` shared by every replica of the server, so
            sequence numbers, retries and wrong-tool switches stay right behind a load balancer (default:
            ``MCP_TRACKING_SHARED_STATE`` when set).
        release: the server's version or release tag, stamped on every ``session_start`` as ``release`` (default:
            ``MCP_TRACKING_RELEASE``); ``mcp-tracking compare --before-release A --after-release B`` compares them.
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
        max_queue_bytes: int | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        retry_timeout: float | None = None,
        spool_dir: str | os.PathLike[str] | bool | None = None,
        spool_after: float | None = None,
        handle_sigterm: bool = True,
        shared_state: StateBackend | str | None = None,
        release: str | None = None,
        writer: str | None = None,
    ) -> None:
        self.sink: Sink = sink if isinstance(sink, Sink) else sink_from_url(sink)
        self.keys_only = keys_only  # no argument value stored anywhere (validation messages included)
        emitter_opts: dict[str, Any] = {}
        if max_queue_size is not None:
            emitter_opts["max_queue_size"] = max_queue_size
        if max_queue_bytes is not None:
            emitter_opts["max_queue_bytes"] = max_queue_bytes
        if batch_size is not None:
            emitter_opts["batch_size"] = batch_size
        if flush_interval is not None:
            emitter_opts["flush_interval"] = flush_interval
        if retry_timeout is not None:
            emitter_opts["retry_timeout"] = retry_timeout
        if spool_after is not None:
            emitter_opts["spool_after"] = spool_after
        spec = _writer_spec(self.sink, writer, redact=redact, keys_only=keys_only, custom=bool(processors))
        self.emitter = Emitter(
            self.sink, processors=default_processors(redact=redact, keys_only=keys_only, extra=processors),
            spool_dir=spool_dir, writer=spec, **emitter_opts,
        )
        if shared_state is None:
            shared_state = os.environ.get("MCP_TRACKING_SHARED_STATE") or None
        state = _state_backend(shared_state, idle_timeout)
        # the params-hash key: MCP_TRACKING_HASH_KEY, else one shared through the state backend (replicas
        # must hash alike to recognise each other's retries), else random per process
        hash_key = None
        if state.shared and not os.environ.get("MCP_TRACKING_HASH_KEY"):
            hash_key = state.shared_hash_key()  # type: ignore[attr-defined]
        #: the one door: sessions, call state and every event decision
        self.tracker = Tracker(self._emit, mcp_name=mcp_name, state=state, idle_timeout=idle_timeout,
                               max_sessions=max_sessions, polling_tools=polling_tools, hash_key=hash_key)
        self.tracker.release = release or os.environ.get("MCP_TRACKING_RELEASE") or None
        self._default_session: str | None = None
        self._default_touched = 0.0
        self.emitter.add_tick(self.tracker.expire)
        self._closed = False
        _LIVE_CLIENTS.add(self)
        if handle_sigterm:
            install_sigterm_handler()

    def __repr__(self) -> str:
        return f"AnalyticsClient(sink={self.sink!r}, mcp_name={self.mcp_name!r})"

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while it runs; ``None`` when the worker thread writes."""
        return self.emitter.writer_pid

    # the tracker's parts, as attributes of the client (for hosts and tests that read them)
    @property
    def mcp_name(self) -> str | None:
        return self.tracker.mcp_name

    @mcp_name.setter
    def mcp_name(self, value: str | None) -> None:
        self.tracker.mcp_name = value

    @property
    def sessions(self) -> SessionStore:
        return self.tracker.sessions

    @property
    def state(self) -> StateBackend:
        return self.tracker.state

    @property
    def polling_tools(self) -> frozenset[str]:
        return self.tracker.polling_tools

    @property
    def hash_key(self) -> bytes | None:
        return self.tracker.hash_key

    # -- queueing ---------------------------------------------------------------------------------

    def _emit(self, name: str, user_id: str, session_id: str | None, mcp_name: str | None,
              metadata: dict[str, Any], created_us: int | None = None,
              context: dict[str, Any] | None = None, size: int = 0) -> bool:
        """The tracker's ``emit``: queue one event (built on the worker unless it carries call context)."""
        ts = created_us if created_us is not None else time.time_ns() // 1000
        if context is None:
            return self.emitter.emit((name, user_id, session_id, mcp_name, metadata, ts, size + EVENT_OVERHEAD))
        record = EventRecord(name, user_id, session_id, mcp_name, metadata, ts_us=ts)
        record.call_context = context
        record.queued_bytes = size + EVENT_OVERHEAD
        return self.emitter.emit(record)

    # -- the design's track(): any event -----------------------------------------------------------

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
            return self.tracker.track(name, _user(user_id), None if session_id is None else str(session_id),
                                      mcp_name, md)
        except Exception:
            warn_limited("track", "mcp_tracking: track() failed for %r", event_name, exc_info=True)
            return False

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
        sessions = self.tracker.sessions
        now = sessions.clock()
        sid = self._default_session
        if sid is not None:
            state = sessions.get(sid)
            last = max(self._default_touched, state.last_activity if state is not None else 0.0)
            if now - last <= sessions.idle_timeout:
                self._default_touched = now
                return sid
        self._default_session, self._default_touched = mint("sess"), now
        return self._default_session

    def _sid(self, session_id: str | None) -> str:
        return str(session_id) if session_id is not None else self.get_current_session_id()

    def get_session_tool_call_count(self, session_id: str | None) -> int:
        """Tool calls started in the session so far (from memory: O(1))."""
        if session_id is None:
            return 0
        state = self.tracker.sessions.get(str(session_id))
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
            warn_limited("read", "mcp_tracking: could not read session events from %r", sink, exc_info=True)
            return []

    def start_session(self, user_id: str | None = None, session_id: str | None = None,
                      mcp_name: str | None = None, **metadata: Any) -> str:
        """Emit ``session_start`` (once per session) and return the session id."""
        sid = str(session_id) if session_id is not None else mint("sess")
        try:
            self.tracker.start_session(sid, _user(user_id), mcp_name,
                                       {"session_source": "explicit", "user_source": "explicit", **metadata})
        except Exception:
            warn_limited("start_session", "mcp_tracking: start_session failed", exc_info=True)
        return sid

    def end_session(self, session_id: str | None = None, reason: str = "explicit") -> bool:
        """End a session now: its outcome (unless already given) and ``session_end``."""
        try:
            return self.tracker.end_session(self._sid(session_id), reason)
        except Exception:
            warn_limited("end_session", "mcp_tracking: end_session failed", exc_info=True)
            return False

    def _session_outcome(self, name: str, user_id: str | None, session_id: str | None, reason: str,
                         success: bool | None, mcp_name: str | None, extra: Mapping[str, Any]) -> bool:
        try:
            return self.tracker.session_outcome(name, self._sid(session_id), _user(user_id), mcp_name, reason,
                                                success, extra)
        except Exception:
            warn_limited("outcome", "mcp_tracking: %s failed", name, exc_info=True)
            return False

    def track_session_completed(self, user_id: str | None, session_id: str | None = None,
                                completion_reason: str = "task_finished", mcp_name: str | None = None,
                                success: bool | None = None, **metadata: Any) -> bool:
        """``session_completed`` with the session's stats, computed from memory.

        ``success`` defaults to the session's final outcome: ``False`` when its last tool call failed or was
        refused.
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
        return self.track(user_id, "task_completed", {"success": success, "completion_reason": completion_reason,
                                                      "source": source, **metadata}, self._sid(session_id),
                          mcp_name)

    # -- tool calls (the design's helper methods, through the same tracker as the interceptors) ----

    def track_tool_call_started(
        self,
        user_id: str | None,
        tool_name: str,
        tool_params: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        mcp_name: str | None = None,
        mcp_tools_manifest: Sequence[str] | None = None,
    ) -> bool:
        """``tool_call_started`` (sequence, retry and previous tool from memory), then ``tool_call_retry`` for a
        repeat; or, for a name not in ``mcp_tools_manifest``, ``hallucinated_tool_call`` alone (with a
        suggestion) and ``False``, as the design does. Else whether the event was queued."""
        try:
            sid, user = self._sid(session_id), _user(user_id)
            params = _params(tool_params)
            if mcp_tools_manifest is not None and tool_name not in mcp_tools_manifest:
                manifest = [str(n) for n in mcp_tools_manifest]
                found = [(s.name, s.score) for s in suggest(tool_name, manifest)]
                self.tracker.hallucinated(sid, user, mcp_name, str(tool_name), params, manifest, found)
                return False
            # the design's helpers leave session_start to the server (track() or start_session())
            handle = self.tracker.begin_call(sid, user, mcp_name, str(tool_name), params, hold_repeats=False)
            self.tracker.open_call(handle)
            return True
        except Exception:
            warn_limited("track_tool_call_started", "mcp_tracking: track_tool_call_started failed", exc_info=True)
            return False

    def _open(self, sid: str, user: str, mcp_name: str | None, tool_name: str, params: Any,
              *, refused_too: bool = True) -> Any:
        """The helper call this report belongs to; one started now if the host never reported its start."""
        handle = self.tracker.find_open(sid, tool_name, self.tracker.hash(params), refused_too=refused_too)
        if handle is None:
            handle = self.tracker.begin_call(sid, user, mcp_name, tool_name, params, hold_repeats=False)
            self.tracker.open_call(handle)
        return handle

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
        """``tool_call_completed``, or ``tool_call_failed`` when ``success`` is false (the design's existing
        method). Pairs with the call's ``track_tool_call_started``; a call never reported as started is
        started now, so every completion has its start."""
        if not success:
            error_type = metadata.pop("error_type", "tool_error")
            return self.track_tool_call_failed(user_id, tool_name, tool_params, error_type,
                                               metadata.pop("error_message", None), execution_time_ms, session_id,
                                               mcp_name, **metadata)
        try:
            sid, user = self._sid(session_id), _user(user_id)
            params = _params(tool_params)
            handle = self._open(sid, user, mcp_name, str(tool_name), params)
            self.tracker.close_open(handle)
            self.tracker.complete(handle, elapsed_ms=_ms(execution_time_ms, handle.started), **_sized(metadata))
            return True
        except Exception:
            warn_limited("track_tool_usage", "mcp_tracking: track_tool_usage failed", exc_info=True)
            return False

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
        """``tool_call_failed`` for the call's ``track_tool_call_started``."""
        try:
            sid, user = self._sid(session_id), _user(user_id)
            params = _params(tool_params)
            handle = self._open(sid, user, mcp_name, str(tool_name), params)
            self.tracker.close_open(handle)
            self.tracker.fail(handle, error_type, None if error_message is None else str(error_message),
                              elapsed_ms=_ms(execution_time_ms, handle.started),
                              retry_eligible=True if retry_eligible is None else retry_eligible, **metadata)
            return True
        except Exception:
            warn_limited("track_tool_call_failed", "mcp_tracking: track_tool_call_failed failed", exc_info=True)
            return False

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
        """``schema_validation_error`` for the call's ``track_tool_call_started``: the design's middleware
        refuses the call here, so this is the call's terminal event (a later ``track_tool_usage`` for the same
        call says it ran after all, as in observe mode)."""
        try:
            sid, user = self._sid(session_id), _user(user_id)
            params = _params(tool_params)
            handle = self._open(sid, user, mcp_name, str(tool_name), params, refused_too=False)
            errors = [dict(e) for e in (validation_errors or [])]
            md = self.tracker.schema_error(handle, errors, schema_version,
                                           enforced=bool(metadata.pop("enforced", True)),
                                           source=str(metadata.pop("detected_by", "mcp-tracking")))
            md.update(metadata)
            self.tracker.refuse(handle)
            return True
        except Exception:
            warn_limited("track_schema_validation_error", "mcp_tracking: track_schema_validation_error failed",
                      exc_info=True)
            return False

    def track_tool_call_retry(self, user_id: str | None, tool_name: str, tool_params: Mapping[str, Any] | None = None,
                              original_call_sequence: int | None = None, retry_attempt: int = 1,
                              retry_reason: str = "execution_failed", session_id: str | None = None,
                              mcp_name: str | None = None) -> bool:
        """``tool_call_retry`` given explicitly (the tracker detects retries itself: prefer
        ``track_tool_call_started``)."""
        sid = self._sid(session_id)
        return self.track(user_id, "tool_call_retry", {
            "tool_name": tool_name, "tool_params": tool_params if tool_params is not None else {},
            "params_hash": self.tracker.hash(tool_params), "original_call_sequence": original_call_sequence,
            "retry_attempt": retry_attempt, "retry_reason": retry_reason,
            "call_sequence": self.get_session_tool_call_count(sid),
        }, sid, mcp_name)

    def track_wrong_tool(self, user_id: str | None, first_tool_name: str, second_tool_name: str,
                         first_tool_params: Any = None, second_tool_params: Any = None,
                         detection_pattern: str = "retry_with_different_tool",
                         call_sequence: Sequence[int] | None = None, session_id: str | None = None,
                         mcp_name: str | None = None) -> bool:
        """``wrong_tool_error`` given explicitly (the tracker detects switches itself)."""
        return self.track(user_id, "wrong_tool_error", {
            "first_tool_name": first_tool_name, "second_tool_name": second_tool_name,
            "first_tool_params": first_tool_params, "second_tool_params": second_tool_params,
            "detection_pattern": detection_pattern, "call_sequence": list(call_sequence or []),
        }, self._sid(session_id), mcp_name)

    def track_answer_completeness(self, user_id: str | None, complete: bool, completeness_score: float | None = None,
                                  checks_passed: Sequence[str] = (), checks_failed: Sequence[str] = (),
                                  tool_name: str | None = None, result_count: int | None = None,
                                  detection_method: str = "explicit_signal", session_id: str | None = None,
                                  mcp_name: str | None = None, call_sequence: int | None = None) -> bool:
        """``answer_complete`` / ``answer_incomplete`` (for the session's latest call unless ``call_sequence``)."""
        sid = self._sid(session_id)
        return self.track(user_id, "answer_complete" if complete else "answer_incomplete", {
            "completeness_score": completeness_score, "detection_method": detection_method,
            "checks_passed": list(checks_passed), "checks_failed": list(checks_failed), "tool_name": tool_name,
            "result_count": result_count,
            "call_sequence": call_sequence if call_sequence is not None else self.get_session_tool_call_count(sid),
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
                self.tracker.end_all("shutdown")
            except Exception:
                warn_limited("close", "mcp_tracking: ending sessions at close failed", exc_info=True)
        drained = self.emitter.close(timeout)
        close_state = getattr(self.state, "close", None)
        if close_state is not None:
            close_state()
        return drained

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> EmitterStats:
        """The emitter's counters: accepted, written, dropped, failed writes, queue depth, ..."""
        return self.emitter.stats

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = {**self.stats.as_dict(), "live_sessions": len(self.tracker.sessions)}
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


def _user(user_id: Any) -> str:
    return str(user_id) if user_id is not None else "anonymous"


def _params(tool_params: Any) -> Any:
    """A snapshot of the arguments as given (a mapping copied; anything else kept for the JSON-safe step)."""
    if tool_params is None:
        return {}
    return dict(tool_params) if isinstance(tool_params, Mapping) else tool_params


def _ms(given: float | None, started: float) -> float:
    """The execution time the host reported, else the time since the call's start was reported."""
    if given is not None:
        try:
            return float(given)
        except (TypeError, ValueError):
            pass
    return round((time.perf_counter() - started) * 1000.0, 3)


def _sized(metadata: dict[str, Any]) -> dict[str, Any]:
    size = metadata.get("result_size")
    return {"result_size": size} if type(size) is int else {}


def _state_backend(spec: StateBackend | str | None, idle_timeout: float) -> StateBackend:
    if spec is None:
        return LocalState()
    if isinstance(spec, str):
        if not spec.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"shared_state must be a redis:// URL or a state backend, not {spec!r}")
        from mcp_tracking.core.redis_state import RedisState  # lazy: optional extra

        return RedisState(spec, idle_timeout=idle_timeout)
    return spec


WRITERS = ("auto", "process", "thread")


def _writer_spec(sink: Sink, writer: str | None, *, redact: bool, keys_only: bool,
                 custom: bool) -> WriterSpec | None:
    """Whether a writer process writes (see :mod:`mcp_tracking.emit.writer`): ``writer`` or
    ``MCP_TRACKING_WRITER``. ``auto`` (the default) and ``process``: a process whenever the store can be opened
    again in one (``writer_spec()``: a SQLite or PostgreSQL store, not a subclass of yours, nor one whose
    ``write`` you replaced) and the processors are the built-in ones (one of yours lives in this process);
    ``thread``: never. Platforms without POSIX pipes write on the thread."""
    choice = (writer or os.environ.get("MCP_TRACKING_WRITER") or "auto").strip().lower()
    if choice not in WRITERS:
        raise ValueError(f"writer must be one of {', '.join(WRITERS)}, not {choice!r}")
    if choice == "thread" or custom or os.name != "posix":
        return None
    spec = sink.writer_spec() if isinstance(sink, Respawnable) else None
    if spec is None:
        return None
    kind, options = spec
    return WriterSpec(kind, options, redact=redact, keys_only=keys_only)
