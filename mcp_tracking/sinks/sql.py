"""SQL both stores share: the parameterised filter on ``raw_analytics`` (SQLite and PostgreSQL placeholders).

The stores use it to read events back; the metrics' SQL (``mcp_tracking.metrics.sqlite`` / ``.postgres``)
uses it to restrict every query to the same events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp_tracking.events import format_timestamp


def where_clause(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    mcp_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    placeholder: str = "?",
    prefix: str = "WHERE",
    alias: str = "",
) -> tuple[str, list[Any]]:
    """A parameterised filter: the SQL holds only placeholders, never the values.

    ``placeholder`` is ``?`` (SQLite, positional), ``%s`` (psycopg, positional), ``:`` (SQLite, named
    ``:session_id``) or ``%()`` (psycopg, named ``%(session_id)s``); the named forms may appear many times in
    one statement with one parameter dict (see :func:`named_params`). ``alias`` prefixes the column names
    (``"r."``); ``prefix`` is ``WHERE`` or ``AND``.
    """
    parts: list[str] = []
    params: list[Any] = []
    values: dict[str, Any] = {"session_id": session_id, "user_id": user_id, "mcp_name": mcp_name,
                              "since": since, "until": until}
    ops = {"session_id": ("session_id", "="), "user_id": ("user_id", "="), "mcp_name": ("mcp_name", "="),
           "since": ("created_at", ">="), "until": ("created_at", "<")}
    for key, (column, op) in ops.items():
        value = values[key]
        if value is None:
            continue
        if placeholder == ":":
            mark = f":{key}"
        elif placeholder == "%()":
            mark = f"%({key})s"
        else:
            mark = placeholder
        parts.append(f"{alias}{column} {op} {mark}")
        if key in ("since", "until") and placeholder in ("?", ":"):
            value = format_timestamp(value)
        params.append(value)
    if not parts:
        return "", []
    return f"{prefix} " + " AND ".join(parts), params


def named_params(*, placeholder: str = ":", **filters: Any) -> dict[str, Any]:
    """The parameter dict for the named forms of :func:`where_clause`."""
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if value is not None:
            out[key] = format_timestamp(value) if key in ("since", "until") and placeholder == ":" else value
    return out
