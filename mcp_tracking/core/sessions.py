"""Per-session state kept in memory, so every check on the request path is O(1).

The design's helpers re-read every event of the session from the store on each call (quadratic, and a
store round trip on the hot path). Here each live session keeps its call sequence, its params-hash
history, its last call and its counters; sessions idle past ``idle_timeout`` or beyond ``max_sessions``
are ended and forgotten, so memory stays flat however many sessions pass through.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DEFAULT_IDLE_TIMEOUT = 30 * 60.0
DEFAULT_MAX_SESSIONS = 20_000
MAX_HISTORY_PER_SESSION = 256


@dataclass(slots=True)
class CallHistory:
    """What is known of earlier calls with one (tool, params hash) in a session."""

    first_sequence: int
    last_sequence: int
    last_outcome: str  # "pending", "succeeded", "refused", or a failure kind (execution_failed, timeout, ...)
    retries: int = 0
    result_fingerprint: str | None = None
    volatile: bool = False  # its result changed between identical calls: it is polled, not retried


@dataclass(slots=True)
class LastCall:
    tool_name: str
    tool_params: Any
    sequence: int
    failed: bool | None = None  # None while running; True when it ended in tool_call_failed
    error_type: str | None = None
    refused: bool = False  # refused on its arguments (ended at its schema_validation_error)


@dataclass(slots=True)
class SessionState:
    session_id: str
    user_id: str
    mcp_name: str | None
    started_wall: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started_mono: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    sequence: int = 0
    history: OrderedDict[tuple[str, str], CallHistory] = field(default_factory=OrderedDict)
    last_call: LastCall | None = None
    failed_calls: int = 0
    retries: int = 0
    schema_errors: int = 0
    hallucinations: int = 0
    completed_calls: int = 0
    last_answer_complete: bool | None = None
    outcome: str | None = None  # completed / failed / abandoned once emitted
    task_reported: bool | None = None  # explicit task outcome (track_task_completed)
    session_source: str | None = None
    user_source: str | None = None
    identity_key: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def call_started(self, tool: str, params: Any, phash: str, seq: int) -> tuple[CallHistory | None, str | None]:
        """A tool call began: sequence, params history and last call. Returns the history entry of an earlier
        identical call (now marked pending) and that call's outcome before it, or ``(None, None)``."""
        if seq > self.sequence:
            self.sequence = seq
        key = (tool, phash)
        entry = self.history.get(key)
        before = None
        if entry is None:  # a new key goes to the end; the oldest beyond the bound are forgotten
            history = self.history
            history[key] = CallHistory(seq, seq, "pending")
            if len(history) > MAX_HISTORY_PER_SESSION:
                history.popitem(last=False)
        else:
            before = entry.last_outcome
            entry.last_sequence = seq
            entry.last_outcome = "pending"
        self.last_call = LastCall(tool, params, seq)
        return entry, before

    def call_finished(self, tool: str, phash: str, seq: int | None, *, outcome: str, error_type: str | None = None,
                      params: Any = None, fingerprint: str | None = None) -> None:
        """A tool call ended: ``outcome`` is ``succeeded``, ``refused`` (refused on its arguments: not a
        failure, no counter) or a failure reason (execution_failed, ...). A refused call may still end again
        (observe mode: it ran after all)."""
        refused = outcome == "refused"
        failed = not refused and outcome != "succeeded"
        if failed:
            self.failed_calls += 1
        elif not refused:
            self.completed_calls += 1
        last = self.last_call
        if last is not None and (seq == last.sequence or (seq is None and last.tool_name == tool)):
            last.failed = failed
            last.error_type = error_type
            last.refused = refused
        elif last is None:
            self.last_call = LastCall(tool, params, seq or self.sequence, failed, error_type, refused)
        entry = self.history.get((tool, phash))
        if entry is not None:
            entry.last_outcome = outcome
            if outcome == "succeeded":
                entry.result_fingerprint = fingerprint

    def duration_ms(self) -> float:
        return round((time.monotonic() - self.started_mono) * 1000.0, 3)

    def final_call_succeeded(self) -> bool:
        last = self.last_call
        return last is not None and last.failed is False and not last.refused

    def stats(self) -> dict[str, Any]:
        """The design's session stats (``session_completed`` metadata)."""
        last = self.last_call
        if last is None:
            final = "none"
        elif last.failed or last.refused:
            final = "error"
        else:
            final = "tool_result"
        return {
            "steps_count": self.sequence,
            "total_duration_ms": self.duration_ms(),
            "failed_calls_count": self.failed_calls,
            "retry_count": self.retries,
            "schema_errors_count": self.schema_errors,
            "final_result_type": final,
        }


EndCallback = Callable[[SessionState, str], None]


class SessionStore:
    """Live sessions by id, least recently active first; thread-safe through :attr:`lock`.

    ``on_end(state, reason)`` is called (outside no lock guarantees; under :attr:`lock`) for each
    session that idles out or is evicted.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        on_end: EndCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_timeout <= 0 or max_sessions <= 0:
            raise ValueError("idle_timeout and max_sessions must be positive")
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.on_end = on_end
        self.clock = clock
        self.lock = threading.RLock()
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._by_identity: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> SessionState | None:
        return self._sessions.get(session_id)

    def get_or_create(self, session_id: str, user_id: str, mcp_name: str | None) -> tuple[SessionState, bool]:
        """The live state for ``session_id`` (touched), and whether it was just created. Call under :attr:`lock`."""
        state = self._sessions.get(session_id)
        now = self.clock()
        if state is not None:
            if now - state.last_activity > self.idle_timeout:
                self._end(state, "idle_timeout")
                state = None
            else:
                state.last_activity = now
                self._sessions.move_to_end(session_id)
                return state, False
        state = SessionState(session_id, user_id, mcp_name)
        state.last_activity = now
        self._sessions[session_id] = state
        while len(self._sessions) > self.max_sessions:
            _, oldest = next(iter(self._sessions.items()))
            self._end(oldest, "evicted")
        return state, True

    def session_for_identity(self, identity_key: str) -> str | None:
        """The live session of a caller identity, if it was active within the idle window."""
        sid = self._by_identity.get(identity_key)
        if sid is None:
            return None
        state = self._sessions.get(sid)
        if state is None or self.clock() - state.last_activity > self.idle_timeout:
            return None
        return sid

    def bind_identity(self, identity_key: str, session_id: str) -> None:
        self._by_identity[identity_key] = session_id
        state = self._sessions.get(session_id)
        if state is not None:
            state.identity_key = identity_key

    def end(self, session_id: str, reason: str) -> SessionState | None:
        with self.lock:
            state = self._sessions.get(session_id)
            if state is not None:
                self._end(state, reason)
            return state

    def _end(self, state: SessionState, reason: str) -> None:
        self._sessions.pop(state.session_id, None)
        if state.identity_key is not None and self._by_identity.get(state.identity_key) == state.session_id:
            del self._by_identity[state.identity_key]
        if self.on_end is not None:
            self.on_end(state, reason)

    def expire(self) -> int:
        """End every session idle past the timeout; returns how many."""
        n = 0
        with self.lock:
            now = self.clock()
            while self._sessions:
                _, oldest = next(iter(self._sessions.items()))
                if now - oldest.last_activity <= self.idle_timeout:
                    break
                self._end(oldest, "idle_timeout")
                n += 1
        return n

    def end_all(self, reason: str) -> int:
        with self.lock:
            states = list(self._sessions.values())
            for state in states:
                self._end(state, reason)
            return len(states)
