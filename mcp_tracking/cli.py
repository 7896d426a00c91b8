"""``mcp-tracking``: demo, report, dashboard, status, schema.

Stores are opened read-only by ``report``, ``dashboard`` and ``status``; filters are passed to the
store as parameters. Errors are one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """An error the user can fix; printed as one line."""


def _parse_time(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r} (e.g. 2026-11-01 or 2026-11-01T12:00)") \
            from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _parse_range(value: str) -> tuple[datetime | None, datetime | None]:
    if ".." not in value:
        raise argparse.ArgumentTypeError(f"not a range: {value!r} (FROM..TO: 2026-11-01..2026-11-15, ..2026-11-15)")
    a, _, b = value.partition("..")
    return (_parse_time(a) if a else None), (_parse_time(b) if b else None)


def _progress(label: str) -> Any:
    """A progress callback that writes to stderr only when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{label} {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"mcp_name": args.mcp, "user_id": args.user, "session_id": args.session, "since": args.since,
            "until": args.until}


def _open(url: str) -> Any:
    from mcp_tracking.sinks import sink_from_url
    from mcp_tracking.sinks.sqlite import SQLiteSink

    try:
        sink = sink_from_url(url, read_only=True)
    except (ValueError, ImportError) as exc:
        raise CliError(str(exc)) from exc
    if isinstance(sink, SQLiteSink) and not sink.path.exists():
        raise CliError(f"no database at {sink.path} (run `mcp-tracking demo` or point --db at your store)")
    return sink


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """A store that cannot be read (missing, not ours, unreachable, no table) as one clear CLI error."""
    from mcp_tracking.metrics import MetricsError
    from mcp_tracking.sinks.base import StoreError

    try:
        yield
    except (StoreError, MetricsError) as exc:
        raise CliError(str(exc)) from exc
    except Exception as exc:
        if type(exc).__name__ in {"OperationalError", "UndefinedTable", "DatabaseError"}:
            raise CliError(f"cannot read the store: {exc}") from exc
        raise


def _metrics(sink: Any, filters: dict[str, Any], breakdown: str | None = None) -> Any:
    from mcp_tracking.metrics import compute_metrics

    with _reading():
        return compute_metrics(sink, breakdown=breakdown, **filters)


