"""``mcp-tracking serve``: a local, live, read-only web UI over a store (starlette + uvicorn, which the ``mcp``
SDK already brings).

    mcp-tracking serve --db sqlite:///mcp_tracking.db            # http://127.0.0.1:8765

Pages: the overview (the ten metrics, their trend in minute / hour / day buckets chosen from the data's
span, breakdowns by user, client and tool), the sessions (filter, sort, paginate), one session call by call
(:mod:`mcp_tracking.report.timeline`), one tool (failures, latency, schema hot-spots, unknown names meant for
it), ``advise`` and ``compare``. Costly parts are computed on threads of their own and kept until the store
changes, so no request waits on them (see :class:`Store`); names the agents chose are escaped everywhere.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from mcp_tracking.metrics import compute_metrics, open_source, session_index
from mcp_tracking.metrics.model import SessionStart, Totals, add_totals, clarity_of, core_metrics
from mcp_tracking.report.dashboard import CSS, SCRIPT, esc, html_table, line_chart
from mcp_tracking.report.text import LABELS, PERCENT, called_next, fmt
from mcp_tracking.report.timeline import render_timeline, session_timeline
from mcp_tracking.sinks.base import Sink, SQLStore

PAGE_SIZE = 50
TREND_KEYS = ["task_completion_rate", "semantic_clarity_score", "retry_rate", "schema_violation_rate"]
#: bucket sizes for the trend, smallest first; the first that gives at most MAX_BUCKETS buckets is used
BUCKETS = [("minute", timedelta(minutes=1)), ("5 minutes", timedelta(minutes=5)), ("15 minutes", timedelta(minutes=15)),
           ("hour", timedelta(hours=1)), ("6 hours", timedelta(hours=6)), ("day", timedelta(days=1)),
           ("week", timedelta(days=7))]
MAX_BUCKETS = 60
SORTS = {"started": lambda r: r["started"], "clarity": lambda r: (r["clarity"] is None, r["clarity"] or 0),
         "errors": lambda r: r["errors"], "steps": lambda r: r["steps"], "retries": lambda r: r["retries"]}
OUTCOMES = ("succeeded", "completed, not successful", "no outcome")
#: ``mcp-tracking serve``'s interpreter switch interval (Python's default is 5 ms): a request handled while a
#: background thread reads the store gets the interpreter back within 1 ms, not 5, at each of the many
#: hand-offs a request makes. Set by ``serve()`` for its own process only (``build_app`` mounted in someone
#: else's app leaves theirs alone). On a 1M-event store the slowest response during the warm-up went from
#: 320-420 ms to 175-240 ms (benchmarks/bench_serve.py).
SWITCH_INTERVAL = 0.001


def bucket_size(span: timedelta) -> tuple[str, timedelta]:
    """The trend's bucket: minute, hour, day... whichever keeps the count at or under :data:`MAX_BUCKETS`."""
    for name, size in BUCKETS:
        if span / size <= MAX_BUCKETS:
            return name, size
    return BUCKETS[-1]


def _outcome(t: Totals) -> str:
    if t.successful_sessions:
        return "succeeded"
    return "completed, not successful" if t.completed_sessions else "no outcome"


class NotReady(Exception):
    """A part of the page is still being read from the store (the request does not wait for it)."""

    def __init__(self, key: str, started: float) -> None:
        super().__init__(key)
        self.key, self.started = key, started


