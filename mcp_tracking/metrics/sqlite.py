"""The metrics computed inside SQLite: a few index-only scans, parameterised filters, no row loads.

The totals come from three cheap passes instead of one pass with a dozen conditional sums per row:
counts per ``(event_name, tool_name)`` (index-only on ``raw_analytics_event``; they give every event count
and the per-tool call counts), latency sums per tool (a range of the same index), and the session-level
facts from the few event types that carry them (``session_start``, ``session_completed``, failures), whose
session ids and success flags are in that index too. Percentiles are read from the index by offset. The
per-session pass (``PER_SESSION``/``TOTALS``) serves only the optional per-session/per-user breakdown.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mcp_tracking._json import loads
from mcp_tracking.events import format_timestamp, parse_timestamp
from mcp_tracking.metrics.model import (
    ERROR_EVENTS,
    RETRY_LOOP_MIN_CALLS,
    Aggregates,
    SessionStart,
    ToolCounts,
    Totals,
    count_columns,
    count_events,
    rank_offset,
    run_halves,
    session_start_of,
    session_totals_of,
    set_session_facts,
    sql_in,
    starts_bound,
    sum_columns,
    totals_of,
    window_conditions,
)
from mcp_tracking.sinks.sql import named_params, where_clause

EVENT_COUNTS = """
    SELECT event_name, tool_name, COUNT(*) FROM raw_analytics {where} GROUP BY event_name, tool_name
"""

LATENCY = """
    SELECT tool_name, COUNT(execution_time_ms),
        COALESCE(SUM(CAST(execution_time_ms * 1000 + 0.5 AS INTEGER)), 0), MAX(execution_time_ms)
    FROM raw_analytics
    WHERE event_name = 'tool_call_completed' AND tool_name IS NOT NULL {aw}
    GROUP BY tool_name
"""

# ``+session_id``: the unary plus keeps SQLite from choosing the session index for "IS NOT NULL" (a scan
# of the whole table); each CTE then reads only its event type from the event index. The steps and the
# errors of successful sessions are two probes of the session index per successful session (``okf``),
# not a join of two materialised lists.
# How many sessions there are and how many started: the other half's work (it balances the two threads).
SESSION_COUNTS = """
    SELECT
        (SELECT COUNT(DISTINCT session_id) FROM raw_analytics {where}),
        (SELECT COUNT(*) FROM (SELECT DISTINCT session_id FROM raw_analytics
                               WHERE event_name = 'session_start' AND +session_id IS NOT NULL {aw}))
"""

SESSIONS = f"""
    WITH
    done AS (SELECT session_id, MAX(success = 1) AS ok FROM raw_analytics
             WHERE event_name = 'session_completed' AND +session_id IS NOT NULL {{aw}} GROUP BY session_id),
    errs AS (SELECT DISTINCT session_id FROM raw_analytics
             WHERE event_name IN {sql_in(ERROR_EVENTS)} AND +session_id IS NOT NULL {{aw}}),
    okf AS (SELECT
                (SELECT COUNT(*) FROM raw_analytics AS r
                 WHERE r.session_id = d.session_id AND r.event_name = 'tool_call_started' {{awr}}) AS n,
                EXISTS (SELECT 1 FROM raw_analytics AS r
                        WHERE r.session_id = d.session_id
                          AND r.event_name IN {sql_in(ERROR_EVENTS)} {{awr}}) AS e
            FROM done AS d WHERE d.ok = 1)
    SELECT
        (SELECT COUNT(*) FROM done AS d WHERE EXISTS (SELECT 1 FROM raw_analytics AS r
             WHERE r.session_id = d.session_id AND r.event_name = 'session_start' {{awr}})),
        (SELECT COUNT(*) FROM done WHERE ok = 1),
        (SELECT COALESCE(SUM(n), 0) FROM okf),
        (SELECT MAX(n) FROM okf),
        (SELECT COUNT(*) FROM errs),
        (SELECT COALESCE(SUM(e), 0) FROM okf)
"""

PER_SESSION = f"""
    SELECT {{keys}}, COUNT(*) AS n,
        {count_columns("SUM(event_name = '{event}')")},
        MAX(event_name = 'session_start') AS has_start,
        MAX(event_name = 'session_completed') AS has_completed,
        MAX(event_name = 'session_completed' AND success = 1) AS ok,
        MAX(event_name IN {sql_in(ERROR_EVENTS)}) AS has_error
    FROM raw_analytics {{where}}
    GROUP BY {{keys}}
