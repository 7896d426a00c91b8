"""The pure-Python twin of the SQL metrics, for stores that cannot run SQL (memory, JSON lines).

It reads the same fields the SQL reads (:func:`~mcp_tracking.sinks.rows.extracted`) and counts by the
same rules (:data:`~mcp_tracking.metrics.model.COUNTED`), so the same events give identical numbers (a test
checks this on random sessions).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mcp_tracking.metrics.model import (
    COUNTED,
    ERROR_EVENTS,
    RETRY_LOOP_MIN_CALLS,
    Aggregates,
    ToolCounts,
    Totals,
    rank_offset,
)
from mcp_tracking.sinks.rows import extracted


@dataclass
class _Session:
    n: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    has_start: bool = False
    has_completed: bool = False
    ok: bool = False
    has_error: bool = False


def _sum(sessions: dict[Any, _Session]) -> Totals:
    t = Totals()
    for sid, s in sessions.items():
        c = s.counts
        t.events += s.n
        for fld in COUNTED.values():
            setattr(t, fld, getattr(t, fld) + c[fld])
        session_id = sid[-1] if isinstance(sid, tuple) else sid
        if session_id is None:
            continue
        t.sessions += 1
        t.started_sessions += s.has_start
        t.completed_sessions += s.has_completed and s.has_start  # a rate's numerator within its denominator
        t.successful_sessions += s.ok
        t.sessions_with_errors += s.has_error
        t.recovered_sessions += s.has_error and s.ok
        if s.ok:
            t.steps_in_successful += c["tool_calls"]
            t.max_steps_successful = max(t.max_steps_successful or 0, c["tool_calls"])
    return t


def aggregates(events: Iterable[dict[str, Any]], *, breakdown: str | None = None) -> Aggregates:
    """Count everything the metrics need from already-filtered events."""
    if breakdown not in (None, "session", "user"):
        raise ValueError("breakdown must be 'session', 'user' or None")
    sessions: dict[Any, _Session] = defaultdict(_Session)
    by_user: dict[tuple[Any, Any], _Session] = defaultdict(_Session)
    tools: dict[str, ToolCounts] = {}
    latencies: dict[str, list[float]] = defaultdict(list)
    lat_us: dict[str, int] = defaultdict(int)
    confusion: dict[tuple[str, Any, Any], int] = defaultdict(int)
    hotspots: dict[tuple[Any, Any, Any], list[Any]] = {}
    retries: dict[tuple[Any, Any, Any], int] = defaultdict(int)
    for e in events:
        name = e["event_name"]
        md = e.get("metadata") or {}
        sid = e.get("session_id")
        tool, phash, ms, ok = extracted(md)
        targets = [sessions[sid]]
        if breakdown == "user":
            targets.append(by_user[(e.get("user_id"), sid)])
        for s in targets:
            s.n += 1
            key = COUNTED.get(name)
            if key:
                s.counts[key] += 1
            if name == "session_start":
                s.has_start = True
            elif name == "session_completed":
                s.has_completed = True
                if ok == 1:
                    s.ok = True
            if name in ERROR_EVENTS:
                s.has_error = True
        if name in ("tool_call_started", "tool_call_completed", "tool_call_failed") and tool is not None:
            tc = tools.get(tool)
            if tc is None:
                tc = tools[tool] = ToolCounts(tool)
            if name == "tool_call_started":
                tc.calls += 1
                after = md.get("after_hallucinated_tool")
                if after is not None:
                    confusion[("after_unknown", after, tool)] += 1
            elif name == "tool_call_failed":
                tc.failed += 1
            else:
                tc.completed += 1
                if ms is not None:
                    latencies[tool].append(ms)
                    lat_us[tool] += math.floor(ms * 1000 + 0.5)  # integer µs, rounded as the SQL does
        elif name == "hallucinated_tool_call" and tool is not None:
            confusion[("hallucination", tool, md.get("similar_tool_suggested"))] += 1
        elif name == "wrong_tool_error" and md.get("first_tool_name") is not None:
            confusion[("wrong_tool", md.get("first_tool_name"), md.get("second_tool_name"))] += 1
        elif name == "schema_validation_error" and isinstance(md.get("validation_errors"), list):
            for item in md["validation_errors"]:
                item = item if isinstance(item, dict) else {}
                k = (tool, item.get("field"), item.get("kind"))
                err = item.get("error")
                hit = hotspots.get(k)
                if hit is None:
                    hotspots[k] = [1, err]
                else:
                    hit[0] += 1
                    if err is not None and (hit[1] is None or err < hit[1]):
                        hit[1] = err
        elif name == "tool_call_retry":
            retries[(sid, tool, phash)] += 1
    for tool, values in latencies.items():
        values.sort()
        tc = tools[tool]
        tc.latency_count = len(values)
        tc.latency_sum = lat_us[tool] / 1000.0
        tc.latency_max = values[-1]
        tc.latency_p50 = values[rank_offset(len(values), 0.5)]
        tc.latency_p95 = values[rank_offset(len(values), 0.95)]
    groups: dict[str, Totals] = {}
    if breakdown == "session":
        groups = {str(sid): _sum({sid: s}) for sid, s in sessions.items() if sid is not None}
    elif breakdown == "user":
        per_user: dict[Any, dict[Any, _Session]] = defaultdict(dict)
        for (user, sid), s in by_user.items():
            per_user[user][(user, sid)] = s
        groups = {str(u): _sum(ss) for u, ss in per_user.items() if u is not None}
    return Aggregates(
        _sum(sessions),
        list(tools.values()),
        [(k, a, b, n) for (k, a, b), n in confusion.items()],
        [(t, f, k, v[0], v[1]) for (t, f, k), v in hotspots.items()],
        [(s, t, h, n + 1) for (s, t, h), n in retries.items() if n + 1 >= RETRY_LOOP_MIN_CALLS],
        groups,
    )