class _Pending:
    __slots__ = ("done", "error", "started", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.started = time.monotonic()
        self.value: Any = None
        self.error: BaseException | None = None


class Store:
    """What the pages read: the store, with what is costly to compute (the per-session index, the metrics, the
    session rows, the overview, advice, comparisons) kept between requests.

    - **No request waits long.** A part not yet computed is computed on a thread of its own; the request waits
      at most ``wait`` seconds for it and otherwise gets a short "still reading" page that reloads itself
      (:class:`NotReady`). ``warm()`` starts the usual parts as the server starts.
    - **A live store.** Its event count is checked at most every ``refresh`` seconds (a memory or JSON-lines
      store, which cannot tell, counts as changed every ``refresh`` seconds). When it changed, the
      pages go on being served from the figures kept (each says "as of" when they were read) while a
      background thread computes the new ones, which then replace them whole.
    """

    def __init__(self, source: Sink | str | os.PathLike[str], mcp_name: str | None = None, *,
                 refresh: float = 10.0, wait: float = 0.1) -> None:
        self.sink = open_source(source)
        self.mcp_name = mcp_name
        self.refresh = refresh
        self.wait = wait
        self._lock = threading.Lock()
        self._local = threading.local()  # the rebuilding thread fills a new generation; fill threads nest
        self._version = -2
        self._generation = 0  # bumped whenever the kept figures are replaced
        self._checked_at = 0.0
        self._rebuilding = False
        self.as_of: datetime | None = None  # when the kept figures were read
        self._memo: dict[str, Any] = {}
        self._fns: dict[str, Callable[[], Any]] = {}  # what a rebuild computes again
        self._filling: dict[str, _Pending] = {}

    def memo(self, key: str, compute: Callable[[], Any], *, rebuild: bool = True) -> Any:
        """``compute()``, kept between requests (see the class docs). ``rebuild=False``: dropped, not
        recomputed, when the store changes (one comparison among the many a user may ask for)."""
        building = getattr(self._local, "building", None)
        if building is not None:  # inside a rebuild: the parts of the new generation
            if key not in building:
                building[key] = compute()
            return building[key]
        with self._lock:
            if rebuild:
                self._fns[key] = compute
            self._check()
            if key in self._memo:
                return self._memo[key]
            pending = self._filling.get(key)
            owner = pending is None
            if pending is None:
                pending = self._filling[key] = _Pending()
            generation = self._generation
        nested = getattr(self._local, "filling", False)
        if owner:
            if nested:  # already on a fill thread: compute the part it needs right here
                self._fill(key, compute, pending, generation)
            else:
                threading.Thread(target=self._fill_thread, args=(key, compute, pending, generation),
                                 name="mcp-tracking-serve-fill", daemon=True).start()
        if not pending.done.wait(None if nested else self.wait):
            raise NotReady(key, pending.started)
        if pending.error is not None:
            raise pending.error
        return pending.value

    def _fill_thread(self, key: str, compute: Callable[[], Any], pending: _Pending, generation: int) -> None:
        self._local.filling = True
        self._fill(key, compute, pending, generation)

    def _fill(self, key: str, compute: Callable[[], Any], pending: _Pending, generation: int) -> None:
        try:
            pending.value = compute()
        except BaseException as exc:  # handed to every request that waits for it
            pending.error = exc
        finally:
            with self._lock:
                if pending.error is None and generation == self._generation:
                    self._memo[key] = pending.value
                if self._filling.get(key) is pending:
                    del self._filling[key]
            pending.done.set()

    def warm(self) -> None:
        """Start computing what the overview and the session list need, before anyone asks."""
        def run() -> None:
            self._local.filling = True
            try:
                overview(self)
                self.rows()
            except Exception:
                from mcp_tracking._logging import warn_limited

                warn_limited("serve-warm", "mcp_tracking: could not read the store ahead", exc_info=True)
        threading.Thread(target=run, name="mcp-tracking-serve-warm", daemon=True).start()

    def _check(self) -> None:
        """Under the lock: start a rebuild when the store changed. Stores that cannot tell (memory, JSON lines)
        count as changed every ``refresh`` seconds."""
        now = time.monotonic()
        if self._memo and now - self._checked_at < self.refresh:
            return
        self._checked_at = now
        version = self.sink.count() if isinstance(self.sink, SQLStore) else self._version + 1
        if version == self._version:
            return
        if not self._memo:  # nothing kept yet: the parts are computed as they are asked for
            self._version, self.as_of = version, datetime.now(timezone.utc)
        elif not self._rebuilding:
            self._rebuilding = True
            threading.Thread(target=self._rebuild, args=(version,), name="mcp-tracking-serve-refresh",
                             daemon=True).start()

    def _rebuild(self, version: int) -> None:
        fresh: dict[str, Any] = {}
        read_at = datetime.now(timezone.utc)
        self._local.building = fresh
        try:
            for key, fn in list(self._fns.items()):
                if key not in fresh:
                    fresh[key] = fn()
            with self._lock:
                self._memo, self._version, self.as_of = fresh, version, read_at
                self._generation += 1
        except Exception:
            from mcp_tracking._logging import warn_limited

            warn_limited("serve-refresh", "mcp_tracking: could not refresh the figures; keeping the old ones",
                         exc_info=True)
        finally:
            self._local.building = None
            self._rebuilding = False

    def sessions(self) -> tuple[dict[str, SessionStart], dict[str, Totals]]:
        return self.memo("sessions", lambda: session_index(self.sink, mcp_name=self.mcp_name))  # type: ignore[no-any-return]

    def metrics(self) -> dict[str, Any]:
        return self.memo("metrics", lambda: compute_metrics(self.sink, mcp_name=self.mcp_name).to_dict())  # type: ignore[no-any-return]

    def rows(self) -> list[dict[str, Any]]:
        return list(self.memo("rows", self._rows))

    def _rows(self) -> list[dict[str, Any]]:
        starts, totals = self.sessions()
        out = []
        for sid, start in starts.items():
            t = totals.get(sid)
            if t is None:
                continue
            clarity = clarity_of(t)
            out.append({"session_id": sid, "user_id": start.user_id, "client": start.client,
                        "release": start.release, "started": start.at, "steps": t.tool_calls,
                        "errors": t.failed_calls + t.schema_errors + t.hallucinations, "retries": t.retries,
                        "clarity": clarity, "outcome": _outcome(t)})
        return out


# --- the page frame ------------------------------------------------------------------------------

NAV = [("/", "Overview"), ("/sessions", "Sessions"), ("/advise", "Advice"), ("/compare", "Compare")]
EXTRA_CSS = """
nav{display:flex;gap:16px;padding:10px 32px;background:#1f2937}nav a{color:#e5e7eb;text-decoration:none}
nav a:hover{text-decoration:underline}form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end}
form.filters label{font-size:12px;color:var(--mute);display:flex;flex-direction:column;gap:2px}
form.filters input,form.filters select{font:inherit;padding:4px 6px}.pager{display:flex;gap:12px;margin-top:10px}
a{color:var(--accent)}td a{word-break:break-all}.advice li{margin:10px 0}.verdict-better{color:#047857}
.verdict-worse{color:#b91c1c;font-weight:600}
"""


def page(title: str, body: str, *, subtitle: str = "", head: str = "") -> str:
    nav = "".join(f'<a href="{href}">{esc(label)}</a>' for href, label in NAV)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1">{head}<title>{esc(title)} · mcp-tracking</title>'
            f"<style>{CSS}{EXTRA_CSS}</style></head><body><header><h1>{esc(title)}</h1>"
            f"<p>{esc(subtitle)}</p></header><nav>{nav}</nav><main>{body}</main>"
            f"<script>{SCRIPT}</script></body></html>")