"""

# Per group, the Totals fields in order (see totals_of)
TOTALS = f"""
    SELECT {{group_select}}
        COALESCE(SUM(n), 0),
        COUNT(session_id),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN has_start END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL AND has_start = 1 THEN has_completed END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN ok END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL AND ok = 1 THEN tool_calls END), 0),
        MAX(CASE WHEN session_id IS NOT NULL AND ok = 1 THEN tool_calls END),
        {sum_columns()},
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL THEN has_error END), 0),
        COALESCE(SUM(CASE WHEN session_id IS NOT NULL AND has_error = 1 AND ok = 1 THEN 1 END), 0)
    FROM ({{per_session}}) AS s
    {{group_by}}
"""

PERCENTILE = """
    SELECT execution_time_ms FROM raw_analytics
    WHERE event_name = 'tool_call_completed' AND tool_name = ? AND execution_time_ms IS NOT NULL {and_where}
    ORDER BY execution_time_ms LIMIT 1 OFFSET ?
"""

# A call marked as following an unknown name can only be in a session that had one: the third part reads the
# calls of those sessions (through the session index), not every call's metadata (0.4 s on 1M events).
CONFUSION = """
    SELECT 'hallucination', tool_name, json_extract(metadata, '$.similar_tool_suggested'), COUNT(*)
    FROM raw_analytics WHERE event_name = 'hallucinated_tool_call' {and_where}
    GROUP BY 2, 3
    UNION ALL
    SELECT 'wrong_tool', json_extract(metadata, '$.first_tool_name'), json_extract(metadata, '$.second_tool_name'),
        COUNT(*)
    FROM raw_analytics WHERE event_name = 'wrong_tool_error' {and_where}
    GROUP BY 2, 3
    UNION ALL
    SELECT 'after_unknown', json_extract(metadata, '$.after_hallucinated_tool'), tool_name, COUNT(*)
    FROM raw_analytics WHERE event_name = 'tool_call_started' AND metadata LIKE '%"after_hallucinated_tool"%'
        AND (session_id IN (SELECT session_id FROM raw_analytics WHERE event_name = 'hallucinated_tool_call')
             OR session_id IS NULL)
        {and_where}
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


