"""The HTML dashboard: one self-contained file (inline CSS and SVG, no CDN, no network).

Charts: the headline metrics over time, tool popularity, latency per tool (p50/p95/max), tool confusion
pairs, unknown tool names and schema hot-spots, each with the table behind it; then the worst sessions call by
call (:mod:`mcp_tracking.report.timeline`).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from mcp_tracking._version import __version__
from mcp_tracking.metrics import compute_metrics
from mcp_tracking.metrics.model import MetricsResult
from mcp_tracking.report.text import LABELS, PERCENT, called_next, fmt
from mcp_tracking.sinks import sink_from_url
from mcp_tracking.sinks.base import QueryableSink, Sink, SQLStore

PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899"]
TREND_KEYS = ["task_completion_rate", "semantic_clarity_score", "retry_rate", "schema_violation_rate",
              "recovery_rate", "answer_completeness_rate"]

CSS = """
:root{--bg:#f6f7fb;--card:#fff;--ink:#1f2937;--mute:#6b7280;--line:#e5e7eb;--accent:#4f46e5}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
background:var(--bg);color:var(--ink)}header{padding:24px 32px;background:#111827;color:#fff}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#9ca3af}main{padding:24px 32px;display:grid;gap:20px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px}
.kpi .v{font-size:24px;font-weight:650;margin-top:4px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.kpi .v.text{font-size:15px;padding:6px 0 3px}.kpi .l{color:var(--mute);font-size:12px;text-transform:uppercase;
letter-spacing:.04em}.kpi .d{color:var(--mute);font-size:12px;margin-top:2px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:20px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px}
section.card h2{margin:0 0 2px;font-size:15px}section.card p.sub{margin:0 0 10px;color:var(--mute);font-size:12px}
svg{display:block;width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#374151}
table{width:100%;border-collapse:collapse;margin-top:10px;font-size:12px}th,td{text-align:left;padding:5px 8px;
border-bottom:1px solid var(--line)}th{color:var(--mute);font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
details summary{cursor:pointer;color:var(--accent);font-size:12px;margin-top:8px}.legend{display:flex;flex-wrap:wrap;
gap:10px;font-size:12px;color:var(--mute);margin-top:6px}.legend i{display:inline-block;width:10px;height:10px;
border-radius:2px;margin-right:4px;vertical-align:middle}.empty{color:var(--mute);padding:20px 0;text-align:center}
footer{padding:16px 32px;color:var(--mute);font-size:12px}
.timeline code{font-size:11px;word-break:break-all}.timeline tr.failed td{background:#fef2f2}
.timeline tr.refused td{background:#fffbeb}.timeline tr.unknown-name td{background:#f5f3ff}
#worst details{margin-top:8px}
"""

SCRIPT = """
document.querySelectorAll('svg [data-tip]').forEach(function(el){
  var t=document.createElementNS('http://www.w3.org/2000/svg','title');t.textContent=el.getAttribute('data-tip');
  el.appendChild(t);});
document.body.setAttribute('data-rendered','1');
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp


def hbar_chart(rows: Sequence[tuple[str, Sequence[float | None]]], series: Sequence[str], *, unit: str = "",
               chart_id: str, percent: bool = False) -> str:
    """Horizontal bars, one group per row and one bar per series."""
    if not rows:
        return '<div class="empty">No data in this scope.</div>'
    label_w, width, bar_h, gap = 230, 720, 14, 10
    group_h = bar_h * len(series) + gap
    height = group_h * len(rows) + 24
    top = max((v or 0) for _, vals in rows for v in vals) or 1.0
    vmax = 1.0 if percent else _nice_max(top)
    plot_w = width - label_w - 60
    out = [f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" role="img">']
    for i in range(5):
        x = label_w + plot_w * i / 4
        out.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#eef0f4"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
                   f'{fmt(vmax * i / 4, percent=percent)}{unit}</text>')
    for r, (label, vals) in enumerate(rows):
        y0 = r * group_h
        short = label if len(label) <= 34 else label[:33] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y0 + group_h / 2:.1f}" text-anchor="end" '
                   f'dominant-baseline="middle"><title>{esc(label)}</title>{esc(short)}</text>')
        for s, v in enumerate(vals):
            w = 0 if v is None else plot_w * v / vmax
            y = y0 + s * bar_h
            tip = f"{label} — {series[s]}: {fmt(v, percent=percent)}{unit}"
            out.append(f'<rect class="bar" x="{label_w}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{bar_h - 2}" '
                       f'rx="2" fill="{PALETTE[s % len(PALETTE)]}" data-tip="{esc(tip)}"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h / 2:.1f}" dominant-baseline="middle">'
                       f'{fmt(v, percent=percent)}</text>')
    out.append("</svg>")
    if len(series) > 1:
        out.append('<div class="legend">' + "".join(
            f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(s)}</span>'
            for i, s in enumerate(series)) + "</div>")
    return "".join(out)


def line_chart(buckets: Sequence[datetime], series: dict[str, list[float | None]], *, chart_id: str) -> str:
    """Lines over time for ratios in [0, 1] (values can dip below 0 for clarity)."""
    if len(buckets) < 1 or not series:
        return '<div class="empty">No data in this scope.</div>'
    width, height, left, bottom, top_pad = 720, 260, 44, 28, 10
    plot_w, plot_h = width - left - 16, height - bottom - top_pad
    values = [v for vs in series.values() for v in vs if v is not None]
    lo = min(0.0, min(values)) if values else 0.0
    hi = max(1.0, max(values)) if values else 1.0
    n = len(buckets)

    def x(i: int) -> float:
        return left + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top_pad + plot_h * (1 - (v - lo) / (hi - lo))

    out = [f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" role="img">']
    for k in range(5):
        tick = lo + (hi - lo) * k / 4
        out.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - 16}" y2="{y(tick):.1f}" stroke="#eef0f4"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick):.1f}" text-anchor="end" dominant-baseline="middle">'
                   f'{tick * 100:.0f}%</text>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        out.append(f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="middle">'
                   f'{esc(_bucket_label(buckets, i))}</text>')
    for s, (name, vals) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        pts = [(x(i), y(v)) for i, v in enumerate(vals) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}" for j, (px, py) in enumerate(pts))
            out.append(f'<path class="series" d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in enumerate(vals):
            if v is not None:
                tip = f"{LABELS[name][0]} {_bucket_label(buckets, i)}: {fmt(v, percent=True)}"
                out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}" data-tip="{esc(tip)}"/>')
    out.append("</svg>")
    out.append('<div class="legend">' + "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(LABELS[k][0])}</span>'
        for i, k in enumerate(series)) + "</div>")
    return "".join(out)


def _bucket_label(buckets: Sequence[datetime], i: int) -> str:
    span = buckets[-1] - buckets[0] if len(buckets) > 1 else timedelta(0)
    b = buckets[i]
    if span >= timedelta(days=2):
        return b.strftime("%m-%d")
    if span >= timedelta(hours=2):
        return b.strftime("%m-%d %H:%M")
    if span >= timedelta(seconds=30):
        return b.strftime("%H:%M:%S")
    return b.strftime("%H:%M:%S.") + f"{b.microsecond // 1000:03d}"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<details><summary>Table</summary><table><tr>{head}</tr>{body}</table></details>"


def time_span(sink: Sink, filters: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """First and last ``created_at`` within the filters (SQL where the store has it)."""
    from mcp_tracking.events import parse_timestamp

    if isinstance(sink, SQLStore):  # SQL stores answer in the database
        return sink.time_span(filters)
    if not isinstance(sink, QueryableSink):
        return None
    lo = hi = None
    for e in sink.iter_events(**filters):
        ts = e["created_at"]
        lo = ts if lo is None or ts < lo else lo
        hi = ts if hi is None or ts > hi else hi
    if lo is None or hi is None:
        return None
    return parse_timestamp(lo), parse_timestamp(hi)


def trend(sink: Sink, filters: dict[str, Any], *, buckets: int = 12,
          progress: Callable[[int, int], None] | None = None) -> tuple[list[datetime], dict[str, list[float | None]]]:
    span = time_span(sink, filters)
    if span is None:
        return [], {}
    start, end = span
    total = max((end - start).total_seconds(), 1e-3)
    n = buckets if (end - start).total_seconds() > 0 else 1
    edges = [start + timedelta(seconds=total * i / n) for i in range(n + 1)]
    edges[-1] = end + timedelta(microseconds=1)
    series: dict[str, list[float | None]] = {k: [] for k in TREND_KEYS}
    for i in range(n):
        f = {**filters, "since": edges[i], "until": edges[i + 1]}
        r = compute_metrics(sink, **f)
        for k in TREND_KEYS:
            series[k].append(r.value(k))
        if progress is not None:
            progress(i + 1, n)
    return edges[:-1], series


def _timespec(buckets: Sequence[datetime]) -> str:
    """Labels fine enough to tell the intervals apart: milliseconds when they are under a second apart."""
    if len(buckets) > 1 and (buckets[1] - buckets[0]).total_seconds() < 1:
        return "milliseconds"
    return "seconds"


def render_dashboard(result: MetricsResult, *, buckets: Sequence[datetime] = (),
                     series: dict[str, list[float | None]] | None = None, title: str = "mcp-tracking",
                     source_label: str = "", timelines: Sequence[str] = ()) -> str:
    d = result.to_dict()
    t = d["totals"]
    scope = ", ".join(f"{k}={v}" for k, v in d["scope"].items() if v is not None) or "all events"
    kpis = []
    for key, (label, meaning) in LABELS.items():
        m = d[key]
        kpis.append(f'<div class="kpi" data-metric="{key}"><div class="l">{esc(label)}</div>'
                    f'<div class="v{" text" if isinstance(m.get("value"), str) else ""}" '
                    f'title="{esc(m.get("value"))}">{esc(fmt(m.get("value"), percent=key in PERCENT))}</div>'
                    f'<div class="d">{esc(meaning)}</div></div>')
    pop = d["tool_popularity"]["tools"]
    lat = d["latency_per_step"]["by_tool"]
    conf = [r for r in d["tool_confusion_pairs"] if r["kind"] != "hallucination"]  # unknown names: their own card
    hot = d["schema_hotspots"]
    fail = d["tool_failure_rate"]
    unknown = d["unknown_tools"]
    cards = [
        ("trend", "Metrics over time", f"{len(buckets)} intervals between first and last event",
         line_chart(list(buckets), series or {}, chart_id="chart-trend"),
         html_table(["From", *[LABELS[k][0] for k in (series or {})]],
                    [[b.isoformat(timespec=_timespec(buckets)), *[fmt(v[i], percent=True)
                                                                 for v in (series or {}).values()]]
                     for i, b in enumerate(buckets)], numeric=tuple(range(1, 1 + len(series or {}))))),
        ("popularity", "Tool popularity", "tool_call_started per tool",
         hbar_chart([(r["tool_name"], [r["call_count"]]) for r in pop[:20]], ["calls"], chart_id="chart-popularity"),
         html_table(["Tool", "Calls", "Share"], [[r["tool_name"], r["call_count"], fmt(r["share"], percent=True)]
                                                 for r in pop], numeric=(1, 2))),
        ("latency", "Latency per tool", "execution time of completed calls (ms): p50, p95, max",
         hbar_chart([(r["tool_name"], [r["p50_ms"], r["p95_ms"], r["max_ms"]]) for r in lat[:20]],
                    ["p50", "p95", "max"], unit="", chart_id="chart-latency"),
         html_table(["Tool", "Calls", "Mean", "p50", "p95", "Max"],
                    [[r["tool_name"], r["count"], fmt(r["mean_ms"]), fmt(r["p50_ms"]), fmt(r["p95_ms"]),
                      fmt(r["max_ms"])] for r in lat], numeric=(1, 2, 3, 4, 5))),
        ("confusion", "Tool confusion", "a failed call, then a different tool: failed tool → the one switched to",
         hbar_chart([(f"{r['from_tool']} → {r['to_tool'] or '?'}", [r["count"]]) for r in conf[:15]],
                    ["times"], chart_id="chart-confusion"),
         html_table(["Failed tool", "Switched to", "Times"],
                    [[r["from_tool"], r["to_tool"], r["count"]] for r in conf], numeric=(2,))),
        ("unknown", "Unknown tool names", "names agents asked for that are not tools: the suggestion we answered "
         "with, and what they called next (an alias or a rename to consider)",
         hbar_chart([(r["requested_tool_name"], [r["count"]]) for r in unknown[:15]], ["times"],
                    chart_id="chart-unknown"),
         html_table(["Name asked for", "Times", "Suggested", "Called next"],
                    [[r["requested_tool_name"], r["count"], r["suggested"] or "—", called_next(r)] for r in unknown],
                    numeric=(1,))),
        ("hotspots", "Schema hot-spots", "argument fields that fail validation most",
         hbar_chart([(f"{r['tool_name']}.{r['field'] or '(args)'} ({r['kind']})", [r["count"]]) for r in hot[:15]],
                    ["violations"], chart_id="chart-hotspots"),
         html_table(["Tool", "Field", "Problem", "Times", "Example"],
                    [[r["tool_name"], r["field"], r["kind"], r["count"], r["example_error"]] for r in hot],
                    numeric=(3,))),
        ("failures", "Failure rate per tool", "failed / finished calls",
         hbar_chart([(r["tool_name"], [r["value"]]) for r in fail[:20]], ["failure rate"],
                    chart_id="chart-failures", percent=True),
         html_table(["Tool", "Finished calls", "Failed", "Rate"],
                    [[r["tool_name"], r["calls"], r["failed"], fmt(r["value"], percent=True)] for r in fail],
                    numeric=(1, 2, 3))),
    ]
    sections = "".join(
        f'<section class="card" id="{cid}"><h2>{esc(h)}</h2><p class="sub">{esc(sub)}</p>{chart}{tbl}</section>'
        for cid, h, sub, chart, tbl in cards)
    loops = d["retry_loops"]
    loops_html = ""
    if loops:
        loops_html = ('<section class="card" id="loops"><h2>Retry loops</h2><p class="sub">sessions where one call '
                      'was repeated 3+ times</p>' + html_table(
                          ["Session", "Tool", "Identical calls"],
                          [[r["session_id"], r["tool_name"], r["calls"]] for r in loops], numeric=(2,))
                      .replace("<details>", "<details open>") + "</section>")
    worst = ""
    if timelines:
        worst = ('<section class="card" id="worst"><h2>The worst sessions, call by call</h2><p class="sub">lowest '
                 'semantic clarity first: what the agent called, with what, what it got back, what it did next</p>'
                 + "".join(f"<details><summary>{i}. session</summary>{t}</details>" for i, t in enumerate(timelines, 1))
                 + "</section>")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{esc(title)} — agent-quality dashboard</title><style>{CSS}</style></head>
<body><header><h1>{esc(title)} · agent-quality dashboard</h1>
<p>{esc(scope)} · {t['events']:,} events · {t['sessions']:,} sessions · {t['tool_calls']:,} tool calls
{(' · ' + esc(source_label)) if source_label else ''}</p></header>
<main><div class="kpis">{''.join(kpis)}</div><div class="grid">{sections}</div>{loops_html}{worst}</main>
<footer>Generated {generated} by mcp-tracking {esc(__version__)}. Definitions: docs/metrics.md.</footer>
<script>{SCRIPT}</script></body></html>
"""


def write_dashboard(source: Sink | str | os.PathLike[str], out: str | os.PathLike[str], *,
                    progress: Callable[[int, int], None] | None = None, worst: int = 5,
                    **filters: Any) -> MetricsResult:
    """Compute the metrics (and their trend) for ``source`` and write the dashboard to ``out``, with the
    timelines of the ``worst`` sessions (lowest semantic clarity first)."""
    sink = source if isinstance(source, Sink) else sink_from_url(source, read_only=True)
    result = compute_metrics(sink, **filters)
    norm = {k: filters.get(k) for k in ("session_id", "user_id", "mcp_name", "since", "until")}
    buckets, series = trend(sink, norm, progress=progress)
    from mcp_tracking.report.timeline import render_timeline, session_timeline, worst_sessions

    timelines = [render_timeline(session_timeline(sink, sid))
                 for sid in worst_sessions(sink, mcp_name=filters.get("mcp_name"), n=worst)] if worst else []
    page = render_dashboard(result, buckets=buckets, series=series, title=filters.get("mcp_name") or "mcp-tracking",
                            source_label=str(source) if not isinstance(source, Sink) else repr(source),
                            timelines=timelines)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return result