def card(title: str, sub: str, inner: str, cid: str = "") -> str:
    return (f'<section class="card"{f" id={chr(34)}{cid}{chr(34)}" if cid else ""}><h2>{esc(title)}</h2>'
            f'<p class="sub">{esc(sub)}</p>{inner}</section>')


def link(href: str, text: Any) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def _session_href(sid: str) -> str:
    return "/sessions/" + quote(sid, safe="")


def _tool_href(tool: str) -> str:
    return "/tools/" + quote(tool, safe="")


# --- pages ---------------------------------------------------------------------------------------


def overview(store: Store) -> str:
    return store.memo("overview", lambda: _overview(store))  # type: ignore[no-any-return]


def _overview(store: Store) -> str:
    d = store.metrics()
    kpis = "".join(
        f'<div class="kpi" data-metric="{k}"><div class="l">{esc(label)}</div>'
        f'<div class="v">{esc(fmt(d[k].get("value"), percent=k in PERCENT))}</div><div class="d">{esc(meaning)}'
        "</div></div>" for k, (label, meaning) in LABELS.items())
    starts, totals = store.sessions()
    trend_html, bucket_name = _trend(starts, totals)
    by_user: dict[str, list[Totals]] = defaultdict(list)
    by_client: dict[str, list[Totals]] = defaultdict(list)
    for sid, start in starts.items():
        if sid in totals:
            by_user[start.user_id or "?"].append(totals[sid])
            by_client[start.client or "unknown client"].append(totals[sid])
    tools = d["tool_popularity"]["tools"]
    fail = {r["tool_name"]: r for r in d["tool_failure_rate"]}
    tool_rows = "".join(
        f'<tr><td>{link(_tool_href(t["tool_name"]), t["tool_name"])}</td><td class="n">{t["call_count"]}</td>'
        f'<td class="n">{esc(fmt(fail.get(t["tool_name"], {}).get("value"), percent=True))}</td></tr>'
        for t in tools)
    body = (f'<div class="kpis">{kpis}</div><div class="grid">'
            + card("Metrics over time", f"sessions by the {bucket_name} they started in", trend_html, "trend")
            + card("By client", "which agent hosts do better", _breakdown(by_client), "by-client")
            + card("By user", "headline metrics per user", _breakdown(by_user), "by-user")
            + card("By tool", "calls and failure rate; open a tool for its details",
                   f"<table><tr><th>Tool</th><th>Calls</th><th>Failure rate</th></tr>{tool_rows}</table>",
                   "by-tool")
            + "</div>")
    t = d["totals"]
    as_of = f" · as of {store.as_of.isoformat(timespec='seconds')}" if store.as_of else ""
    return page(store.mcp_name or "mcp-tracking", body,
                subtitle=f"{t['events']:,} events · {t['sessions']:,} sessions · {t['tool_calls']:,} tool calls{as_of}")


