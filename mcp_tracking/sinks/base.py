"""The sink interface: the shape of an OpenTelemetry exporter.

A sink takes a batch, can flush and can shut down; it knows nothing about threads, queues or retries
(the :class:`~mcp_tracking.emit.emitter.Emitter` owns those). ``write`` raises on failure so the emitter
can retry; it must be idempotent on ``event_id`` where the store allows (SQLite and PostgreSQL are).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from mcp_tracking.events import EventRecord


class StoreError(RuntimeError):
    """A store cannot be used: missing, unreachable, not ours, or newer than this package."""


@runtime_checkable
class Sink(Protocol):
    """Where events go. Called from the emitter's single worker thread."""

    def write(self, batch: Sequence[EventRecord]) -> None:
        """Store the batch or raise. Called with at least one event."""

    def flush(self) -> None:
        """Make written events durable/visible."""

    def close(self) -> None:
        """Release resources. Idempotent."""


@runtime_checkable
class QueryableSink(Sink, Protocol):
    """A sink whose events can be read back (memory, JSONL, SQLite, PostgreSQL)."""

    def iter_events(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        mcp_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stored events as dicts, oldest first, in the design's shape (``event_name``, ``metadata``,
        ``created_at``, ...)."""
        ...


@runtime_checkable
class SQLStore(QueryableSink, Protocol):
    """A store the metrics compute in (SQLite, PostgreSQL): :mod:`mcp_tracking.metrics` picks its SQL by
    ``dialect`` and runs it on the connections ``read_snapshot()`` opens."""

    #: ``"sqlite"`` or ``"postgresql"``
    dialect: str

    def read_snapshot(self) -> AbstractContextManager[tuple[Any, Any | None]]:
        """Two read connections on one snapshot of the table, ``(conn, second)``: the metrics run two halves
        of their work at once. ``second`` is ``None`` when no second connection with the same snapshot could
        be had (the work then runs on ``conn`` alone). Both are closed on exit."""
        ...

    def time_span(self, filters: dict[str, Any]) -> tuple[datetime, datetime] | None:
        """First and last ``created_at`` within the filters (``session_id``, ``user_id``, ``mcp_name``,
        ``since``, ``until``), as aware datetimes; ``None`` when nothing matches."""
        ...

    def count(self) -> int:
        """How many events the store holds."""
        ...


@runtime_checkable
class HealthStore(Protocol):
    """A store that keeps each emitter's last counters (``mcp-tracking status`` shows them)."""

    def write_health(self, process: str, stats: dict[str, Any]) -> None:
        """Record one process's counters (replacing its previous report)."""

    def read_health(self) -> list[dict[str, Any]]:
        """Every process's last report, newest first: ``process``, ``updated_at`` and the counters."""
        ...


@runtime_checkable
class LiveSpans(Protocol):
    """A sink that takes per-call trace hooks (the OpenTelemetry sink, or a fan-out holding one)."""

    def live_spans(self) -> Any:
        """The :class:`~mcp_tracking.core.tracing.CallTracing` hooks the recorder calls during a call (it
        enriches the framework's live span, or collects what the sink builds its span from), or ``None``."""
        ...


@runtime_checkable
class Respawnable(Protocol):
    """A store another process can open as this one is: what the writer process (see
    :mod:`mcp_tracking.emit.writer`) writes through, off the server's interpreter."""

    def writer_spec(self) -> tuple[str, dict[str, Any]] | None:
        """``(kind, options)`` for :func:`~mcp_tracking.sinks.sink_from_spec`: ``"sqlite"``, ``"postgresql"``
        or ``"module:Class"`` (built as ``Class(**options)``; the options must be JSON); ``None`` when this
        store must be written where it is (state of yours in it)."""
        ...


def matches(
    event: dict[str, Any],
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    mcp_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> bool:
    """Filter for the in-Python stores (memory, JSONL)."""
    if session_id is not None and event.get("session_id") != session_id:
        return False
    if user_id is not None and event.get("user_id") != user_id:
        return False
    if mcp_name is not None and event.get("mcp_name") != mcp_name:
        return False
    if since is not None or until is not None:
        from mcp_tracking.events import parse_timestamp

        ts = parse_timestamp(event["created_at"])
        if since is not None and ts < since:
            return False
        if until is not None and ts >= until:
            return False
    return True
