"""The metrics as a readable terminal table (no dependencies), JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from mcp_tracking.metrics.model import MetricsResult

LABELS = {
    "task_completion_rate": ("Task completion rate", "completed / started sessions"),
    "steps_to_goal": ("Steps to goal", "tool calls per successful session"),
    "semantic_clarity_score": ("Semantic clarity", "1 - (schema + wrong-tool + retries) / calls"),
    "retry_rate": ("Retry rate", "retries / calls"),
    "hallucination_rate": ("Hallucination rate", "unknown-tool calls / sessions"),
    "schema_violation_rate": ("Schema violation rate", "schema errors / calls"),
    "recovery_rate": ("Recovery rate", "sessions with errors that still succeeded"),
    "latency_per_step": ("Latency per step (ms)", "mean execution time of completed calls"),
    "tool_popularity": ("Most used tool", "by tool_call_started"),
    "answer_completeness_rate": ("Answer completeness", "complete / checked answers"),
}
PERCENT = {"task_completion_rate", "retry_rate", "schema_violation_rate", "recovery_rate", "answer_completeness_rate"}


#: C0 and C1 control characters, DEL, and the bidirectional overrides ("Trojan source"): never written raw
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_UNSAFE.update({c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]})


def safe_text(value: Any) -> str:
    """``value`` as text a terminal shows as it is: control characters (escape sequences, OSC titles and
    hyperlinks, carriage returns) and direction overrides become visible ``\\x1b``-style escapes."""
    text = value if isinstance(value, str) else str(value)
    return text if text.isprintable() else text.translate(_UNSAFE)


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading ``'`` (the OWASP rule); numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def fmt(value: Any, *, percent: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value * 100:.1f}%" if percent else f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> str:
    """A box-drawn table; numbers right-aligned; control characters escaped (:func:`safe_text`)."""
    cells = [[safe_text(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def numeric(s: str) -> bool:
        return bool(s) and (s[0].isdigit() or s[0] in "-—") and not s[:1].isalpha()

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    out = []
    if title:
        out.append(safe_text(title).replace("\\x0a", "\n"))
    out.append(line("┌", "┬", "┐"))
    out.append("│" + "│".join(f" {h.ljust(w)} " for h, w in zip(headers, widths, strict=False)) + "│")
    out.append(line("├", "┼", "┤"))
    for r in cells:
        padded = (c.rjust(w) if numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=False))
        out.append("│" + "│".join(f" {c} " for c in padded) + "│")
    if not cells:
        out.append("│" + "│".join(" " * (w + 2) for w in widths) + "│")
    out.append(line("└", "┴", "┘"))
    return "\n".join(out)


def detail(key: str, m: dict[str, Any]) -> str:
    if key == "task_completion_rate":
        return f"{m['completed_sessions']} of {m['total_sessions']} sessions"
    if key == "steps_to_goal":
        return f"{m['successful_sessions']} successful sessions, max {fmt(m['max'])}"
    if key == "semantic_clarity_score":
        return f"{m['schema_errors']} schema, {m['wrong_tool_errors']} wrong-tool, {m['retries']} retries / " \
               f"{m['tool_calls']} calls"
    if key == "retry_rate":
        return f"{m['retries']} of {m['tool_calls']} calls"
    if key == "hallucination_rate":
        return f"{m['hallucinated_calls']} in {m['sessions']} sessions ({fmt(m['per_call'], percent=True)} of calls)"
    if key == "schema_violation_rate":
        return f"{m['schema_errors']} of {m['tool_calls']} calls"
    if key == "recovery_rate":
        return f"{m['recovered_sessions']} of {m['sessions_with_errors']} sessions with errors"
    if key == "latency_per_step":
        return f"{m['count']} calls, max {fmt(m['max_ms'])} ms"
    if key == "tool_popularity":
        tools = m["tools"]
        return ", ".join(f"{t['tool_name']} {t['call_count']}" for t in tools[:3]) if tools else "no calls"
    if key == "answer_completeness_rate":
        return f"{m['complete']} complete, {m['incomplete']} incomplete"
    return ""


def called_next(row: dict[str, Any]) -> str:
    """``lookup (3), search (1)``: what agents called after asking for an unknown name."""
    return ", ".join(f"{tool} ({n})" for tool, n in row["called_next"].items()) or "—"


def render_table(result: MetricsResult) -> str:
    d = result.to_dict()
    scope = ", ".join(f"{k}={v}" for k, v in d["scope"].items() if v is not None) or "all events"
    t = d["totals"]
    parts = [f"mcp-tracking report — {scope}: {t['events']:,} events, {t['sessions']:,} sessions, "
             f"{t['tool_calls']:,} tool calls"]
    rows = []
    for key, (label, _meaning) in LABELS.items():
        m = d[key]
        rows.append([label, fmt(m.get("value"), percent=key in PERCENT), detail(key, m)])
    parts.append(table(["Metric", "Value", "Detail"], rows, title="\nAgent-quality metrics"))
    lat = {r["tool_name"]: r for r in d["latency_per_step"]["by_tool"]}
    fail = {r["tool_name"]: r for r in d["tool_failure_rate"]}
    tool_rows = []
    for tp in d["tool_popularity"]["tools"]:
        name = tp["tool_name"]
        lr, fr = lat.get(name, {}), fail.get(name, {})
        tool_rows.append([name, tp["call_count"], fmt(fr.get("value"), percent=True), fmt(lr.get("p50_ms")),
                          fmt(lr.get("p95_ms")), fmt(lr.get("max_ms"))])
    parts.append(table(["Tool", "Calls", "Failure rate", "p50 ms", "p95 ms", "max ms"], tool_rows,
                       title="\nTools"))
    unknown = d["unknown_tools"]
    if unknown:
        parts.append(table(["Name asked for", "Times", "Suggested", "Called next"],
                           [[r["requested_tool_name"], r["count"], r["suggested"] or "—", called_next(r)]
                            for r in unknown[:15]],
                           title="\nUnknown tool names (not tools: consider an alias or a rename)"))
    switches = [r for r in d["tool_confusion_pairs"] if r["kind"] != "hallucination"]  # those are just above
    if switches:
        parts.append(table(["Failed tool", "Switched to", "Times"],
                           [[r["from_tool"], r["to_tool"] or "—", r["count"]] for r in switches[:15]],
                           title="\nTool confusion (a failed call, then a different tool)"))
    if d["schema_hotspots"]:
        parts.append(table(["Tool", "Field", "Problem", "Times", "Example"],
                           [[r["tool_name"], r["field"] or "(arguments)", r["kind"], r["count"],
                             (r["example_error"] or "")[:48]] for r in d["schema_hotspots"][:15]],
                           title="\nSchema hot-spots"))
    if d.get("breakdown"):
        keys = ["task_completion_rate", "semantic_clarity_score", "retry_rate", "schema_violation_rate",
                "hallucination_rate"]
        parts.append(table(["User or session", "Calls", *[LABELS[k][0] for k in keys]],
                           [[name, v.get("tool_calls", 0), *[fmt(v.get(k), percent=k in PERCENT) for k in keys]]
                            for name, v in d["breakdown"].items()], title="\nBreakdown"))
    if d["retry_loops"]:
        parts.append(table(["Session", "Tool", "Identical calls"],
                           [[r["session_id"], r["tool_name"], r["calls"]] for r in d["retry_loops"][:15]],
                           title="\nRetry loops (one call repeated 3+ times)"))
    return "\n".join(parts)


def render_json(result: MetricsResult) -> str:
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False)


def render_csv(result: MetricsResult) -> str:
    """One row per number: ``metric, subject, value, details``. ``subject`` is the tool, the unknown name, or
    the user / session of a breakdown (empty for a headline metric); ``details`` holds the row's other
    numbers as ``key=value`` pairs. Cells a spreadsheet would run as formulas are neutralised."""
    buf = io.StringIO()
    writer = csv.writer(buf)

    def row(*cells: Any) -> None:
        writer.writerow([csv_cell("" if c is None else c) for c in cells])

    def pairs(d: dict[str, Any]) -> str:
        return ";".join(f"{k}={'' if v is None else v}" for k, v in d.items())

    row("metric", "subject", "value", "details")
    d = result.to_dict()
    for key in LABELS:
        m = d[key]
        row(key, "", m.get("value"), pairs({k: v for k, v in m.items() if k not in ("value", "by_tool", "tools")}))
    for r in d["latency_per_step"]["by_tool"]:
        row("latency_per_step", r["tool_name"], r["mean_ms"],
            pairs({k: r[k] for k in ("count", "p50_ms", "p95_ms", "max_ms")}))
    for r in d["tool_popularity"]["tools"]:
        row("tool_popularity", r["tool_name"], r["call_count"], pairs({"share": r["share"]}))
    for r in d["tool_failure_rate"]:
        row("tool_failure_rate", r["tool_name"], r["value"], pairs({"calls": r["calls"], "failed": r["failed"]}))
    for r in d["unknown_tools"]:
        row("unknown_tools", r["requested_tool_name"], r["count"],
            pairs({"suggested": r["suggested"], "called_next": called_next(r)}))
    for subject, values in (d.get("breakdown") or {}).items():
        row("breakdown", subject, "", pairs(values))
    return buf.getvalue()


VERDICT_MARK = {"better": "better", "worse": "WORSE", "no significant change": "no significant change",
                "too little data": "too little data"}


def render_comparison(result: Any) -> str:
    """``mcp-tracking compare`` as a table: each metric before and after, the change and its 95% interval."""
    rows = []
    for c in result.changes:
        percent = c.metric in PERCENT or c.metric in ("semantic_clarity_score",)
        interval = "—" if c.low is None else f"{fmt_signed(c.low, percent)} to {fmt_signed(c.high, percent)}"
        rows.append([LABELS[c.metric][0], fmt(c.before, percent=percent), fmt(c.after, percent=percent),
                     "—" if c.difference is None else fmt_signed(c.difference, percent), interval,
                     f"{c.n_before} / {c.n_after}", VERDICT_MARK[c.verdict]])
    head = (f"before: {result.before.label()} ({result.sessions_before:,} sessions)\n"
            f"after:  {result.after.label()} ({result.sessions_after:,} sessions)")
    note = ("\nIntervals are 95%, over sessions (Newcomb for session rates, bootstrap or delta method for the rest);"
            " a change is called only when its interval excludes 0.")
    return head + "\n" + table(["Metric", "Before", "After", "Change", "95% interval", "n (sessions)", "Verdict"],
                               rows, title="\nWhat changed") + note


def fmt_signed(value: float, percent: bool) -> str:
    """A change with its sign: ``+12.5 pts`` for rates (percentage points), ``-0.4`` otherwise."""
    if percent:
        return f"{value * 100:+.1f} pts"
    return f"{value:+,.3f}".rstrip("0").rstrip(".")


def render_advice(items: Sequence[Any]) -> str:
    """``mcp-tracking advise``: the recommendations, most evidence first, each with why and where to look."""
    if not items:
        return ("No advice: the events do not show any pattern often enough (each rule needs 3 occurrences; "
                "see mcp_tracking.metrics.advice).")
    lines = [f"{len(items)} things to change, most evidence first:"]
    for i, a in enumerate(items, 1):
        lines.append(f"\n{i}. {safe_text(a.title)}  [{a.kind}]")
        lines.append(f"   {safe_text(a.detail)}")
        if a.sessions:
            lines.append(f"   sessions: {', '.join(safe_text(s) for s in a.sessions)}")
    return "\n".join(lines)
