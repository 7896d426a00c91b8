"""The stored form of events as rows, shared by the SQL stores (and the metrics' Python twin).

Besides the envelope and the metadata JSON, a row carries the hot metadata fields the metrics read, extracted
into real columns: ``tool_name`` (or ``requested_tool_name``), ``params_hash``, ``execution_time_ms`` and
``success``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mcp_tracking._json import dumps_str
from mcp_tracking.events import EventRecord, format_us

COLUMNS = ("id", "user_id", "session_id", "mcp_name", "event_name", "metadata", "created_at", "tool_name",
           "params_hash", "execution_time_ms", "success", "schema_version")

_INF = float("inf")


def extracted(md: Mapping[str, Any]) -> tuple[str | None, str | None, float | None, int | None]:
    """The metadata fields kept in real columns for the metrics: tool_name (or requested_tool_name),
    params_hash, execution_time_ms and success. Shared with the Python twin so both read alike.
    (Written for speed: the worker runs it for every event; exact-type tests first.)"""
    tool = md.get("tool_name")
    if type(tool) is not str and not isinstance(tool, str):
        tool = md.get("requested_tool_name")
        if not isinstance(tool, str):
            tool = None
    phash = md.get("params_hash")
    if type(phash) is not str and not isinstance(phash, str):
        phash = None
    ms = md.get("execution_time_ms")
    if ms is not None:
        if type(ms) is float or (isinstance(ms, (int, float)) and not isinstance(ms, bool)):
            ms = float(ms)
            if not -_INF < ms < _INF:
                ms = None
        else:
            ms = None
    ok = md.get("success")
    return tool, phash, ms, (1 if ok else 0) if ok is True or ok is False else None


def rows_of(batch: Sequence[EventRecord]) -> list[tuple[Any, ...]]:
    """The rows of a batch, as a list (see :func:`iter_rows`)."""
    return list(iter_rows(batch))


def iter_rows(batch: Sequence[EventRecord]) -> Iterator[tuple[Any, ...]]:
    """The stored row of each event, in :data:`COLUMNS` order (``success`` as a bool, ``created_at`` as ISO
    text, the date and time of the second formatted once per second), ids minted in one go where missing."""
    EventRecord.assign_ids(batch)
    sec_cached = -1
    prefix = ""
    for r in batch:
        md = r.metadata
        data = r.metadata_json
        sec, frac = divmod(r.ts_us, 1_000_000)
        if sec != sec_cached:
            sec_cached, prefix = sec, format_us(sec * 1_000_000)[:20]
        tool, phash, ms, ok = extracted(md)
        yield (r._event_id, r.user_id, r.session_id, r.mcp_name, r.event_name,
               data.decode() if data is not None else dumps_str(md), f"{prefix}{frac:06d}+00:00",
               tool, phash, ms, None if ok is None else bool(ok), r.schema_version)