def aggregates(conn: sqlite3.Connection, filters: dict[str, Any], *, breakdown: str | None = None,
               second: sqlite3.Connection | None = None) -> Aggregates:
    """Count everything the metrics need within ``filters`` (session_id, user_id, mcp_name, since, until).

    The filters become named placeholders and one parameter dict, never SQL text. With ``second`` (another
    connection whose read transaction sees the same snapshot, see ``SQLiteSink.compute_aggregates``) the
    session facts and the rest are counted at once on two threads (SQLite runs queries outside the GIL).
    """
    if breakdown not in (None, "session", "user"):
        raise ValueError("breakdown must be 'session', 'user' or None")
    params = named_params(**filters)
    where, _ = where_clause(**filters, placeholder=":")
    aw, _ = where_clause(**filters, placeholder=":", prefix="AND")
    and_where_r, _ = where_clause(**filters, placeholder=":", prefix="AND", alias="r.")

    def session_half(c: sqlite3.Connection) -> tuple[Any, dict[str, Totals]]:
        facts = c.execute(SESSIONS.format(aw=aw, awr=and_where_r), params).fetchone()
        groups: dict[str, Totals] = {}
        if breakdown is not None:
            keys = "session_id" if breakdown == "session" else "user_id, session_id"
            col = "session_id" if breakdown == "session" else "user_id"
            sql = TOTALS.format(group_select=f"{col},", per_session=PER_SESSION.format(keys=keys, where=where),
                                group_by=f"GROUP BY {col}")
            for r in c.execute(sql, params):
                if r[0] is not None:
                    groups[str(r[0])] = totals_of(r[1:])
        return facts, groups

    def rest_half(c: sqlite3.Connection) -> tuple[Totals, dict[str, ToolCounts], list[Any], list[Any], list[Any]]:
        totals, tools = count_events(c.execute(EVENT_COUNTS.format(where=where), params))
        counts = c.execute(SESSION_COUNTS.format(where=where, aw=aw), params).fetchone()
        totals.sessions, totals.started_sessions = int(counts[0]), int(counts[1])
        percentile = PERCENTILE.replace("tool_name = ?", "tool_name = :tool").replace("OFFSET ?", "OFFSET :offset")
        for name, lat_n, lat_us, lat_max in c.execute(LATENCY.format(aw=aw), params).fetchall():
            tc = tools.get(name) or tools.setdefault(name, ToolCounts(name))
            tc.latency_count, tc.latency_sum, tc.latency_max = int(lat_n), int(lat_us) / 1000.0, lat_max
            if tc.latency_count:
                sql = percentile.format(and_where=aw)
                tc.latency_p50 = c.execute(sql, {**params, "tool": name,
                                                 "offset": rank_offset(tc.latency_count, 0.5)}).fetchone()[0]
                tc.latency_p95 = c.execute(sql, {**params, "tool": name,
                                                 "offset": rank_offset(tc.latency_count, 0.95)}).fetchone()[0]
        confusion = [(k, a, b, int(n)) for k, a, b, n in c.execute(CONFUSION.format(and_where=aw), params)
                     if a is not None]
        hotspots = [(t, f, k, int(n), ex) for t, f, k, n, ex in c.execute(
            HOTSPOTS.format(and_where_r=and_where_r), params)]
        loops = [(s, t, h, int(n)) for s, t, h, n in c.execute(RETRY_LOOPS.format(and_where=aw), params)]
        return totals, tools, confusion, hotspots, loops

    (facts, groups), (totals, tools, confusion, hotspots, loops) = run_halves(session_half, conn, rest_half, second)
    set_session_facts(totals, (totals.sessions, totals.started_sessions, *facts))
    return Aggregates(totals, list(tools.values()), confusion, hotspots, loops, groups)



STARTS = """
    SELECT session_id, MIN(created_at), json_extract(metadata, '$.release'), user_id,
        json_extract(metadata, '$.client_name'), json_extract(metadata, '$.client_version')
    FROM raw_analytics
    WHERE event_name = 'session_start' AND +session_id IS NOT NULL {aw}
    GROUP BY session_id
"""


def session_starts(conn: sqlite3.Connection, filters: dict[str, Any]) -> dict[str, SessionStart]:
    """Each session's ``session_start``: when, its release, user and client."""
    aw, _ = where_clause(**filters, placeholder=":", prefix="AND")
    return {str(sid): session_start_of(parse_timestamp(at), rel, user, cn, cv)
            for sid, at, rel, user, cn, cv in conn.execute(STARTS.format(aw=aw), named_params(**filters))}


def session_totals(conn: sqlite3.Connection, sessions: set[str] | None = None) -> dict[str, Totals]:
    """Each session's counts over all its events, in one pass over the session index (index-only: no filter
    on other columns); ``sessions`` keeps only those."""
    sql = PER_SESSION.format(keys="session_id", where="WHERE session_id IS NOT NULL")
    return {str(row[0]): session_totals_of(row[1:]) for row in conn.execute(sql)
            if sessions is None or row[0] in sessions}


WINDOWED = """
    WITH starts AS (
        SELECT session_id, MIN(created_at) AS at, CAST(json_extract(metadata, '$.release') AS TEXT) AS rel
        FROM raw_analytics
        WHERE event_name = 'session_start' AND +session_id IS NOT NULL {aw} {part}
        GROUP BY session_id),
    per AS ({per_session}),
    s AS (SELECT per.*, {in_before} AS in_before, {in_after} AS in_after
          FROM per JOIN starts USING (session_id))
    {select}
"""