def cmd_report(args: argparse.Namespace) -> int:
    from mcp_tracking.report.text import render_csv, render_json, render_table

    sink = _open(args.db)
    result = _metrics(sink, _filters(args), args.breakdown)
    if result.totals.events == 0:
        scope = "these filters" if any(v is not None for v in _filters(args).values()) else "the store"
        raise CliError(f"no events in {scope} ({args.db})")
    out = {"table": render_table, "json": render_json, "csv": render_csv}[args.format](result)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from mcp_tracking.report.dashboard import write_dashboard

    sink = _open(args.db)
    filters = _filters(args)
    result = _metrics(sink, filters)
    if result.totals.events == 0:
        raise CliError(f"no events to show in {args.db}")
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a", encoding="utf-8"):
            pass  # writable? (checked before the metrics' trend is computed)
    except OSError as exc:
        raise CliError(f"cannot write the dashboard to {out}: {exc.strerror or exc}") from exc
    write_dashboard(sink, out, progress=_progress("computing trend"), **filters)
    from mcp_tracking.report.text import safe_text

    print(f"dashboard written to {safe_text(out.resolve())}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    sink = _open(args.db)
    result = _metrics(sink, _filters(args))
    t = result.totals
    from mcp_tracking.report.dashboard import time_span

    span = time_span(sink, {k: v for k, v in _filters(args).items()})
    from mcp_tracking._secrets import redact_url
    from mcp_tracking.report.text import safe_text

    info: dict[str, Any] = {
        "store": redact_url(args.db), "events": t.events, "sessions": t.sessions, "tool_calls": t.tool_calls,
        "first_event": span[0].isoformat() if span else None, "last_event": span[1].isoformat() if span else None}
    from mcp_tracking.sinks.base import HealthStore

    processes = sink.read_health() if isinstance(sink, HealthStore) else []
    if args.format == "json":
        print(json.dumps({**info, "writers": processes}, indent=2))
        return 0
    for k, v in info.items():
        print(f"{k:>12}: {safe_text(v)}")
    if processes:
        from mcp_tracking.report.text import table

        keys = ["accepted", "written", "spooled", "replayed", "dropped", "failed_events", "queue_depth"]
        print(table(["writer (host:pid)", "updated", *keys],
                    [[p["process"].rsplit(":", 1)[0], p["updated_at"][:19], *[p.get(k, 0) for k in keys]]
                     for p in processes], title="\nEmitters writing to this store (their last report)"))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from mcp_tracking.events import event_json_schemas

    schemas = event_json_schemas()
    if args.event:
        if args.event not in schemas["events"]:
            raise CliError(f"unknown event {args.event!r}; known: {', '.join(sorted(schemas['events']))}")
        schemas = schemas["events"][args.event]
    print(json.dumps(schemas, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mcp_tracking.metrics.compare import Window, compare_windows
    from mcp_tracking.report.text import render_comparison

    sides = []
    for name in ("before", "after"):
        since, until = getattr(args, name) or (None, None)
        if args.split is not None:
            if since is not None or until is not None:
                raise CliError("give --split or --before/--after, not both")
            since, until = (None, args.split) if name == "before" else (args.split, None)
        sides.append(Window(since, until, getattr(args, f"{name}_release")))
    if sides[0] == sides[1]:
        raise CliError("the two windows are the same: give --split DATE, --before/--after FROM..TO, "
                       "or --before-release/--after-release")
    sink = _open(args.db)
    with _reading():
        result = compare_windows(sink, sides[0], sides[1], mcp_name=args.mcp, min_sessions=args.min_sessions)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_comparison(result))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mcp_tracking._secrets import redact_url
    from mcp_tracking.report.serve import serve

    _open(args.db)  # a clear error for a missing store, before the server starts
    sys.stderr.write(f"mcp-tracking: serving {redact_url(args.db)} read-only on http://{args.host}:{args.port}/\n")
    serve(args.db, host=args.host, port=args.port, mcp_name=args.mcp, refresh=args.refresh)
    return 0


def cmd_advise(args: argparse.Namespace) -> int:
    from mcp_tracking.metrics.advice import advise
    from mcp_tracking.report.text import render_advice

    sink = _open(args.db)
    with _reading():
        items = advise(sink, mcp_name=args.mcp, since=args.since, until=args.until)
    if args.format == "json":
        print(json.dumps([a.to_dict() for a in items], indent=2))
    else:
        print(render_advice(items))
    return 0


def _event_count(url: str) -> int:
    """Events already in the demo's store (0 when there is none yet, or it cannot be read)."""
    from mcp_tracking.sinks import sink_from_url
    from mcp_tracking.sinks.base import SQLStore
    from mcp_tracking.sinks.sqlite import SQLiteSink

    try:
        sink = sink_from_url(url, read_only=True)
        if isinstance(sink, SQLiteSink) and not sink.path.exists():
            return 0
        return sink.count() if isinstance(sink, SQLStore) else 0
    except Exception:
        return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import anyio

    from mcp_tracking import AnalyticsClient, instrument
    from mcp_tracking.demo.agents import run_sessions
    from mcp_tracking.demo.server import build_server, completeness_checks
    from mcp_tracking.report.dashboard import write_dashboard
    from mcp_tracking.report.text import render_table
    from mcp_tracking.sinks import default_url

    url = args.db or default_url()
    started = time.perf_counter()
    before = _event_count(url)  # a store the demo (or anything) wrote before: this run appends, and says so
    run_start = datetime.now(timezone.utc)
    try:
        client = AnalyticsClient(url, mcp_name="drea")
    except (ValueError, ImportError) as exc:
        raise CliError(str(exc)) from exc
    server = build_server("drea")
    instrument(server, client, completeness=completeness_checks(), add_outcome_tool=True)
    sys.stderr.write(f"running {args.sessions} scripted agent sessions against the demo server 'drea'...\n")
    plan = anyio.run(lambda: run_sessions(server, sessions=args.sessions, seed=args.seed,
                                          progress=_progress("sessions")))
    client.close()
    stats = client.stats
    if stats.failed_events or stats.dropped:
        raise CliError(f"the store did not take every event ({stats.failed_events} failed, {stats.dropped} dropped)")
    sink = _open(url)
    scope: dict[str, Any] = {"mcp_name": "drea"}
    if before:
        scope["since"] = run_start  # this run's sessions only: the earlier ones are still in the store
    result = _metrics(sink, scope)
    print(render_table(result))
    out = Path(args.dashboard)
    write_dashboard(sink, out, **scope)
    elapsed = time.perf_counter() - started
    print(f"\n{len(plan)} sessions, {stats.written:,} events written to {url} in {elapsed:.1f} s")
    if before:
        print(f"note: {url} already held {before:,} events; they are still there (this report and the dashboard "
              f"cover this run only: --since {run_start.isoformat(timespec='seconds')}). Use another --db, or "
              "delete the file, to start empty.")
    print(f"dashboard: {out.resolve()}")
    print(f"next: mcp-tracking report --db {url} --format json")
    print(f"      mcp-tracking dashboard --db {url} --out report.html")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mcp_tracking._version import __version__
    from mcp_tracking.sinks import default_url

    p = argparse.ArgumentParser(prog="mcp-tracking", description="Agent-quality analytics for MCP servers.")
    p.add_argument("--version", action="version", version=f"mcp-tracking {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def scoped(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", default=default_url(), help="store URL or path (default: %(default)s)")
        sp.add_argument("--mcp", help="only this mcp_name")
        sp.add_argument("--user", help="only this user_id")
        sp.add_argument("--session", help="only this session_id")
        sp.add_argument("--since", type=_parse_time, help="from this time (ISO 8601, UTC if no zone)")
        sp.add_argument("--until", type=_parse_time, help="before this time (ISO 8601)")

    d = sub.add_parser("demo", help="run the bundled server against scripted agents, then report")
    d.add_argument("--db", default=None, help="store URL (default: MCP_TRACKING_URL or sqlite:///mcp_tracking.db)")
    d.add_argument("--sessions", type=int, default=48, help="scripted sessions to run (default: %(default)s)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--dashboard", default="mcp_tracking_dashboard.html", help="where to write the HTML dashboard")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("report", help="the ten metrics as a table, JSON or CSV")
    scoped(r)
    r.add_argument("--format", choices=["table", "json", "csv"], default="table")
    r.add_argument("--breakdown", choices=["session", "user"],
                   help="add per-session or per-user metrics (every format)")
    r.set_defaults(func=cmd_report)

    h = sub.add_parser("dashboard", help="write a self-contained HTML dashboard")
    scoped(h)
    h.add_argument("--out", default="report.html")
    h.set_defaults(func=cmd_dashboard)

    c = sub.add_parser("compare", help="did a change help? two windows or releases, with 95% intervals")
    c.add_argument("--db", default=default_url(), help="store URL or path (default: %(default)s)")
    c.add_argument("--mcp", help="only this mcp_name")
    c.add_argument("--split", type=_parse_time, help="before = events before this time, after = from it on")
    c.add_argument("--before", type=_parse_range, metavar="FROM..TO", help="the first window (either end optional)")
    c.add_argument("--after", type=_parse_range, metavar="FROM..TO", help="the second window")
    c.add_argument("--before-release", help="sessions whose session_start has this release")
    c.add_argument("--after-release", help="sessions whose session_start has this release")
    c.add_argument("--min-sessions", type=int, default=10,
                   help="fewer sessions than this on either side: no interval, 'too little data' (default 10)")
    c.add_argument("--format", choices=["table", "json"], default="table")
    c.set_defaults(func=cmd_compare)

    a = sub.add_parser("advise", help="what to change in your tools, ranked, with the evidence")
    a.add_argument("--db", default=default_url(), help="store URL or path (default: %(default)s)")
    a.add_argument("--mcp", help="only this mcp_name")
    a.add_argument("--since", type=_parse_time, help="from this time (ISO 8601, UTC if no zone)")
    a.add_argument("--until", type=_parse_time, help="before this time (ISO 8601)")
    a.add_argument("--format", choices=["table", "json"], default="table")
    a.set_defaults(func=cmd_advise)

    v = sub.add_parser("serve", help="a local web UI: overview, sessions call by call, tools, advice, compare")
    v.add_argument("--db", default=default_url(), help="store URL or path (default: %(default)s)")
    v.add_argument("--mcp", help="only this mcp_name")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    v.add_argument("--port", type=int, default=8765)
    v.add_argument("--refresh", type=float, default=10.0,
                   help="seconds the figures are kept while the store keeps changing (default: %(default)s)")
    v.set_defaults(func=cmd_serve)

    s = sub.add_parser("status", help="what the store holds")
    scoped(s)
    s.add_argument("--format", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_status)

    sc = sub.add_parser("schema", help="print the JSON Schema of every event (or of one)")
    sc.add_argument("--event", help="one event name")
    sc.set_defaults(func=cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "sessions", 1) is not None and getattr(args, "sessions", 1) < 1:
        parser.error("--sessions must be at least 1")
    try:
        return int(args.func(args))
    except CliError as exc:
        _error(str(exc), getattr(args, "db", None))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback: one line (MCP_TRACKING_DEBUG=1 shows it)
        if os.environ.get("MCP_TRACKING_DEBUG"):
            raise
        _error(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, getattr(args, "db", None))
        return EXIT_FAILURE


def _error(message: str, url: str | None = None) -> None:
    """One line on stderr: no password of a store URL or DSN (nor any piece a driver's message may quote),
    no control character."""
    from mcp_tracking._secrets import redact_url, url_passwords
    from mcp_tracking.report.text import safe_text

    first = message.strip().splitlines()[0] if message.strip() else "failed"
    first = redact_url(first)
    for piece in url_passwords(" ".join(x for x in (url, os.environ.get("MCP_TRACKING_URL")) if x)):
        first = first.replace(piece, "***")
    sys.stderr.write(f"mcp-tracking: error: {safe_text(first)}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
