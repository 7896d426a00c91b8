"""The metrics computed inside SQLite: a few grouped scans, parameterised filters, no row loads.

One pass groups events by session (conditional counts per session, then sums over sessions); one
pass over the ``(event_name, tool_name, execution_time_ms)`` index gives popularity, failures and
latency per tool; percentiles are read from that index by offset; the extra views scan only their
own (rare) event types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from mcp_tracking.metrics.model import RETRY_LOOP_MIN_CALLS, Aggregates, ToolCounts, Totals, rank_offset
from mcp_tracking.sinks.sqlite import where_clause

PER_SESSION = """
    SELECT {keys}, COUNT(*) AS n,
        SUM(event_name = 'tool_call_started') AS started,
        SUM(event_name = 'tool_call_completed') AS completed,
        SUM(event_name = 'tool_call_failed') AS failed,
        SUM(event_name = 'tool_call_retry') AS retries,
        SUM(event_name = 'schema_validation_error') AS schema_errors,
        SUM(event_name = 'wrong_tool_error') AS wrong,
        SUM(event_name = 'hallucinated_tool_call') AS halluc,
        SUM(event_name = 'answer_complete') AS ac,
        SUM(event_name = 'answer_incomplete') AS ai,
        MAX(event_name = 'session_start') AS has_start,
        MAX(event_name = 'session_completed') AS has_completed,
        MAX(event_name = 'session_completed' AND success = 1) AS ok,
        MAX(event_name IN ('tool_call_failed', 'schema_validation_error')) AS has_error
    FROM raw_analytics {where}
    GROUP BY {keys}
"""

TOTALS = """
    SELECT {group_select}
        COALESCE(SUM(n), 0),
        COUNT(session_id),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN has_start END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN has_completed END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN ok END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL AND ok = 1 THEN started END), 0),
        MAX(CASE WHEN session_id IS NOT NULL AND ok = 1 THEN started END),
        COALESCE(SUM(started), 0), COALESCE(SUM(completed), 0), COALESCE(SUM(failed), 0),
        COALESCE(SUM(retries), 0), COALESCE(SUM(schema_errors), 0), COALESCE(SUM(wrong), 0),
        COALESCE(SUM(halluc), 0), COALESCE(SUM(ac), 0), COALESCE(SUM(ai), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN has_error END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL AND has_error = 1 AND ok = 1 THEN 1 END), 0)
    FROM ({per_session}) AS s
    {group_by}
"""

PER_TOOL = """
    SELECT tool_name,
        SUM(event_name = 'tool_call_started'),
        SUM(event_name = 'tool_call_completed'),
        SUM(event_name = 'tool_call_failed'),
        SUM(event_name = 'tool_call_completed' AND execution_time_ms IS NOT NULL),
        COALESCE(SUM(CASE WHEN event_name = 'tool_call_completed'
                     THEN CAST(execution_time_ms * 1000 + 0.5 AS INTEGER) END), 0),
        MAX(CASE WHEN event_name = 'tool_call_completed' THEN execution_time_ms END)
    FROM raw_analytics
    WHERE event_name IN ('tool_call_started', 'tool_call_completed', 'tool_call_failed')
        AND tool_name IS NOT NULL {and_where}
    GROUP BY tool_name
"""

PERCENTILE = """
    SELECT execution_time_ms FROM raw_analytics
    WHERE event_name = 'tool_call_completed' AND tool_name = ? AND execution_time_ms IS NOT NULL {and_where}
    ORDER BY execution_time_ms LIMIT 1 OFFSET ?
"""

CONFUSION = """
    SELECT 'hallucination', tool_name, json_extract(metadata, '$.similar_tool_suggested'), COUNT(*)
    FROM raw_analytics WHERE event_name = 'hallucinated_tool_call' {and_where}
    GROUP BY 2, 3
    UNION ALL
    SELECT 'wrong_tool', json_extract(metadata, '$.first_tool_name'), json_extract(metadata, '$.second_tool_name'),
        COUNT(*)
    FROM raw_analytics WHERE event_name = 'wrong_tool_error' {and_where}
    GROUP BY 2, 3
"""

HOTSPOTS = """
    SELECT r.tool_name, json_extract(e.value, '$.field'), json_extract(e.value, '$.kind'), COUNT(*),
        MIN(json_extract(e.value, '$.error'))
    FROM raw_analytics AS r, json_each(r.metadata, '$.validation_errors') AS e
    WHERE r.event_name = 'schema_validation_error' AND json_type(r.metadata, '$.validation_errors') = 'array'
        {and_where_r}
    GROUP BY 1, 2, 3
"""

RETRY_LOOPS = f"""
    SELECT session_id, tool_name, params_hash, COUNT(*) + 1
    FROM raw_analytics WHERE event_name = 'tool_call_retry' {{and_where}}
    GROUP BY 1, 2, 3 HAVING COUNT(*) + 1 >= {RETRY_LOOP_MIN_CALLS}
"""


def _totals(row: Sequence[Any]) -> Totals:
    return Totals(*[int(v) if v is not None else None for v in row])  # type: ignore[arg-type]


def aggregates(conn: sqlite3.Connection, filters: dict[str, Any], *, breakdown: str | None = None) -> Aggregates:
    """Count everything the metrics need within ``filters`` (session_id, user_id, mcp_name, since, until).

    The filters become placeholders and parameters, never SQL text.
    """
    where, params = where_clause(**filters)
    and_where, _ = where_clause(**filters, prefix="AND")
    and_where_r, _ = where_clause(**filters, prefix="AND", alias="r.")
    per_session = PER_SESSION.format(keys="session_id", where=where)
    row = conn.execute(TOTALS.format(group_select="", per_session=per_session, group_by=""), params).fetchone()
    totals = _totals(row)

    groups: dict[str, Totals] = {}
    if breakdown in ("session", "user"):
        keys = "session_id" if breakdown == "session" else "user_id, session_id"
        col = "session_id" if breakdown == "session" else "user_id"
        sql = TOTALS.format(group_select=f"{col},", per_session=PER_SESSION.format(keys=keys, where=where),
                            group_by=f"GROUP BY {col}")
        for r in conn.execute(sql, params):
            if r[0] is not None:
                groups[str(r[0])] = _totals(r[1:])
    elif breakdown is not None:
        raise ValueError("breakdown must be 'session', 'user' or None")

    tools: list[ToolCounts] = []
    for name, calls, completed, failed, lat_n, lat_us, lat_max in conn.execute(
            PER_TOOL.format(and_where=and_where), params):
        tc = ToolCounts(name, int(calls), int(completed), int(failed), int(lat_n), int(lat_us) / 1000.0, lat_max)
        if tc.latency_count:
            sql = PERCENTILE.format(and_where=and_where)
            tc.latency_p50 = conn.execute(sql, [name, *params, rank_offset(tc.latency_count, 0.5)]).fetchone()[0]
            tc.latency_p95 = conn.execute(sql, [name, *params, rank_offset(tc.latency_count, 0.95)]).fetchone()[0]
        tools.append(tc)

    confusion = [(k, a, b, int(n)) for k, a, b, n in conn.execute(CONFUSION.format(and_where=and_where),
                                                                   params + params) if a is not None]
    hotspots = [(t, f, k, int(n), ex) for t, f, k, n, ex in conn.execute(
        HOTSPOTS.format(and_where_r=and_where_r), params)]
    loops = [(s, t, h, int(n)) for s, t, h, n in conn.execute(RETRY_LOOPS.format(and_where=and_where), params)]
    return Aggregates(totals, tools, confusion, hotspots, loops, groups)