def _trend(starts: dict[str, SessionStart], totals: dict[str, Totals]) -> tuple[str, str]:
    times = [s.at for sid, s in starts.items() if sid in totals]
    if not times:
        return '<div class="empty">No sessions yet.</div>', "bucket"
    lo, hi = min(times), max(times)
    name, size = bucket_size(hi - lo)
    origin = datetime.fromtimestamp((lo.timestamp() // size.total_seconds()) * size.total_seconds(), timezone.utc)
    n = int((hi - origin) / size) + 1
    groups: list[list[Totals]] = [[] for _ in range(n)]
    for sid, s in starts.items():
        if sid in totals:
            groups[int((s.at - origin) / size)].append(totals[sid])
    buckets = [origin + i * size for i in range(n)]
    metrics = [core_metrics(add_totals(g)) if g else None for g in groups]
    series = {k: [m[k]["value"] if m else None for m in metrics] for k in TREND_KEYS}
    return line_chart(buckets, series, chart_id="chart-trend"), name


def _breakdown(groups: dict[str, list[Totals]]) -> str:
    rows = []
    for key, ts in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:25]:
        m = core_metrics(add_totals(ts))
        rows.append([key, len(ts), *[fmt(m[k]["value"], percent=k in PERCENT) for k in TREND_KEYS]])
    return html_table(["", "Sessions", *[LABELS[k][0] for k in TREND_KEYS]], rows,
                      numeric=(1, 2, 3, 4, 5)).replace("<details>", "<details open>")


def sessions_page(store: Store, params: dict[str, str]) -> str:
    rows = store.rows()
    q = params.get("q", "").strip()
    outcome = params.get("outcome", "")
    if q:
        rows = [r for r in rows if q in r["session_id"] or q in (r["user_id"] or "") or q in (r["client"] or "")]
    if outcome in OUTCOMES:
        rows = [r for r in rows if r["outcome"] == outcome]
    sort = params.get("sort", "started") if params.get("sort") in SORTS else "started"
    desc = params.get("order", "desc" if sort == "started" else "asc") == "desc"
    rows.sort(key=SORTS[sort], reverse=desc)
    try:
        pno = max(1, int(params.get("page", "1")))
    except ValueError:
        pno = 1
    total = len(rows)
    shown = rows[(pno - 1) * PAGE_SIZE: pno * PAGE_SIZE]
    body_rows = "".join(
        f'<tr class="session-row"><td>{link(_session_href(r["session_id"]), r["session_id"])}</td>'
        f'<td>{esc(r["user_id"])}</td><td>{esc(r["client"] or "")}</td><td>{esc(r["release"] or "")}</td>'
        f'<td>{esc(r["started"].isoformat(timespec="seconds"))}</td><td class="n">{r["steps"]}</td>'
        f'<td class="n">{r["errors"]}</td><td class="n">{r["retries"]}</td>'
        f'<td class="n">{esc(fmt(r["clarity"]))}</td><td>{esc(r["outcome"])}</td></tr>' for r in shown)
    options = "".join(f'<option value="{esc(o)}"{" selected" if o == outcome else ""}>{esc(o)}</option>'
                      for o in ("", *OUTCOMES))
    sorts = "".join(f'<option value="{s}"{" selected" if s == sort else ""}>{s}</option>' for s in SORTS)
    form = (f'<form class="filters" method="get" action="/sessions"><label>Search (session, user, client)'
            f'<input name="q" value="{esc(q)}"></label><label>Outcome<select name="outcome">{options}</select></label>'
            f'<label>Sort by<select name="sort">{sorts}</select></label><label>Order<select name="order">'
            f'<option value="asc"{"" if desc else " selected"}>ascending</option>'
            f'<option value="desc"{" selected" if desc else ""}>descending</option></select></label>'
            '<button type="submit">Show</button></form>')
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    keep = {k: v for k, v in {"q": q, "outcome": outcome, "sort": sort, "order": "desc" if desc else "asc"}.items()
            if v}
    pager = '<div class="pager">' + (link("/sessions?" + urlencode({**keep, "page": pno - 1}), "← previous")
                                      if pno > 1 else "") + f"<span>page {pno} of {pages} · {total:,} sessions</span>" \
        + (link("/sessions?" + urlencode({**keep, "page": pno + 1}), "next →") if pno < pages else "") + "</div>"
    table = ("<table id='sessions'><tr><th>Session</th><th>User</th><th>Client</th><th>Release</th><th>Started</th>"
             "<th>Steps</th><th>Errors</th><th>Retries</th><th>Clarity</th><th>Outcome</th></tr>"
             f"{body_rows}</table>")
    return page("Sessions", card("Sessions", "open one to see it call by call", form + table + pager, "sessions-card"),
                subtitle=f"{total:,} sessions match")


def session_page(store: Store, session_id: str) -> str:
    tl = session_timeline(store.sink, session_id)
    if not tl.steps and tl.user_id is None:
        return page("Session not found", card("Session not found", "", f"<p>No events for {esc(session_id)}.</p>"))
    return page(f"Session {session_id}", render_timeline(tl), subtitle=f"user {tl.user_id} · {len(tl.steps)} steps")


def tool_page(store: Store, tool: str) -> str:
    d = store.metrics()
    fail = next((r for r in d["tool_failure_rate"] if r["tool_name"] == tool), None)
    lat = next((r for r in d["latency_per_step"]["by_tool"] if r["tool_name"] == tool), None)
    calls = next((r["call_count"] for r in d["tool_popularity"]["tools"] if r["tool_name"] == tool), 0)
    hot = [r for r in d["schema_hotspots"] if r["tool_name"] == tool]
    meant = [u for u in d["unknown_tools"] if tool in u["called_next"] or u["suggested"] == tool]
    facts = html_table(["Calls", "Failed", "Failure rate", "p50 ms", "p95 ms", "max ms"], [[
        calls, fail["failed"] if fail else 0, fmt(fail["value"] if fail else None, percent=True),
        fmt(lat["p50_ms"] if lat else None), fmt(lat["p95_ms"] if lat else None), fmt(lat["max_ms"] if lat else None)]],
        numeric=(0, 1, 2, 3, 4, 5)).replace("<details>", "<details open>")
    body = (card(tool, "calls, failures and latency", facts or '<div class="empty">Never called.</div>', "tool-facts")
            + card("Schema hot-spots", "the fields agents get wrong", html_table(
                ["Field", "Problem", "Times", "Example"], [[h["field"], h["kind"], h["count"], h["example_error"]]
                                                          for h in hot], numeric=(2,)).replace("<details>",
                                                                                             "<details open>")
                or '<div class="empty">None.</div>', "tool-hotspots")
            + card("Unknown names meant for it", "what agents asked for before calling this tool", html_table(
                ["Name asked for", "Times", "Suggested", "Called next"],
                [[u["requested_tool_name"], u["count"], u["suggested"] or "—", called_next(u)] for u in meant],
                numeric=(1,)).replace("<details>", "<details open>") or '<div class="empty">None.</div>',
                "tool-unknown"))
    return page(f"Tool {tool}", f'<div class="grid">{body}</div>')


def advise_page(store: Store) -> str:
    from mcp_tracking.metrics.advice import advise

    items = store.memo("advice", lambda: advise(store.sink, mcp_name=store.mcp_name))
    if not items:
        inner = "<p>No advice: no pattern shows often enough (each rule needs 3 occurrences).</p>"
    else:
        inner = '<ol class="advice">' + "".join(
            f'<li><strong>{esc(a.title)}</strong> <span class="sub">[{esc(a.kind)}]</span><br>{esc(a.detail)}'
            + ("<br>sessions: " + ", ".join(link(_session_href(s), s) for s in a.sessions) if a.sessions else "")
            + "</li>" for a in items) + "</ol>"
    return page("What to change", card("Advice", "most evidence first", inner, "advice"))


def compare_page(store: Store, params: dict[str, str]) -> str:
    from mcp_tracking.metrics.compare import Window, compare_windows

    split = params.get("split", "")
    rb, ra = params.get("before_release", ""), params.get("after_release", "")
    form = ('<form class="filters" method="get" action="/compare"><label>Split at (ISO date)'
            f'<input name="split" value="{esc(split)}"></label><label>or release before'
            f'<input name="before_release" value="{esc(rb)}"></label><label>and after'
            f'<input name="after_release" value="{esc(ra)}"></label><button type="submit">Compare</button></form>')
    result_html = ""
    try:
        at = datetime.fromisoformat(split.replace("Z", "+00:00")) if split else None
    except ValueError:
        at = None
        result_html = f"<p>Not a date: {esc(split)}</p>"
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    if at is not None or (rb and ra):
        before = Window(until=at, release=rb or None)
        after = Window(since=at, release=ra or None)
        res = store.memo(f"compare {at} {rb!r} {ra!r}",
                         lambda: compare_windows(store.sink, before, after, mcp_name=store.mcp_name), rebuild=False)
        rows = "".join(
            f'<tr><td>{esc(LABELS[c.metric][0])}</td><td class="n">{esc(fmt(c.before, percent=c.metric in PERCENT))}'
            f'</td><td class="n">{esc(fmt(c.after, percent=c.metric in PERCENT))}</td><td class="n">'
            f'{"—" if c.low is None else esc(f"{c.low:+.3f} to {c.high:+.3f}")}</td>'
            f'<td class="verdict-{c.verdict.split()[0]}">{esc(c.verdict)}</td></tr>' for c in res.changes)
        result_html = (f"<p>before: {esc(res.before.label())} ({res.sessions_before} sessions) · after: "
                       f"{esc(res.after.label())} ({res.sessions_after} sessions)</p><table id='compare'><tr>"
                       "<th>Metric</th><th>Before</th><th>After</th><th>95% interval of the change</th>"
                       f"<th>Verdict</th></tr>{rows}</table>")
    return page("Did a change help?", card("Compare", "two windows or two releases, 95% intervals over sessions",
                                            form + result_html, "compare"))


# --- the app -------------------------------------------------------------------------------------


def build_app(source: Sink | str | os.PathLike[str], *, mcp_name: str | None = None, refresh: float = 10.0,
              wait: float = 0.1, warm: bool = True) -> Any:
    """The starlette app over ``source`` (opened read-only); figures are read again at most every ``refresh``
    seconds while the store changes (a page says when they were read). A request waits at most ``wait``
    seconds for a part still being computed (then it gets a page that reloads itself); ``warm`` starts
    computing the overview and the session list at once."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    store = Store(source, mcp_name, refresh=refresh, wait=wait)

    def respond(html_text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html_text, status_code=status, headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                       "img-src data:; form-action 'self'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    def reading(exc: NotReady) -> HTMLResponse:
        waited = time.monotonic() - exc.started
        body = card("Reading the store", f"{waited:.0f} s so far",
                    "<p>This part of the page is still being computed from the store; the page reloads itself "
                    "and shows it as soon as it is ready.</p>", "reading")
        response = respond(page("Reading the store…", body, head='<meta http-equiv="refresh" content="1">'), 503)
        response.headers["Retry-After"] = "1"
        return response

    def view(render: Callable[[Request], str]) -> Callable[[Request], HTMLResponse]:
        def endpoint(request: Request) -> HTMLResponse:  # plain def: starlette runs it on its thread pool
            try:
                return respond(render(request))
            except NotReady as exc:
                return reading(exc)
        return endpoint

    home = view(lambda r: overview(store))
    sessions = view(lambda r: sessions_page(store, dict(r.query_params)))
    one_session = view(lambda r: session_page(store, r.path_params["sid"]))
    tool = view(lambda r: tool_page(store, r.path_params["name"]))
    advice = view(lambda r: advise_page(store))
    compare = view(lambda r: compare_page(store, dict(r.query_params)))
    if warm:
        store.warm()
    return Starlette(routes=[Route("/", home), Route("/sessions", sessions), Route("/sessions/{sid:path}", one_session),
                             Route("/tools/{name:path}", tool), Route("/advise", advice), Route("/compare", compare)])


def serve(source: str, *, host: str = "127.0.0.1", port: int = 8765, mcp_name: str | None = None,
          refresh: float = 10.0) -> None:
    """Run the UI until interrupted (uvicorn, logs to stderr)."""
    import sys

    import uvicorn

    sys.setswitchinterval(SWITCH_INTERVAL)  # this process only serves the UI: see SWITCH_INTERVAL
    uvicorn.run(build_app(source, mcp_name=mcp_name, refresh=refresh), host=host, port=port, log_level="warning")


__all__: Sequence[str] = ["bucket_size", "build_app", "serve"]
