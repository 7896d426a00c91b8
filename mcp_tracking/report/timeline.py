"""One session, call by call: what the agent called, with what, how long it took, what it got back (as far as
the events tell), and what it did next. Rendered as a waterfall (overlapping calls side by side) and a table.

    from mcp_tracking.report.timeline import session_timeline, render_timeline
    html_section = render_timeline(session_timeline("sqlite:///mcp_tracking.db", "conn-1a2b..."))

The static dashboard shows the timelines of the worst sessions (:func:`worst_sessions`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mcp_tracking._json import dumps_str
from mcp_tracking.events import parse_timestamp
from mcp_tracking.metrics import open_source, session_index
from mcp_tracking.metrics.model import clarity_of
from mcp_tracking.report.dashboard import esc
from mcp_tracking.sinks.base import QueryableSink, Sink

#: how much of a call's stored arguments a row shows (they are stored redacted and capped already)
MAX_ARGS_CHARS = 300


@dataclass
class Step:
    """One call (or one request for a name that is not a tool) of a session."""

    tool: str
    at: datetime
    sequence: int | None = None
    arguments: str = ""
    outcome: str = "open"  # completed, failed, refused, unknown name, open (no end recorded)
    duration_ms: float | None = None
    error: str | None = None
    marks: list[str] = field(default_factory=list)  # retry, switch, after an unknown name, completeness, ...
    answer: str | None = None  # the corrective text the agent got, rebuilt from the events
    next_tool: str | None = None  # what the agent called next


@dataclass
class Timeline:
    session_id: str
    user_id: str | None = None
    client: str | None = None
    release: str | None = None
    outcome: str | None = None
    steps: list[Step] = field(default_factory=list)


def _short(value: Any) -> str:
    text = dumps_str(value)
    return text if len(text) <= MAX_ARGS_CHARS else text[:MAX_ARGS_CHARS - 1] + "…"


def session_timeline(source: Sink | str | os.PathLike[str], session_id: str) -> Timeline:
    """The session's steps, in the order the agent made them, from its stored events."""
    sink = open_source(source)
    if not isinstance(sink, QueryableSink):
        raise TypeError(f"{sink!r} cannot be read back")
    tl = Timeline(session_id)
    by_seq: dict[int, Step] = {}
    pending: dict[int, list[str]] = {}  # marks for a call whose started event comes next (the switch)
    for e in sink.iter_events(session_id=session_id):
        name, md = e["event_name"], e.get("metadata") or {}
        at = parse_timestamp(e["created_at"])
        tl.user_id = tl.user_id or e.get("user_id")
        seq = md.get("call_sequence")
        step = by_seq.get(seq) if isinstance(seq, int) else None
        if name == "session_start":
            tl.client = " ".join(str(x) for x in (md.get("client_name"), md.get("client_version")) if x) or None
            tl.release = md.get("release")
        elif name in ("session_completed", "session_failed", "session_abandoned"):
            ok = md.get("success")
            tl.outcome = f"{name.removeprefix('session_')}" + ("" if ok is None else f" (success={str(ok).lower()})")
        elif name == "hallucinated_tool_call":
            suggested = md.get("similar_tool_suggested")
            tl.steps.append(Step(str(md.get("requested_tool_name")), at, None, _short(md.get("tool_params")),
                                 "unknown name", marks=["not a tool"],
                                 answer=f"Unknown tool. Did you mean {suggested!r}?" if suggested else "Unknown tool."))
        elif name == "tool_call_started":
            step = Step(str(md.get("tool_name")), at, seq if isinstance(seq, int) else None,
                        _short(md.get("tool_params")))
            if md.get("after_hallucinated_tool"):
                step.marks.append(f"after unknown {md['after_hallucinated_tool']!r}")
            step.marks += pending.pop(seq, []) if isinstance(seq, int) else []
            tl.steps.append(step)
            if isinstance(seq, int):
                by_seq[seq] = step
        elif name == "tool_call_retry" and step is not None:
            step.marks.append(f"retry #{md.get('retry_attempt')} of call {md.get('original_call_sequence')} "
                              f"({md.get('retry_reason')})")
        elif name == "wrong_tool_error":
            seqs = md.get("call_sequence")
            if isinstance(seqs, list) and len(seqs) == 2 and isinstance(seqs[1], int):
                mark = f"switched from {md.get('first_tool_name')!r} after it failed"
                target = by_seq.get(seqs[1])
                if target is not None:
                    target.marks.append(mark)
                else:  # the contract's order: the switch comes just before the call's tool_call_started
                    pending.setdefault(seqs[1], []).append(mark)
        elif name == "schema_validation_error" and step is not None:
            errors = md.get("validation_errors") or []
            lines = [f"{x.get('field') or '(arguments)'}: {x.get('error')}" for x in errors if isinstance(x, dict)]
            step.marks.append("schema: " + "; ".join(lines)[:300])
            step.outcome = "refused"  # unless it ran (observe mode): completed/failed below overrides
            step.answer = "Invalid arguments: " + "; ".join(lines)[:300]
        elif name in ("tool_call_completed", "tool_call_failed") and step is not None:
            step.outcome = "completed" if name == "tool_call_completed" else "failed"
            step.answer = None  # it ran (observe mode): the schema report was ours, the agent got the result
            step.duration_ms = md.get("execution_time_ms")
            if name == "tool_call_failed":
                step.error = f"{md.get('error_type')}: {md.get('error_message') or ''}".strip(": ")
        elif name in ("answer_complete", "answer_incomplete") and step is not None:
            step.marks.append(name.replace("_", " "))
    for a, b in zip(tl.steps, tl.steps[1:], strict=False):
        a.next_tool = b.tool
    return tl


