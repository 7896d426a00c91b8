"""The event vocabulary, written once.

Every event name of the design (``event-tracking-design.md``) is an :class:`EventName`; each has a
metadata model listing the fields the design gives it (plus the ones this package adds, marked
*added*). The models document the events and generate their JSON Schema (``mcp-tracking schema``);
the hot path builds plain dicts and never validates through pydantic.

Metadata models allow extra keys: the design's own snippets send ``{...}`` and servers add fields.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Version of the envelope and metadata layout below. Bumped when a field changes meaning.
#: The largest tool-arguments payload queued and stored as it is (JSON bytes); a larger one is kept as its
#: size (see ``mcp_tracking._json.stand_in``). ``CapSizes(max_payload_bytes=...)`` applies the same cap.
MAX_PAYLOAD_BYTES = 16_384
#: The longest string stored as it is; longer ones are cut and marked ``...[N more chars]``.
MAX_STRING_CHARS = 4096
#: The largest metadata a host's ``track()`` queues as it is; beyond it its largest values become stand-ins.
MAX_EVENT_BYTES = 65_536

#: The tool ``instrument(..., add_outcome_tool=True)`` adds: an agent reports its outcome through it (giving up
#: included), so it is never what an agent "meant" by another name.
OUTCOME_TOOL_NAME = "report_task_outcome"

SCHEMA_VERSION = 1


class EventName(str, Enum):
    """The design's event taxonomy. ``track()`` also accepts any other name (custom events)."""

    SESSION_START = "session_start"
    SESSION_END = "session_end"
    SESSION_COMPLETED = "session_completed"
    SESSION_FAILED = "session_failed"
    SESSION_ABANDONED = "session_abandoned"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    TOOL_CALL_RETRY = "tool_call_retry"
    HALLUCINATED_TOOL_CALL = "hallucinated_tool_call"
    SCHEMA_VALIDATION_ERROR = "schema_validation_error"
    WRONG_TOOL_ERROR = "wrong_tool_error"
    TASK_COMPLETED = "task_completed"
    ANSWER_COMPLETE = "answer_complete"
    ANSWER_INCOMPLETE = "answer_incomplete"

    def __str__(self) -> str:
        return self.value


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- sessions -------------------------------------------------------------------------------------


class SessionStartMetadata(_Metadata):
    """``session_start``: the first time a session is seen."""

    client_name: str | None = None
    client_version: str | None = None
    protocol_version: str | None = None
    transport: str | None = Field(None, description="stdio, streamable-http, in-process, ... when known")
    session_source: str | None = Field(
        None, description="Where the session id came from: explicit, transport, connection, identity, client"
    )
    user_source: str | None = Field(None, description="Where the user id came from: explicit, auth, anonymous")
    release: str | None = Field(None, description="The server's release (AnalyticsClient(release=...), "
                                "instrument(..., release=...) or MCP_TRACKING_RELEASE), when set")


class SessionEndMetadata(_Metadata):
    """``session_end``: the connection closed, the session idled out, or the process shut down."""

    end_reason: str | None = Field(None, description="connection_closed, idle_timeout, shutdown, explicit")
    steps_count: int | None = None
    total_duration_ms: float | None = None


class SessionOutcomeMetadata(_Metadata):
    """``session_completed`` / ``session_failed`` / ``session_abandoned``: the session's stats and outcome.

    ``success`` is the session's *final* outcome (its last tool call succeeded and the task was not
    reported failed), not the design's simplification "no call ever failed", which would make the
    recovery rate always 0.
    """

    completion_reason: str | None = Field(None, description="task_finished, idle_timeout, connection_closed, ...")
    success: bool | None = None
    steps_count: int | None = Field(None, description="Number of tool calls (tool_call_started) in the session")
    total_duration_ms: float | None = None
    failed_calls_count: int | None = None
    retry_count: int | None = None
    schema_errors_count: int | None = None
    final_result_type: str | None = Field(None, description="tool_result, error, agent_summary, none")


# --- tool calls -----------------------------------------------------------------------------------


