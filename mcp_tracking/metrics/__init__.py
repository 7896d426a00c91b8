"""Measure: the design's ten agent-quality metrics and the views beyond them, computed in the store.

    from mcp_tracking import compute_metrics
    result = compute_metrics("sqlite:///mcp_tracking.db", mcp_name="drea", since=datetime(2026, 11, 1, tzinfo=UTC))
    result.value("task_completion_rate"); result.to_dict()

SQL stores compute in the database (parameterised, a few scans); memory and JSON-lines stores use the
pure-Python twin. Both only count; :func:`~mcp_tracking.metrics.model.derive` makes every ratio.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from mcp_tracking.metrics.model import (
    METRIC_KEYS,
    Aggregates,
    MetricsResult,
    SessionStart,
    Totals,
    derive,
    scope_of,
    session_start_of,
)
from mcp_tracking.sinks import sink_from_url
from mcp_tracking.sinks.base import QueryableSink, Sink, SQLStore

__all__ = ["METRIC_KEYS", "Aggregates", "MetricsResult", "Totals", "compute_metrics"]


class MetricsError(RuntimeError):
    """The source cannot be measured (missing store, no table, unknown URL)."""


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if not isinstance(dt, datetime):
        raise TypeError(f"since/until must be datetimes, not {type(dt).__name__}")
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def compute_metrics(
    source: Sink | str | os.PathLike[str],
    *,
    mcp_name: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    breakdown: str | None = None,
) -> MetricsResult:
    """The ten metrics (and the extra views) for the events of ``source`` within the filters.

    Args:
        source: a sink, a store URL (``sqlite:///...``, ``postgresql://...``, ``jsonl:///...``) or a path.
        mcp_name / user_id / session_id: restrict to one server, user or session.
        since / until: restrict to ``since <= created_at < until`` (naive datetimes are taken as UTC).
        breakdown: ``"session"`` or ``"user"`` adds the per-session or per-user headline metrics.
    """
    filters: dict[str, Any] = {"session_id": session_id, "user_id": user_id, "mcp_name": mcp_name,
                               "since": _aware(since), "until": _aware(until)}
    sink = open_source(source)
    return derive(aggregates(sink, filters, breakdown=breakdown), scope_of(**filters))


def open_source(source: Sink | str | os.PathLike[str]) -> Sink:
    """A sink for ``source`` (a sink, a store URL or a path), opened read-only."""
    return source if isinstance(source, Sink) else sink_from_url(source, read_only=True)


def dialect_of(sink: SQLStore) -> Any:
    if sink.dialect == "sqlite":
        from mcp_tracking.metrics import sqlite as sql
    elif sink.dialect == "postgresql":
        from mcp_tracking.metrics import postgres as sql  # type: ignore[no-redef]
    else:
        raise MetricsError(f"no metrics SQL for the {sink.dialect!r} dialect of {sink!r}")
    return sql


def aggregates(sink: Sink, filters: dict[str, Any], *, breakdown: str | None = None) -> Aggregates:
    """The counts behind the metrics (SQL stores count in the database; others through the Python twin)."""
    if isinstance(sink, SQLStore):
        with sink.read_snapshot() as (conn, second):
            return dialect_of(sink).aggregates(conn, filters, breakdown=breakdown, second=second)  # type: ignore[no-any-return]
    if isinstance(sink, QueryableSink):
        from mcp_tracking.metrics import python as twin

        return twin.aggregates(sink.iter_events(**filters), breakdown=breakdown)
    raise MetricsError(f"{sink!r} cannot be read back; measure the store it writes to instead")


def session_index(sink: Sink, *, mcp_name: str | None = None) -> tuple[dict[str, SessionStart], dict[str, Totals]]:
    """``(starts, totals)``: each session's ``session_start`` (time, release, user, client) for ``mcp_name``,
    and the counts over all the events of those sessions (what ``mcp-tracking compare`` splits into windows and
    the session views list)."""
    filters: dict[str, Any] = {"session_id": None, "user_id": None, "mcp_name": mcp_name, "since": None,
                               "until": None}
    if isinstance(sink, SQLStore):
        with sink.read_snapshot() as (conn, _):
            sql = dialect_of(sink)
            starts = sql.session_starts(conn, filters)
            return starts, sql.session_totals(conn, set(starts))
    if isinstance(sink, QueryableSink):
        from mcp_tracking.events import parse_timestamp
        from mcp_tracking.metrics import python as twin

        found: dict[str, SessionStart] = {}

        def noting_starts() -> Any:  # one read of the events: the starts noted on the way to the counts
            for e in sink.iter_events(mcp_name=mcp_name):
                sid = e.get("session_id")
                if e["event_name"] == "session_start" and sid is not None and str(sid) not in found:
                    md = e.get("metadata") or {}
                    found[str(sid)] = session_start_of(parse_timestamp(e["created_at"]), md.get("release"),
                                                       e.get("user_id"), md.get("client_name"),
                                                       md.get("client_version"))
                yield e

        groups = twin.aggregates(noting_starts(), breakdown="session").groups
        return found, {sid: t for sid, t in groups.items() if sid in found}
    raise MetricsError(f"{sink!r} cannot be read back; measure the store it writes to instead")


def tool_facts(sink: Sink, filters: dict[str, Any]) -> tuple[list[tuple[Any, ...]], list[str] | None]:
    """``(rows, available)``: per ``(event_name, tool_name, retry reason or error type)`` the count and one
    session id, for retries, failures and completeness checks; and the server's tool list as the newest
    ``hallucinated_tool_call`` recorded it (``None`` when there is none). What ``advise`` reads beyond the
    metrics."""
    if isinstance(sink, SQLStore):
        with sink.read_snapshot() as (conn, _):
            return dialect_of(sink).tool_facts(conn, filters)  # type: ignore[no-any-return]
    if isinstance(sink, QueryableSink):
        counts: dict[tuple[Any, Any, Any], list[Any]] = {}
        available: list[str] | None = None
        newest = None
        for e in sink.iter_events(**filters):
            name, md = e["event_name"], e.get("metadata") or {}
            if (name == "hallucinated_tool_call" and isinstance(md.get("available_tools"), list)
                    and (newest is None or e["created_at"] >= newest)):
                newest, available = e["created_at"], [str(t) for t in md["available_tools"]]
            if name not in ("tool_call_retry", "tool_call_failed", "answer_incomplete", "answer_complete"):
                continue
            detail = md.get("retry_reason") if name == "tool_call_retry" else (
                md.get("error_type") if name == "tool_call_failed" else None)
            key = (name, md.get("tool_name"), detail)
            hit = counts.setdefault(key, [0, None])
            hit[0] += 1
            sid = e.get("session_id")
            if sid is not None and (hit[1] is None or str(sid) < hit[1]):
                hit[1] = str(sid)
        return [(*k, n, sid) for k, (n, sid) in counts.items()], available
    raise MetricsError(f"{sink!r} cannot be read back; measure the store it writes to instead")