def worst_sessions(source: Sink | str | os.PathLike[str], *, mcp_name: str | None = None, n: int = 5) -> list[str]:
    """The ``n`` sessions with the lowest semantic clarity (then the most failures): where to look first."""
    starts, totals = session_index(open_source(source), mcp_name=mcp_name)

    def badness(sid: str) -> tuple[float, int, str]:
        t = totals[sid]
        clarity = clarity_of(t)
        return (1.0 if clarity is None else clarity, -(t.failed_calls + t.hallucinations), sid)

    ranked = sorted((sid for sid in starts if sid in totals and totals[sid].tool_calls), key=badness)
    return ranked[:n]


_COLOURS = {"completed": "#10b981", "failed": "#ef4444", "refused": "#f59e0b", "unknown name": "#8b5cf6",
            "open": "#9ca3af"}


def render_timeline(tl: Timeline) -> str:
    """An HTML section: the waterfall (one bar per call from its start for its duration; a name that is not a
    tool is a diamond) and the table of steps."""
    steps = tl.steps
    head = (f'<section class="card timeline" data-session="{esc(tl.session_id)}"><h2>Session '
            f'{esc(tl.session_id)}</h2><p class="sub">user {esc(tl.user_id)} · client {esc(tl.client or "?")}'
            f'{" · release " + esc(tl.release) if tl.release else ""} · outcome {esc(tl.outcome or "none yet")}'
            f" · {len(steps)} steps</p>")
    if not steps:
        return head + '<div class="empty">No calls recorded.</div></section>'
    t0 = min(s.at for s in steps)
    ends = [(s.at - t0).total_seconds() * 1000 + (s.duration_ms or 0) for s in steps]
    total = max(max(ends), 1.0)
    width, label_w, row_h = 720, 200, 18
    height = row_h * len(steps) + 20
    plot = width - label_w - 10
    svg = [f'<svg class="chart waterfall" viewBox="0 0 {width} {height}" role="img">']
    for i, s in enumerate(steps):
        y = i * row_h
        x = label_w + plot * (s.at - t0).total_seconds() * 1000 / total
        name = s.tool if len(s.tool) <= 28 else s.tool[:27] + "…"
        svg.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end"><title>{esc(s.tool)}</title>'
                   f'{esc(name)}</text>')
        colour = _COLOURS.get(s.outcome, "#9ca3af")
        tip = esc(f"{s.tool}: {s.outcome}" + (f", {s.duration_ms} ms" if s.duration_ms is not None else ""))
        if s.outcome == "unknown name":
            svg.append(f'<path class="bar" d="M{x:.1f},{y + 3} l6,6 l-6,6 l-6,-6 z" fill="{colour}" '
                       f'data-tip="{tip}"/>')
        else:
            w = max(plot * (s.duration_ms or 0) / total, 2.0)
            svg.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" rx="2" '
                       f'fill="{colour}" data-tip="{tip}"/>')
    svg.append(f'<text x="{label_w}" y="{height - 4}">0 ms</text>'
               f'<text x="{width - 10}" y="{height - 4}" text-anchor="end">{total:,.0f} ms</text></svg>')
    rows = []
    for i, s in enumerate(steps, 1):
        rows.append(
            f'<tr class="step {esc(s.outcome.replace(" ", "-"))}"><td class="n">{i}</td><td>{esc(s.tool)}</td>'
            f"<td><code>{esc(s.arguments)}</code></td><td>{esc(s.outcome)}</td>"
            f'<td class="n">{"" if s.duration_ms is None else esc(round(s.duration_ms, 1))}</td>'
            f"<td>{esc(s.error or '')}</td><td>{esc(s.answer or '')}</td><td>{esc('; '.join(s.marks))}</td>"
            f"<td>{esc(s.next_tool or '')}</td></tr>")
    table = ("<table><tr><th>#</th><th>Tool</th><th>Arguments (as stored)</th><th>Outcome</th><th>ms</th>"
             "<th>Error</th><th>Answer it got</th><th>Marks</th><th>Then called</th></tr>" + "".join(rows)
             + "</table>")
    return head + "".join(svg) + table + "</section>"