class ToolCallStartedMetadata(_Metadata):
    """``tool_call_started``: an agent called a tool the server knows (a name it does not know is a
    ``hallucinated_tool_call`` only)."""

    tool_name: str | None = None
    tool_params: Any = None
    call_sequence: int | None = Field(None, description="Order in the session: 1, 2, 3, ... gapless")
    is_retry: bool | None = None
    retry_attempt: int | None = None
    previous_tool_name: str | None = None
    params_hash: str | None = None
    mcp_tool_available: bool | None = Field(None, description="Whether the tool exists in the live manifest")
    after_hallucinated_tool: str | None = Field(None, description=(
        "added: the unknown name the agent asked for just before this call, in the same session (what it meant)"))
    called_as: str | None = Field(None, description=(
        "added: the name the agent used when an opt-in alias (TrackingOptions.aliases) routed it to this tool"))


class ToolCallCompletedMetadata(_Metadata):
    """``tool_call_completed``: the tool returned a non-error result."""

    tool_name: str | None = None
    tool_params: Any = None
    success: bool | None = True
    execution_time_ms: float | None = None
    call_sequence: int | None = None
    params_hash: str | None = None
    result_size: int | None = Field(None, description=(
        "added: size of the result in bytes as sent: its structured content as JSON, else its text in UTF-8 "
        "(a decorated function: its return value as JSON)"))


class ToolCallFailedMetadata(_Metadata):
    """``tool_call_failed``: the tool raised, returned an error result, timed out or was refused."""

    tool_name: str | None = None
    tool_params: Any = None
    error_type: str | None = Field(
        None, description="execution_error, tool_error, validation_error, unknown_tool, timeout, cancelled, ..."
    )
    error_message: str | None = None
    execution_time_ms: float | None = None
    call_sequence: int | None = None
    retry_eligible: bool | None = None


class ToolCallRetryMetadata(_Metadata):
    """``tool_call_retry``: the same tool with the same canonical params, again, in the same session."""

    tool_name: str | None = None
    tool_params: Any = None
    params_hash: str | None = None
    original_call_sequence: int | None = None
    retry_attempt: int | None = None
    retry_reason: str | None = Field(
        None, description="execution_failed, validation_failed, timeout, duplicate_in_flight, repeated_after_success"
    )
    call_sequence: int | None = None


class HallucinatedToolCallMetadata(_Metadata):
    """``hallucinated_tool_call``: the tool name is not in the server's live manifest."""

    requested_tool_name: str | None = None
    tool_params: Any = None
    available_tools: list[str] | None = None
    call_sequence: int | None = None
    similar_tool_suggested: str | None = None
    similarity_score: float | None = Field(None, description="added: 0-100 score of the suggestion")
    suggestions: list[str] | None = Field(None, description="added: every close name, best first")


class ValidationErrorItem(BaseModel):
    """One violation of a tool's input schema."""

    model_config = ConfigDict(extra="allow")
    field: str | None = Field(None, description="Readable path such as filters.model_name; empty for the root")
    error: str | None = Field(None, description="In words, e.g. 'required field missing'")
    schema_path: str | None = Field(None, description="Path in the schema, e.g. properties.model_name")


class SchemaValidationErrorMetadata(_Metadata):
    """``schema_validation_error``: the arguments do not satisfy the tool's input schema."""

    tool_name: str | None = None
    tool_params: Any = None
    validation_errors: list[ValidationErrorItem] | None = None
    call_sequence: int | None = None
    schema_version: str | None = Field(None, description="Fingerprint of the tool's input schema")


class WrongToolErrorMetadata(_Metadata):
    """``wrong_tool_error``: a call failed and the agent switched to a different tool."""

    first_tool_name: str | None = None
    second_tool_name: str | None = None
    first_tool_params: Any = None
    second_tool_params: Any = None
    detection_pattern: str | None = Field(None, description="retry_with_different_tool or immediate_switch")
    call_sequence: list[int] | None = None


class TaskCompletedMetadata(_Metadata):
    """``task_completed``: an explicit signal that the agent's task is done."""

    success: bool | None = True
    completion_reason: str | None = None
    source: str | None = Field(None, description="client_api or agent_tool")
    summary: str | None = None


class AnswerCompletenessMetadata(_Metadata):
    """``answer_complete`` / ``answer_incomplete``: completeness checks on a tool's result."""

    completeness_score: float | None = None
    detection_method: str | None = Field(None, description="heuristic_validation, user_feedback, explicit_signal")
    checks_passed: list[str] | None = None
    checks_failed: list[str] | None = None
    tool_name: str | None = None
    result_count: int | None = None
    call_sequence: int | None = None


