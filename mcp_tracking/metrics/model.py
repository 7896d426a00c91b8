"""The metrics' result type, and the one place ratios are derived from counts.

Every backend (SQLite, PostgreSQL, the pure-Python twin) only *counts*; :func:`derive` turns the counts
into ratios for all of them, so the same events give identical numbers whatever the store. A ratio
whose denominator is zero is ``None`` (null in JSON), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

METRIC_KEYS = (
    "task_completion_rate",
    "steps_to_goal",
    "semantic_clarity_score",
    "retry_rate",
    "hallucination_rate",
    "schema_violation_rate",
    "recovery_rate",
    "latency_per_step",
    "tool_popularity",
    "answer_completeness_rate",
)

RETRY_LOOP_MIN_CALLS = 3

#: The one event -> counter mapping: per event name, the :class:`Totals` field that counts it, in the order of
#: those fields. The SQL of both stores (:func:`count_columns`, :func:`sum_columns`) and the Python twin are
#: generated from it.
COUNTED = {
    "tool_call_started": "tool_calls",
    "tool_call_completed": "completed_calls",
    "tool_call_failed": "failed_calls",
    "tool_call_retry": "retries",
    "schema_validation_error": "schema_errors",
    "wrong_tool_error": "wrong_tool_errors",
    "hallucinated_tool_call": "hallucinations",
    "answer_complete": "answers_complete",
    "answer_incomplete": "answers_incomplete",
}
#: per event name, the :class:`ToolCounts` field that counts it
TOOL_FIELDS = {"tool_call_started": "calls", "tool_call_completed": "completed", "tool_call_failed": "failed"}
#: the events that make a session one "with errors" (the design's recovery rate)
ERROR_EVENTS = ("tool_call_failed", "schema_validation_error")


def sql_in(names: tuple[str, ...]) -> str:
    """``('a', 'b')``: a SQL list of event names (constants of this module, never user input)."""
    return "(" + ", ".join(f"'{n}'" for n in names) + ")"


def count_columns(count: str) -> str:
    """One column per counted event, named after its :class:`Totals` field: ``count`` is the dialect's
    conditional count with ``{event}`` for the event name (``SUM(event_name = '{event}')``)."""
    return ",\n        ".join(f"{count.format(event=name)} AS {fld}" for name, fld in COUNTED.items())


def sum_columns() -> str:
    """The sums of :func:`count_columns`' columns, in the same order."""
    return ", ".join(f"COALESCE(SUM({fld}), 0)" for fld in COUNTED.values())


@dataclass
class Totals:
    """Counts over a scope (all events that match the filters)."""

    events: int = 0
    sessions: int = 0  # distinct non-null session ids with any event
    started_sessions: int = 0  # ... with session_start
    completed_sessions: int = 0  # ... with session_start and session_completed (within started_sessions)
    successful_sessions: int = 0  # ... with session_completed and success = true
    steps_in_successful: int = 0  # tool_call_started in successful sessions
    max_steps_successful: int | None = None
    tool_calls: int = 0  # tool_call_started
    completed_calls: int = 0
    failed_calls: int = 0
    retries: int = 0
    schema_errors: int = 0
    wrong_tool_errors: int = 0
    hallucinations: int = 0
    answers_complete: int = 0
    answers_incomplete: int = 0
    sessions_with_errors: int = 0  # ... with tool_call_failed or schema_validation_error
    recovered_sessions: int = 0  # ... of those, with a successful session_completed


_FIELDS = [f.name for f in fields(Totals)]
_AT = _FIELDS.index("tool_calls")
# the counted fields sit together, in COUNTED's order (the SQL rows are read in field order)
assert _FIELDS[_AT:_AT + len(COUNTED)] == list(COUNTED.values()), "COUNTED and Totals disagree"


@dataclass
class ToolCounts:
    tool_name: str
    calls: int = 0  # tool_call_started
    completed: int = 0
    failed: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None


@dataclass
class Aggregates:
    totals: Totals
    tools: list[ToolCounts]
    confusion: list[tuple[str, str, str | None, int]]  # (kind, from, to, count)
    hotspots: list[tuple[str | None, str | None, str | None, int, str | None]]  # (tool, field, kind, count, example)
    retry_loops: list[tuple[str | None, str | None, str | None, int]]  # (session, tool, params_hash, calls)
    groups: dict[str, Totals] = field(default_factory=dict)  # breakdown by session or user


def sql_ints(row: Any) -> list[Any]:
    """A SQL row of counts as integers, NULL kept as ``None`` (a maximum over no rows), as both SQL stores
    return them."""
    return [int(v) if v is not None else None for v in row]


