"""Where per-session call state lives: this process (the default) or a store shared by replicas.

Every check on a tool call (its sequence number, whether it repeats an earlier call, whether it follows a
failure of another tool) reads and updates a little state of its session. One process keeps it in
memory (:class:`LocalState`, over :class:`~mcp_tracking.core.sessions.SessionState`). Several replicas
behind a load balancer, where one agent's consecutive calls land anywhere, share it through
:class:`~mcp_tracking.core.redis_state.RedisState`, which makes each step one atomic script.

The interface is four steps, each atomic for its session:

* :meth:`StateBackend.begin` — a call starts: next sequence, retry / repeat-of-success / wrong-tool facts.
* :meth:`StateBackend.end` — a call ended: its outcome; a repeat of a success resolves to retry or polling.
* :meth:`StateBackend.note` — a counted event (schema error, hallucination, answer completeness, outcome).
* :meth:`StateBackend.claim_start` / :meth:`StateBackend.claim_end` — who writes ``session_start`` and the
  session's end, once per session across every replica.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from mcp_tracking.core.sessions import CallHistory, SessionState


class CallStart(NamedTuple):
    """What is known when a call starts."""

    sequence: int
    previous_tool: str | None
    #: (retry_attempt, original_call_sequence, retry_reason) when this call repeats an unsuccessful one
    retry: tuple[int, int, str] | None
    #: the call repeats a success: a retry only if it fails or returns the same result (see ``end``)
    deferred: bool
    #: (tool, params, sequence, error_type) of the session's previous call when it failed on another tool
    wrong_after: tuple[str, Any, int, str | None] | None
    #: first sight of the session anywhere: this process writes its ``session_start``
    new_session: bool


class StateBackend(Protocol):
    """Per-session call state. Local methods run under the session store's lock."""

    shared: bool

    def begin(self, state: SessionState, tool: str, phash: str, params: Any, polling: bool,
              claim: bool = True) -> CallStart:
        """A call starts; with ``claim``, also claim the session's ``session_start`` (``new_session``)."""
        ...

    def end(self, state: SessionState, tool: str, phash: str, seq: int | None, outcome: str, *,
            error_type: str | None = None, params: Any = None, fingerprint: str | None = None,
            deferred: bool = False) -> tuple[int, int] | None:
        """Record the outcome; for a deferred repeat, ``(retry_attempt, original_sequence)`` if it was a retry."""
        ...

    def count_repeat(self, state: SessionState, tool: str, phash: str) -> tuple[int, int]:
        """Count a repeat of a success as a retry now (no result to compare): ``(attempt, original_sequence)``."""
        ...

    def note(self, state: SessionState, name: str, metadata: dict[str, Any]) -> None: ...

    def claim_start(self, state: SessionState) -> bool: ...

    def claim_end(self, state: SessionState, reason: str, idle_timeout: float) -> bool: ...


_tuple_new = tuple.__new__

#: the outcome of a call refused on its arguments: its ``schema_validation_error`` ended it. Not a failure
#: (no ``tool_call_failed``, no wrong-tool switch after it), but an identical repeat is a retry.
REFUSED = "refused"

_FAILURE_REASON = {
    "validation_error": "validation_failed",
    "unknown_tool": "unknown_tool",
    "timeout": "timeout",
    "cancelled": "cancelled",
}


def failure_reason(error_type: str | None) -> str:
    """``tool_call_retry.retry_reason`` for an earlier call that failed with ``error_type``."""
    return _FAILURE_REASON.get(error_type or "", "execution_failed")


def retry_reason(last_outcome: str) -> str:
    """``tool_call_retry.retry_reason`` from the earlier identical call's outcome."""
    if last_outcome == "pending":
        return "duplicate_in_flight"
    return "validation_failed" if last_outcome == REFUSED else last_outcome


class LocalState:
    """The default: state in this process's memory (the session store bounds and expires it)."""

    shared = False

    def begin(self, state: SessionState, tool: str, phash: str, params: Any, polling: bool,
              claim: bool = True) -> CallStart:
        last = state.last_call  # before this call replaces it
        seq = state.sequence + 1
        entry, before = state.call_started(tool, params, phash, seq)
        retry = None
        deferred = False
        if entry is not None and before is not None and not polling and not entry.volatile:
            if before == "succeeded":
                deferred = True
            else:
                entry.retries += 1
                state.retries += 1
                retry = (entry.retries, entry.first_sequence, retry_reason(before))
        wrong = None
        previous = None
        if last is not None:
            previous = last.tool_name
            if last.failed and previous != tool:
                wrong = (previous, last.tool_params, last.sequence, last.error_type)
        new_session = claim and self.claim_start(state)
        return _tuple_new(CallStart, (seq, previous, retry, deferred, wrong, new_session))  # no Python frame

    def end(self, state: SessionState, tool: str, phash: str, seq: int | None, outcome: str, *,
            error_type: str | None = None, params: Any = None, fingerprint: str | None = None,
            deferred: bool = False) -> tuple[int, int] | None:
        retried = None
        if deferred:
            entry = state.history.get((tool, phash))
            if entry is not None:
                retried = resolve_repeat(entry, fingerprint)
                if retried is not None:
                    state.retries += 1
        state.call_finished(tool, phash, seq, outcome=outcome, error_type=error_type, params=params,
                            fingerprint=fingerprint)
        return retried

    def count_repeat(self, state: SessionState, tool: str, phash: str) -> tuple[int, int]:
        entry = state.history.get((tool, phash))
        state.retries += 1
        if entry is None:
            return 1, state.sequence
        entry.retries += 1
        return entry.retries, entry.first_sequence

    def note(self, state: SessionState, name: str, metadata: dict[str, Any]) -> None:
        note_locally(state, name, metadata)

    def claim_start(self, state: SessionState) -> bool:
        if state.info.get("started"):
            return False
        state.info["started"] = True
        return True

    def claim_end(self, state: SessionState, reason: str, idle_timeout: float) -> bool:
        return True


def resolve_repeat(entry: CallHistory, fingerprint: str | None) -> tuple[int, int] | None:
    """A repeat of a success: a retry (attempt, original sequence) unless its result changed (polling)."""
    if fingerprint is not None and entry.result_fingerprint is not None and fingerprint != entry.result_fingerprint:
        entry.volatile = True  # the answer changed: the agent is polling, not retrying
        return None
    entry.retries += 1
    return entry.retries, entry.first_sequence


def note_locally(state: SessionState, name: str, metadata: dict[str, Any]) -> None:
    """The session counters an event moves (besides the calls themselves)."""
    if name == "tool_call_retry":
        state.retries += 1
    elif name == "schema_validation_error":
        state.schema_errors += 1
    elif name == "hallucinated_tool_call":
        state.hallucinations += 1
    elif name in ("answer_complete", "answer_incomplete"):
        state.last_answer_complete = name == "answer_complete"
    elif name in ("session_completed", "session_failed", "session_abandoned"):
        state.outcome = name
    elif name == "task_completed":
        state.task_reported = metadata.get("success") is not False