def windowed(conn: sqlite3.Connection, filters: dict[str, Any], windows: tuple[dict[str, Any], dict[str, Any]],
             select: str, part: tuple[str | None, str | None] = (None, None), *,
             narrow: bool = False) -> list[tuple[Any, ...]]:
    """``select`` run over ``s``: one row per session with a ``session_start`` (within ``filters``), its
    ``PER_SESSION`` counts over all its events, and whether its start falls in each window (``in_before``,
    ``in_after``; a window is ``since`` / ``until`` / ``release``, each optional). ``part`` keeps the sessions
    with ``low <= session_id < high`` (either bound optional: see :func:`split_point`). ``narrow`` counts the
    events of the windows' sessions only, found through the session index (for a few thousand sessions of
    a large store; for most of its sessions the one scan of the index is quicker)."""
    aw, _ = where_clause(**filters, placeholder=":", prefix="AND")
    params = named_params(**filters)
    bounds = []
    for mark, op, value in (("part_low", ">=", part[0]), ("part_high", "<", part[1])):
        if value is not None:
            bounds.append(f"AND session_id {op} :{mark}")
            params[mark] = value
    conds, window_params = window_conditions(
        windows, ":{name}", true="1",
        convert=lambda key, value: value if key == "release" else format_timestamp(value))
    params.update(window_params)
    part_sql = " ".join(bounds)
    only = f" AND session_id IN (SELECT session_id FROM starts WHERE {conds[0]} OR {conds[1]})" if narrow else ""
    per = PER_SESSION.format(keys="session_id", where=f"WHERE session_id IS NOT NULL {part_sql}{only}")
    sql = WINDOWED.format(aw=aw, part=part_sql, per_session=per, in_before=conds[0], in_after=conds[1],
                          select=select)
    return [tuple(r) for r in conn.execute(sql, params)]


def sessions_at_most(conn: sqlite3.Connection, windows: tuple[dict[str, Any], dict[str, Any]], limit: int) -> int:
    """An upper bound on the sessions the two windows hold, counted no further than ``limit`` (see
    :func:`~mcp_tracking.metrics.model.starts_bound`): milliseconds through the time index."""
    sql, params = starts_bound(windows, ":{name}", true="1", limit=limit,
                               convert=lambda key, value: format_timestamp(value))
    return int(conn.execute(sql, params).fetchone()[0])


def split_point(conn: sqlite3.Connection, samples: int = 1001, min_rows: int = 50_000) -> str | None:
    """A session id near the events' median session id, from ``samples`` rows at evenly spaced rowids (point
    reads, milliseconds): where :func:`windowed`'s work divides into two halves of about the same size for
    two connections. ``None`` on a table under ``min_rows`` rows, where one pass is quicker than two."""
    top = conn.execute("SELECT MAX(rowid) FROM raw_analytics").fetchone()[0] or 0
    if top < min_rows:
        return None
    marks = ",".join(str(1 + i * (top - 1) // (samples - 1)) for i in range(samples))
    ids = sorted(r[0] for r in conn.execute(f"SELECT session_id FROM raw_analytics WHERE rowid IN ({marks}) "
                                            "AND session_id IS NOT NULL"))
    return ids[len(ids) // 2] if ids else None


TOOL_FACTS = """
    SELECT event_name, tool_name,
        CASE event_name WHEN 'tool_call_retry' THEN json_extract(metadata, '$.retry_reason')
                        WHEN 'tool_call_failed' THEN json_extract(metadata, '$.error_type') END,
        COUNT(*), MIN(session_id)
    FROM raw_analytics
    WHERE event_name IN ('tool_call_retry', 'tool_call_failed', 'answer_incomplete', 'answer_complete') {aw}
    GROUP BY 1, 2, 3
"""

AVAILABLE = """
    SELECT json_extract(metadata, '$.available_tools') FROM raw_analytics
    WHERE event_name = 'hallucinated_tool_call' {aw} ORDER BY created_at DESC LIMIT 1
"""


def tool_facts(conn: sqlite3.Connection, filters: dict[str, Any]) -> tuple[list[tuple[Any, ...]], list[str] | None]:
    """Per (event, tool, reason or error type): how many, and one session where it happened; and the server's
    tool list as the newest ``hallucinated_tool_call`` saw it (``None`` without one)."""
    aw, _ = where_clause(**filters, placeholder=":", prefix="AND")
    params = named_params(**filters)
    rows = [tuple(r) for r in conn.execute(TOOL_FACTS.format(aw=aw), params)]
    got = conn.execute(AVAILABLE.format(aw=aw), params).fetchone()
    available = loads(got[0]) if got and got[0] else None
    return rows, [str(t) for t in available] if isinstance(available, list) else None