def totals_of(row: Any) -> Totals:
    """A :class:`Totals` from a SQL row in field order (see :func:`sql_ints`)."""
    return Totals(*sql_ints(row))


def ratio(num: float | None, den: float | None, digits: int = 4) -> float | None:
    if num is None or not den:
        return None
    return round(num / den, digits)


def rank_offset(n: int, p: float) -> int:
    """0-based offset of the nearest-rank percentile among ``n`` sorted values."""
    return max(1, math.ceil(p * n)) - 1


def clarity_of(t: Totals) -> float | None:
    """Semantic clarity: 1 - (schema errors + wrong-tool switches + retries) / tool calls (``None`` without
    calls). The one place the formula is written: the metrics, the session list and the worst sessions."""
    share = ratio(t.schema_errors + t.wrong_tool_errors + t.retries, t.tool_calls)
    return None if share is None else round(1.0 - share, 4)


def core_metrics(t: Totals) -> dict[str, Any]:
    """The scalar metrics of one scope (also used per session / per user)."""
    return {
        "task_completion_rate": {
            "value": ratio(t.completed_sessions, t.started_sessions),
            "completed_sessions": t.completed_sessions,
            "total_sessions": t.started_sessions,
        },
        "steps_to_goal": {
            "value": ratio(t.steps_in_successful, t.successful_sessions, 3),
            "successful_sessions": t.successful_sessions,
            "total_steps": t.steps_in_successful,
            "max": t.max_steps_successful,
        },
        "semantic_clarity_score": {
            "value": clarity_of(t),
            "tool_calls": t.tool_calls,
            "schema_errors": t.schema_errors,
            "wrong_tool_errors": t.wrong_tool_errors,
            "retries": t.retries,
        },
        "retry_rate": {"value": ratio(t.retries, t.tool_calls), "retries": t.retries, "tool_calls": t.tool_calls},
        "hallucination_rate": {
            "value": ratio(t.hallucinations, t.sessions),
            "hallucinated_calls": t.hallucinations,
            "sessions": t.sessions,
            "per_call": ratio(t.hallucinations, t.tool_calls),
        },
        "schema_violation_rate": {
            "value": ratio(t.schema_errors, t.tool_calls),
            "schema_errors": t.schema_errors,
            "tool_calls": t.tool_calls,
        },
        "recovery_rate": {
            "value": ratio(t.recovered_sessions, t.sessions_with_errors),
            "recovered_sessions": t.recovered_sessions,
            "sessions_with_errors": t.sessions_with_errors,
        },
        "answer_completeness_rate": {
            "value": ratio(t.answers_complete, t.answers_complete + t.answers_incomplete),
            "complete": t.answers_complete,
            "incomplete": t.answers_incomplete,
        },
    }


@dataclass
class MetricsResult:
    """The ten metrics of a scope, the views beyond them, and the counts behind them.

    ``to_dict()`` is the stable JSON form: the ten metric keys, then ``tool_failure_rate``,
    ``tool_confusion_pairs``, ``unknown_tools``, ``schema_hotspots``, ``retry_loops``, ``scope``, ``totals``
    and ``breakdown``.
    """

    scope: dict[str, Any]
    totals: Totals
    metrics: dict[str, Any]
    tool_failure_rate: list[dict[str, Any]]
    tool_confusion_pairs: list[dict[str, Any]]
    unknown_tools: list[dict[str, Any]]  # see unknown_tools()
    schema_hotspots: list[dict[str, Any]]
    retry_loops: list[dict[str, Any]]
    breakdown: dict[str, dict[str, Any]] | None = None

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def value(self, key: str) -> Any:
        """The headline value of a metric (``None`` when undefined for the scope)."""
        return self.metrics[key].get("value")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.metrics[k] for k in METRIC_KEYS}
        out["tool_failure_rate"] = self.tool_failure_rate
        out["tool_confusion_pairs"] = self.tool_confusion_pairs
        out["unknown_tools"] = self.unknown_tools
        out["schema_hotspots"] = self.schema_hotspots
        out["retry_loops"] = self.retry_loops
        out["scope"] = self.scope
        out["totals"] = asdict(self.totals)
        if self.breakdown is not None:
            out["breakdown"] = self.breakdown
        return out