METADATA_MODELS: dict[EventName, type[BaseModel]] = {
    EventName.SESSION_START: SessionStartMetadata,
    EventName.SESSION_END: SessionEndMetadata,
    EventName.SESSION_COMPLETED: SessionOutcomeMetadata,
    EventName.SESSION_FAILED: SessionOutcomeMetadata,
    EventName.SESSION_ABANDONED: SessionOutcomeMetadata,
    EventName.TOOL_CALL_STARTED: ToolCallStartedMetadata,
    EventName.TOOL_CALL_COMPLETED: ToolCallCompletedMetadata,
    EventName.TOOL_CALL_FAILED: ToolCallFailedMetadata,
    EventName.TOOL_CALL_RETRY: ToolCallRetryMetadata,
    EventName.HALLUCINATED_TOOL_CALL: HallucinatedToolCallMetadata,
    EventName.SCHEMA_VALIDATION_ERROR: SchemaValidationErrorMetadata,
    EventName.WRONG_TOOL_ERROR: WrongToolErrorMetadata,
    EventName.TASK_COMPLETED: TaskCompletedMetadata,
    EventName.ANSWER_COMPLETE: AnswerCompletenessMetadata,
    EventName.ANSWER_INCOMPLETE: AnswerCompletenessMetadata,
}

KNOWN_EVENT_NAMES = frozenset(e.value for e in EventName)


class Event(BaseModel):
    """The envelope every stored event has. ``metadata`` follows the model of its ``event_name``."""

    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(description="UUID, time-ordered (version 7)")
    event_name: str
    user_id: str
    session_id: str | None = None
    mcp_name: str | None = None
    created_at: datetime = Field(description="Timezone-aware UTC, microsecond precision")
    metadata: dict[str, Any] = Field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


# --- the hot-path record --------------------------------------------------------------------------

_last_ms = 0
_seq = 0
_id_lock = threading.Lock()
_HEX3 = tuple(f"{i:03x}" for i in range(4096))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))  # maps a random byte to 10xxxxxx (RFC 9562 variant)


