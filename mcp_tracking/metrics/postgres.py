"""The metrics computed inside PostgreSQL: the SQLite passes in PostgreSQL's dialect.

Same counts, same rules (see :mod:`mcp_tracking.metrics.sqlite`), but a different plan, measured: the
session facts in one pass over the session index with only the few per-session values they need, and
beside it (on a second connection sharing the snapshot) the counts per event type and tool, latency with
its nearest-rank percentiles (``percentile_disc``) from the event index, and the extra views from their
own event types. With a breakdown, the per-group totals count everything per session. Filters are ``%s``
parameters."""

from __future__ import annotations

from typing import Any

from mcp_tracking.metrics.model import (
    COUNTED,
    ERROR_EVENTS,
    RETRY_LOOP_MIN_CALLS,
    Aggregates,
    SessionStart,
    ToolCounts,
    Totals,
    count_columns,
    count_events,
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
from mcp_tracking.sinks.sql import where_clause

# the counted event types (per tool for the three tool_call_* ones), read from the event index
EVENT_COUNTS = f"""
    SELECT event_name, tool_name, COUNT(*) FROM raw_analytics
    WHERE event_name IN {sql_in(tuple(COUNTED))} {{and_where}}
    GROUP BY event_name, tool_name
"""

# Nearest-rank percentiles: percentile_disc(p) is the value at 1-based position ceil(p * n), as rank_offset.
LATENCY = """
    SELECT tool_name, COUNT(execution_time_ms),
        COALESCE(SUM(floor(execution_time_ms * 1000 + 0.5)::bigint), 0), MAX(execution_time_ms),
        percentile_disc(0.5) WITHIN GROUP (ORDER BY execution_time_ms),
        percentile_disc(0.95) WITHIN GROUP (ORDER BY execution_time_ms)
    FROM raw_analytics
    WHERE event_name = 'tool_call_completed' AND tool_name IS NOT NULL AND execution_time_ms IS NOT NULL {and_where}
    GROUP BY tool_name
"""

# Per session: whether it started, completed, succeeded, and saw an error (shared by both session passes).
_SESSION_FLAGS = f"""
        bool_or(event_name = 'session_start')::int AS has_start,
        bool_or(event_name = 'session_completed')::int AS has_completed,
        COALESCE(bool_or(event_name = 'session_completed' AND success), false)::int AS ok,
        bool_or(event_name IN {sql_in(ERROR_EVENTS)})::int AS has_error"""

# Over the sessions: the events and the session facts in set_session_facts' order (the event counts, which
# TOTALS sums per group, go between the steps and the errors).
_FACTS_HEAD = """
        COALESCE(SUM(n), 0),
        COUNT(session_id),
        COALESCE(SUM(has_start) FILTER (WHERE session_id IS NOT NULL), 0),
        COALESCE(SUM(has_completed) FILTER (WHERE session_id IS NOT NULL AND has_start = 1), 0),
        COALESCE(SUM(ok) FILTER (WHERE session_id IS NOT NULL), 0),
        COALESCE(SUM(tool_calls) FILTER (WHERE session_id IS NOT NULL AND ok = 1), 0),
        MAX(tool_calls) FILTER (WHERE session_id IS NOT NULL AND ok = 1),"""
_FACTS_TAIL = """
        COALESCE(SUM(has_error) FILTER (WHERE session_id IS NOT NULL), 0),
        COUNT(*) FILTER (WHERE session_id IS NOT NULL AND has_error = 1 AND ok = 1)"""

# The session facts without a breakdown: only the per-session values they need (the event counts come from
# EVENT_COUNTS on the other connection).
SESSION_FACTS = f"""
    SELECT {_FACTS_HEAD}{_FACTS_TAIL}
    FROM (SELECT session_id, COUNT(*) AS n,
              COUNT(*) FILTER (WHERE event_name = 'tool_call_started') AS tool_calls,{_SESSION_FLAGS}
          FROM raw_analytics {{where}}
          GROUP BY session_id) AS s
"""

# With a breakdown, every count per session, summed per group.
PER_SESSION = f"""
    SELECT {{keys}}, COUNT(*) AS n,
        {count_columns("COUNT(*) FILTER (WHERE event_name = '{event}')")},{_SESSION_FLAGS}
    FROM raw_analytics {{where}}
    GROUP BY {{keys}}
"""

TOTALS = f"""
    SELECT {{group_select}} {_FACTS_HEAD}
        {sum_columns()},{_FACTS_TAIL}
    FROM ({{per_session}}) AS s
    {{group_by}}
"""

CONFUSION = """
    SELECT 'hallucination', tool_name, metadata->>'similar_tool_suggested', COUNT(*)
    FROM raw_analytics WHERE event_name = 'hallucinated_tool_call' {and_where}
    GROUP BY 2, 3
    UNION ALL
    SELECT 'wrong_tool', metadata->>'first_tool_name', metadata->>'second_tool_name', COUNT(*)
    FROM raw_analytics WHERE event_name = 'wrong_tool_error' {and_where}
    GROUP BY 2, 3
    UNION ALL
    SELECT 'after_unknown', metadata->>'after_hallucinated_tool', tool_name, COUNT(*)
    FROM raw_analytics WHERE event_name = 'tool_call_started' AND metadata ? 'after_hallucinated_tool' {and_where}
    GROUP BY 2, 3
"""

HOTSPOTS = """
    SELECT r.tool_name, e.value->>'field', e.value->>'kind', COUNT(*), MIN((e.value->>'error') COLLATE "C")
    FROM raw_analytics AS r
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(r.metadata->'validation_errors') = 'array' THEN r.metadata->'validation_errors'
             ELSE '[]'::jsonb END) AS e(value)
    WHERE r.event_name = 'schema_validation_error' {and_where_r}
    GROUP BY 1, 2, 3
"""

RETRY_LOOPS = f"""
    SELECT session_id, tool_name, params_hash, COUNT(*) + 1
    FROM raw_analytics WHERE event_name = 'tool_call_retry' {{and_where}}
    GROUP BY 1, 2, 3 HAVING COUNT(*) + 1 >= {RETRY_LOOP_MIN_CALLS}
"""


def aggregates(conn: Any, filters: dict[str, Any], *, breakdown: str | None = None,
               second: Any = None) -> Aggregates:
    """Count everything the metrics need within ``filters``; the filters are parameters, never SQL text.

    With ``second`` (another connection to the same database) the two halves run at once, each in its own
    server process: the session pass on ``conn``, the per-tool and extra views on ``second``, both in
    one exported snapshot so they count exactly the same events.
    """
    if breakdown not in (None, "session", "user"):
        raise ValueError("breakdown must be 'session', 'user' or None")
    where, params = where_clause(**filters, placeholder="%s")
    and_where, _ = where_clause(**filters, placeholder="%s", prefix="AND")
    and_where_r, _ = where_clause(**filters, placeholder="%s", prefix="AND", alias="r.")

    def session_half(c: Any) -> tuple[Any, dict[str, Totals]]:
        # PostgreSQL reads the session index once with the few per-session values (its group aggregate beats
        # several narrower passes here, unlike SQLite)
        with c.cursor() as cur:
            cur.execute(SESSION_FACTS.format(where=where), params)
            facts = cur.fetchone()
            groups: dict[str, Totals] = {}
            if breakdown is not None:
                keys = "session_id" if breakdown == "session" else "user_id, session_id"
                col = "session_id" if breakdown == "session" else "user_id"
                cur.execute(TOTALS.format(group_select=f"{col},", group_by=f"GROUP BY {col}",
                                          per_session=PER_SESSION.format(keys=keys, where=where)), params)
                for r in cur.fetchall():
                    if r[0] is not None:
                        groups[str(r[0])] = totals_of(r[1:])
        return facts, groups

    def tool_half(c: Any) -> tuple[Totals, list[ToolCounts], list[Any], list[Any], list[Any]]:
        with c.cursor() as cur:
            cur.execute(EVENT_COUNTS.format(and_where=and_where), params)
            totals, tools = count_events(cur.fetchall())
            cur.execute(LATENCY.format(and_where=and_where), params)
            for name, lat_n, lat_us, lat_max, p50, p95 in cur.fetchall():
                tc = tools.get(name) or tools.setdefault(name, ToolCounts(name))
                tc.latency_count, tc.latency_sum, tc.latency_max = int(lat_n), int(lat_us) / 1000.0, lat_max
                tc.latency_p50, tc.latency_p95 = p50, p95
            cur.execute(CONFUSION.format(and_where=and_where), params * 3)
            confusion = [(k, a, b, int(n)) for k, a, b, n in cur.fetchall() if a is not None]
            cur.execute(HOTSPOTS.format(and_where_r=and_where_r), params)
            hotspots = [(t, f, k, int(n), ex) for t, f, k, n, ex in cur.fetchall()]
            cur.execute(RETRY_LOOPS.format(and_where=and_where), params)
            loops = [(s, t, h, int(n)) for s, t, h, n in cur.fetchall()]
        return totals, list(tools.values()), confusion, hotspots, loops

    try:
        if second is not None:
            from psycopg import IsolationLevel, sql

            conn.rollback()
            for c in (conn, second):
                c.isolation_level = IsolationLevel.REPEATABLE_READ
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
            with second.cursor() as cur:  # the first statement of its transaction: adopt conn's snapshot
                cur.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            for c in (conn, second):  # the halves already use a core each: parallel workers on top only contend
                c.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        (facts, groups), (totals, tools, confusion, hotspots, loops) = run_halves(session_half, conn, tool_half,
                                                                                 second)
        totals.events = int(facts[0])
        set_session_facts(totals, facts[1:])
    finally:
        conn.rollback()
        if second is not None:
            second.rollback()
    return Aggregates(totals, tools, confusion, hotspots, loops, groups)




STARTS = """
    SELECT DISTINCT ON (session_id) session_id, created_at, metadata->>'release', user_id,
        metadata->>'client_name', metadata->>'client_version'
    FROM raw_analytics
    WHERE event_name = 'session_start' AND session_id IS NOT NULL {and_where}
    ORDER BY session_id, created_at
"""


def session_starts(conn: Any, filters: dict[str, Any]) -> dict[str, SessionStart]:
    """Each session's ``session_start``: when, its release, user and client."""
    and_where, params = where_clause(**filters, placeholder="%s", prefix="AND")
    try:
        with conn.cursor() as cur:
            cur.execute(STARTS.format(and_where=and_where), params)
            return {str(sid): session_start_of(at, rel, user, cn, cv) for sid, at, rel, user, cn, cv in cur.fetchall()}
    finally:
        conn.rollback()


def session_totals(conn: Any, sessions: set[str] | None = None) -> dict[str, Totals]:
    """Each session's counts over all its events, in one grouped pass; ``sessions`` keeps only those."""
    try:
        with conn.cursor() as cur:
            cur.execute(PER_SESSION.format(keys="session_id", where="WHERE session_id IS NOT NULL"))
            return {str(row[0]): session_totals_of(row[1:]) for row in cur.fetchall()
                    if sessions is None or row[0] in sessions}
    finally:
        conn.rollback()


WINDOWED = """
    WITH starts AS (
        SELECT DISTINCT ON (session_id) session_id, created_at AS at, metadata->>'release' AS rel
        FROM raw_analytics
        WHERE event_name = 'session_start' AND session_id IS NOT NULL {and_where}
        ORDER BY session_id, created_at),
    per AS ({per_session}),
    s AS (SELECT per.*, {in_before} AS in_before, {in_after} AS in_after
          FROM per JOIN starts USING (session_id))
    {select}
"""


def windowed(conn: Any, filters: dict[str, Any], windows: tuple[dict[str, Any], dict[str, Any]],
             select: str, part: tuple[str | None, str | None] = (None, None), *,
             narrow: bool = False) -> list[tuple[Any, ...]]:
    """``select`` run over ``s``: one row per session with a ``session_start`` (within ``filters``), its
    ``PER_SESSION`` counts over all its events, and whether its start falls in each window (``in_before``,
    ``in_after``; a window is ``since`` / ``until`` / ``release``, each optional). ``part`` is accepted for
    the SQLite dialect's sake and must be whole: :func:`split_point` never splits here. ``narrow`` counts the
    events of the windows' sessions only (for a few thousand sessions of a large store)."""
    if part != (None, None):
        raise ValueError("the PostgreSQL dialect does not split sessions (its planner runs parallel workers)")
    and_where, _ = where_clause(**filters, placeholder="%()", prefix="AND")
    conds, params = window_conditions(windows, "%({name})s", true="TRUE")
    params.update({k: v for k, v in filters.items() if v is not None})
    only = f" AND session_id IN (SELECT session_id FROM starts WHERE {conds[0]} OR {conds[1]})" if narrow else ""
    per = PER_SESSION.format(keys="session_id", where="WHERE session_id IS NOT NULL" + only)
    sql = WINDOWED.format(and_where=and_where, per_session=per, in_before=conds[0], in_after=conds[1],
                          select=select)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.rollback()


def sessions_at_most(conn: Any, windows: tuple[dict[str, Any], dict[str, Any]], limit: int) -> int:
    """An upper bound on the sessions the two windows hold, counted no further than ``limit`` (see
    :func:`~mcp_tracking.metrics.model.starts_bound`): milliseconds through the time index."""
    sql, params = starts_bound(windows, "%({name})s", true="TRUE", limit=limit)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return int(cur.fetchone()[0])
    finally:
        conn.rollback()


def split_point(conn: Any) -> str | None:
    """Never a split: PostgreSQL's planner already gives the session pass parallel workers."""
    return None


TOOL_FACTS = """
    SELECT event_name, tool_name,
        CASE event_name WHEN 'tool_call_retry' THEN metadata->>'retry_reason'
                        WHEN 'tool_call_failed' THEN metadata->>'error_type' END,
        COUNT(*), MIN(session_id)
    FROM raw_analytics
    WHERE event_name IN ('tool_call_retry', 'tool_call_failed', 'answer_incomplete', 'answer_complete') {and_where}
    GROUP BY 1, 2, 3
"""

AVAILABLE = """
    SELECT metadata->'available_tools' FROM raw_analytics
    WHERE event_name = 'hallucinated_tool_call' {and_where} ORDER BY created_at DESC LIMIT 1
"""


def tool_facts(conn: Any, filters: dict[str, Any]) -> tuple[list[tuple[Any, ...]], list[str] | None]:
    """Per (event, tool, reason or error type): how many, and one session where it happened; and the server's
    tool list as the newest ``hallucinated_tool_call`` saw it (``None`` without one)."""
    and_where, params = where_clause(**filters, placeholder="%s", prefix="AND")
    try:
        with conn.cursor() as cur:
            cur.execute(TOOL_FACTS.format(and_where=and_where), params)
            rows = [tuple(r) for r in cur.fetchall()]
            cur.execute(AVAILABLE.format(and_where=and_where), params)
            got = cur.fetchone()
    finally:
        conn.rollback()
    available = got[0] if got else None
    return rows, [str(t) for t in available] if isinstance(available, list) else None