def unknown_tools(confusion: list[tuple[str, str, str | None, int]]) -> list[dict[str, Any]]:
    """The names agents asked for that are not tools: how often, the tool we suggested, and the tools the
    agents actually called next (what they meant: an alias or a rename to consider). Most asked first."""
    names: dict[str, dict[str, Any]] = {}
    for kind, a, b, n in confusion:
        if kind not in ("hallucination", "after_unknown") or a is None:
            continue
        entry = names.setdefault(a, {"requested_tool_name": a, "count": 0, "suggested": None, "called_next": {},
                                     "_best": -1})
        if kind == "hallucination":
            entry["count"] += n
            if b is not None and n > entry["_best"]:
                entry["suggested"], entry["_best"] = b, n
        elif b is not None:
            entry["called_next"][b] = entry["called_next"].get(b, 0) + n
    out = []
    for entry in sorted(names.values(), key=lambda e: (-e["count"], e["requested_tool_name"])):
        entry.pop("_best")
        entry["called_next"] = dict(sorted(entry["called_next"].items(), key=lambda kv: (-kv[1], kv[0])))
        if entry["count"]:
            out.append(entry)
    return out


def derive(agg: Aggregates, scope: dict[str, Any]) -> MetricsResult:
    """Counts → the ten metrics and the extra views (shared by every backend)."""
    t = agg.totals
    metrics = core_metrics(t)
    tools = sorted(agg.tools, key=lambda c: (-c.calls, c.tool_name))
    total_calls = sum(c.calls for c in tools)
    lat_n = sum(c.latency_count for c in tools)
    lat_sum = sum(c.latency_sum for c in tools)
    maxes = [c.latency_max for c in tools if c.latency_max is not None]
    metrics["latency_per_step"] = {
        "value": ratio(lat_sum, lat_n, 3),
        "count": lat_n,
        "max_ms": max(maxes) if maxes else None,
        "by_tool": [
            {
                "tool_name": c.tool_name,
                "count": c.latency_count,
                "mean_ms": ratio(c.latency_sum, c.latency_count, 3),
                "p50_ms": c.latency_p50,
                "p95_ms": c.latency_p95,
                "max_ms": c.latency_max,
            }
            for c in sorted(tools, key=lambda c: c.tool_name)
            if c.latency_count
        ],
    }
    metrics["tool_popularity"] = {
        "value": tools[0].tool_name if tools and tools[0].calls else None,
        "tools": [
            {"tool_name": c.tool_name, "call_count": c.calls, "share": ratio(c.calls, total_calls)}
            for c in tools
            if c.calls
        ],
    }
    failure: list[dict[str, Any]] = [
        {
            "tool_name": c.tool_name,
            "calls": c.completed + c.failed,
            "failed": c.failed,
            "value": ratio(c.failed, c.completed + c.failed),
        }
        for c in sorted(tools, key=lambda c: c.tool_name)
        if c.completed + c.failed
    ]
    failure.sort(key=lambda r: (-(r["value"] or 0), -r["failed"], r["tool_name"]))
    confusion = [
        {"kind": kind, "from_tool": a, "to_tool": b, "count": n}
        for kind, a, b, n in sorted(agg.confusion, key=lambda r: (-r[3], r[0], r[1] or "", r[2] or ""))
        if kind != "after_unknown"
    ]
    hotspots = [
        {"tool_name": tool, "field": fld, "kind": kind, "count": n, "example_error": ex}
        for tool, fld, kind, n, ex in sorted(agg.hotspots,
                                             key=lambda r: (-r[3], r[0] or "", r[1] or "", r[2] or ""))
    ]
    loops = [
        {"session_id": s, "tool_name": tool, "params_hash": h, "calls": n}
        for s, tool, h, n in sorted(agg.retry_loops, key=lambda r: (-r[3], r[0] or "", r[1] or "", r[2] or ""))
    ]
    breakdown = None
    if agg.groups:
        breakdown = {k: {m: v["value"] for m, v in core_metrics(g).items()} | {"tool_calls": g.tool_calls}
                     for k, g in sorted(agg.groups.items())}
    return MetricsResult(scope, t, metrics, failure, confusion, unknown_tools(agg.confusion), hotspots, loops,
                         breakdown)


def scope_of(**filters: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items()}




def count_events(rows: Any) -> tuple[Totals, dict[str, ToolCounts]]:
    """Totals and per-tool counts from ``(event_name, tool_name, count)`` rows (the SQL stores' first pass)."""
    totals = Totals()
    tools: dict[str, ToolCounts] = {}
    for name, tool, n in rows:
        n = int(n)
        totals.events += n
        attr = COUNTED.get(name)
        if attr is not None:
            setattr(totals, attr, getattr(totals, attr) + n)
        field = TOOL_FIELDS.get(name)
        if field is not None and tool is not None:
            tc = tools.get(tool) or tools.setdefault(tool, ToolCounts(tool))
            setattr(tc, field, getattr(tc, field) + n)
    return totals, tools


class SessionStart(NamedTuple):
    """A session's ``session_start``: when, the release it carries, who, and which client."""

    at: datetime
    release: str | None
    user_id: str | None
    client: str | None  # "name version"