def uuid7(unix_ms: int | None = None) -> str:
    """A time-ordered UUID (RFC 9562 version 7) as text.

    Time order keeps B-tree primary keys append-only (3x faster SQLite inserts than uuid4) and makes
    ids sort by creation time: 48 bits of milliseconds (now, or ``unix_ms``), a 12-bit counter within the
    millisecond, then the variant and 62 random bits.
    """
    stamp = _Stamp(1000 * (time.time_ns() // 1_000_000 if unix_ms is None else unix_ms))
    _mint((stamp,))
    return stamp._event_id  # type: ignore[return-value]


class _Stamp:
    """A creation time to mint an id for, outside an event."""

    __slots__ = ("_event_id", "ts_us")

    def __init__(self, ts_us: int) -> None:
        self.ts_us = ts_us
        self._event_id: str | None = None


def _mint(records: Sequence[Any]) -> None:
    """Give each record (anything with ``ts_us`` and ``_event_id``) that has no id yet a version 7 UUID of its
    creation time, with one read of the OS's randomness for all of them: the worker mints a batch this way."""
    global _last_ms, _seq
    n = len(records)
    raw = bytearray(os.urandom(8 * n + 2))
    raw[0:8 * n:8] = raw[0:8 * n:8].translate(_VARIANT)
    rnd = raw.hex()
    start = int.from_bytes(raw[8 * n:], "big") >> 6  # 10 random bits
    hex3 = _HEX3
    j = 0
    with _id_lock:
        last, seq = _last_ms, _seq
        h = f"{last:012x}"
        prefix = f"{h[:8]}-{h[8:]}-7"
        for r in records:
            if r._event_id is not None:
                continue
            ms = r.ts_us // 1000
            if ms <= last:  # same millisecond (or a clock step back): keep ids increasing
                seq += 1
                if seq > 0xFFF:
                    last += 1
                    seq = 0
                    h = f"{last:012x}"
                    prefix = f"{h[:8]}-{h[8:]}-7"
            else:
                last, seq = ms, start  # a random start (10 bits) leaves room to count up
                h = f"{last:012x}"
                prefix = f"{h[:8]}-{h[8:]}-7"
            j += 16
            r._event_id = f"{prefix}{hex3[seq]}-{rnd[j - 16:j - 12]}-{rnd[j - 12:j]}"
        _last_ms, _seq = last, seq


class EventRecord:
    """An event as queued: cheap to build on the request path; serialised on the worker."""

    __slots__ = ("_event_id", "call_context", "event_name", "mcp_name", "metadata", "metadata_json", "queued_bytes",
                 "schema_version", "session_id", "ts_us", "user_id")

    def __init__(
        self,
        event_name: str,
        user_id: str,
        session_id: str | None,
        mcp_name: str | None,
        metadata: dict[str, Any],
        *,
        event_id: str | None = None,
        created_at: datetime | None = None,
        schema_version: int = SCHEMA_VERSION,
        ts_us: int | None = None,
    ) -> None:
        self._event_id = event_id  # minted lazily (on the worker) from the creation time
        self.event_name = event_name
        self.user_id = user_id
        self.session_id = session_id
        self.mcp_name = mcp_name
        #: creation time in microseconds since the epoch (UTC): cheap to take, formatted on the worker
        self.ts_us = (ts_us if ts_us is not None else time.time_ns() // 1000) if created_at is None \
            else datetime_to_us(created_at)
        self.metadata = metadata
        self.metadata_json: bytes | None = None  # set by the processors: the stored form of ``metadata``
        self.schema_version = schema_version
        #: facts of the tool call that are not stored (trace context, request id), for sinks that want them
        self.call_context: dict[str, Any] | None = None
        #: what the emitter's byte budget counted for it while queued
        self.queued_bytes = 0

    @property
    def event_id(self) -> str:
        """A time-ordered UUID (version 7) of the creation time, minted on first use."""
        eid = self._event_id
        if eid is None:
            _mint((self,))
            eid = self._event_id
        return eid  # type: ignore[return-value]

    @event_id.setter
    def event_id(self, value: str) -> None:
        self._event_id = value

    @staticmethod
    def assign_ids(records: Sequence[EventRecord]) -> None:
        """Mint the ids of the records that have none yet, in one go (the worker does this per batch)."""
        _mint(records)

    @property
    def created_at(self) -> datetime:
        """Timezone-aware UTC, microsecond precision."""
        return us_to_datetime(self.ts_us)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: ``created_at`` as ISO 8601 text with microseconds and ``+00:00``."""
        return {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "mcp_name": self.mcp_name,
            "created_at": format_us(self.ts_us),
            "metadata": self.metadata,
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventRecord:
        created = data.get("created_at")
        return cls(
            data["event_name"],
            data.get("user_id") or "anonymous",
            data.get("session_id"),
            data.get("mcp_name"),
            data.get("metadata") or {},
            event_id=data.get("event_id") or data.get("id"),
            created_at=parse_timestamp(created) if created is not None else None,
            schema_version=data.get("schema_version") or SCHEMA_VERSION,
        )

    def __repr__(self) -> str:
        return f"EventRecord({self.event_name!r}, session={self.session_id!r}, metadata={self.metadata!r})"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_second_prefix: tuple[int, str] = (-1, "")


def datetime_to_us(dt: datetime) -> int:
    """Microseconds since the epoch; naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _ONE_US


def us_to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def format_us(us: int) -> str:
    """``format_timestamp`` for microseconds since the epoch, with the date and time of the second cached."""
    global _second_prefix
    sec, frac = divmod(us, 1_000_000)
    cached = _second_prefix
    if cached[0] != sec:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
        _second_prefix = cached
    return f"{cached[1]}.{frac:06d}+00:00"


def format_timestamp(dt: datetime) -> str:
    """ISO 8601 in UTC with microseconds: sorts as text and parses with ``datetime.fromisoformat``."""
    if dt.tzinfo is timezone.utc:
        return dt.isoformat(timespec="microseconds")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_timestamp(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def event_json_schemas() -> dict[str, Any]:
    """The JSON Schema of the envelope and of each event's metadata, generated from the models."""
    events: dict[str, Any] = {}
    for name, model in METADATA_MODELS.items():
        schema = Event.model_json_schema()
        schema["title"] = name.value
        schema["properties"]["event_name"] = {"const": name.value, "type": "string"}
        schema["properties"]["metadata"] = model.model_json_schema()
        events[name.value] = schema
    return {
        "schema_version": SCHEMA_VERSION,
        "envelope": Event.model_json_schema(),
        "events": events,
    }