def session_start_of(at: datetime, release: Any, user_id: Any, client_name: Any, client_version: Any) -> SessionStart:
    client = " ".join(str(x) for x in (client_name, client_version) if x is not None) or None
    return SessionStart(at, None if release is None else str(release), None if user_id is None else str(user_id),
                        client)


def add_totals(totals: Sequence[Totals]) -> Totals:
    """The sum of several scopes' counts (maxima as maxima)."""
    out = Totals()
    for t in totals:
        for f in fields(Totals):
            a, b = getattr(out, f.name), getattr(t, f.name)
            if f.name == "max_steps_successful":
                setattr(out, f.name, b if a is None else a if b is None else max(a, b))
            else:
                setattr(out, f.name, a + b)
    return out


def session_totals_of(row: Any) -> Totals:
    """One session's :class:`Totals` from a per-session row: ``n``, the :data:`COUNTED` columns, then
    ``has_start``, ``has_completed``, ``ok``, ``has_error`` (the dialects' ``PER_SESSION`` query)."""
    v = [int(x) if x else 0 for x in row]  # written for speed: compare and serve build one per session
    k = len(COUNTED)
    has_start, has_completed, ok, has_error = v[k + 1:k + 5]
    calls = v[1]
    # positional, in field order: events, sessions, started, completed, successful, steps, max steps, the
    # COUNTED fields (the module asserts they sit together in that order), with errors, recovered
    args: list[Any] = [v[0], 1, has_start, 1 if has_start and has_completed else 0, ok, calls if ok else 0,
                       calls if ok else None, *v[1:k + 1], has_error, 1 if has_error and ok else 0]
    return Totals(*args)


def set_session_facts(totals: Totals, row: Any) -> None:
    """The session-level counts from the SQL stores' sessions pass (eight values, in this order; NULL only for
    max_steps_successful, when no successful session made a tool call)."""
    (totals.sessions, totals.started_sessions, totals.completed_sessions, totals.successful_sessions,
     totals.steps_in_successful, totals.max_steps_successful, totals.sessions_with_errors,
     totals.recovered_sessions) = sql_ints(row)


def window_conditions(windows: tuple[dict[str, Any], dict[str, Any]], placeholder: str, *, true: str,
                      convert: Callable[[str, Any], Any] = lambda key, value: value, at: str = "at"
                      ) -> tuple[list[str], dict[str, Any]]:
    """Each window's condition on a session's start (columns ``at`` and ``rel``), ``before`` then ``after``,
    and their named parameters: ``placeholder`` is the dialect's named mark with ``{name}`` (``:{name}``,
    ``%({name})s``), ``true`` its literal for a window without bounds, ``convert(key, value)`` what a value
    becomes (SQLite compares timestamps as text)."""
    conds: list[str] = []
    params: dict[str, Any] = {}
    for side, window in zip(("before", "after"), windows, strict=True):
        parts = []
        for key, op, column in (("since", ">=", at), ("until", "<", at), ("release", "=", "rel")):
            value = window.get(key)
            if value is not None:
                name = f"{side}_{key}"
                parts.append(f"{column} {op} {placeholder.format(name=name)}")
                params[name] = convert(key, value)
        conds.append("(" + " AND ".join(parts) + ")" if parts else true)
    return conds, params


def starts_bound(windows: tuple[dict[str, Any], dict[str, Any]], placeholder: str, *, true: str, limit: int,
                 convert: Callable[[str, Any], Any] = lambda key, value: value) -> tuple[str, dict[str, Any]]:
    """SQL for a cheap upper bound on the sessions the two windows hold, counted up to ``limit``: the
    ``session_start`` events whose time falls in either window. A session belongs to a window by its first
    start, which is one of these events; a release or a filter only narrows a window further."""
    timed = tuple({k: w.get(k) for k in ("since", "until")} for w in windows)
    conds, params = window_conditions((timed[0], timed[1]), placeholder, true=true, convert=convert,
                                      at="created_at")
    return (f"SELECT COUNT(*) FROM (SELECT 1 FROM raw_analytics WHERE event_name = 'session_start' "
            f"AND ({conds[0]} OR {conds[1]}) LIMIT {int(limit)}) AS capped", params)


def run_halves(first: Callable[[Any], Any], conn: Any, second_half: Callable[[Any], Any],
               second: Any = None) -> tuple[Any, Any]:
    """``(first(conn), second_half(second or conn))``: at once on two threads when there is a ``second``
    connection (the databases run the queries outside the GIL), one after the other on ``conn`` otherwise.
    The caller makes both connections see the same rows."""
    if second is None:
        return first(conn), second_half(conn)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(second_half, second)
        return first(conn), other.result()
