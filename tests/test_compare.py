"""``mcp-tracking compare``: two windows or two releases, each change with a 95% interval worked out by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from mcp_tracking import AnalyticsClient, SQLiteSink, instrument
from mcp_tracking.events import EventRecord
from mcp_tracking.metrics.compare import Window, compare_windows, newcomb, wilson

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
SPLIT = T0 + timedelta(days=10)


def test_intervals_match_the_published_examples():
    """Wilson's interval for 81/263 and Newcomb's hybrid interval for 56/70 - 48/80, as published in
    Newcomb (1998), Statistics in Medicine 17: 857-872 and 873-890."""
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    d, low, high = newcomb(48, 80, 56, 70)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)


def sessions(start: datetime, n: int, completed: int, calls: int, retries: int, *, release: str | None = None,
             prefix: str = "s") -> list[EventRecord]:
    """``n`` sessions of ``calls`` tool calls each (``retries`` of them retries); the first ``completed`` end
    with a successful ``session_completed``."""
    out = []
    for i in range(n):
        sid, t = f"{prefix}{i}", start + timedelta(minutes=i)
        out.append(EventRecord("session_start", "u", sid, "srv", {"release": release} if release else {},
                               created_at=t))
        for k in range(calls):
            out.append(EventRecord("tool_call_started", "u", sid, "srv", {"tool_name": "search",
                                                                           "call_sequence": k + 1},
                                   created_at=t + timedelta(seconds=k + 1)))
            if k < retries:
                out.append(EventRecord("tool_call_retry", "u", sid, "srv", {"tool_name": "search"},
                                       created_at=t + timedelta(seconds=k + 1)))
        if i < completed:
            out.append(EventRecord("session_completed", "u", sid, "srv", {"success": True},
                                   created_at=t + timedelta(seconds=30)))
    return out


@pytest.fixture(name="store")
def _store(tmp_path):
    def make(events):
        path = tmp_path / "c.db"
        sink = SQLiteSink(path)
        sink.write(events)
        sink.close()
        return f"sqlite:///{path}"
    return make


def test_a_real_improvement_is_called_better(store):
    """Before: 20 of 40 sessions completed, 2 of 4 calls retries. After: 36 of 40, no retries.

    By hand (z = 1.96): Wilson 20/40 = (0.3520, 0.6480), Wilson 36/40 = (0.7695, 0.9604); Newcomb's
    difference 0.4 with low 0.4 - sqrt((0.9 - 0.7695)^2 + (0.6480 - 0.5)^2) = 0.2027 and high
    0.4 + sqrt((0.9604 - 0.9)^2 + (0.5 - 0.3520)^2) = 0.5599. Retries: every session 0.5 before and 0 after,
    so every resample gives -0.5: the interval is exactly (-0.5, -0.5)."""
    url = store(sessions(T0, 40, 20, 4, 2, prefix="b") + sessions(SPLIT, 40, 36, 4, 0, prefix="a"))
    result = compare_windows(url, Window(until=SPLIT), Window(since=SPLIT))
    assert (result.sessions_before, result.sessions_after) == (40, 40)
    done = result.change("task_completion_rate")
    assert (done.before, done.after, done.method, done.verdict) == (0.5, 0.9, "newcomb", "better")
    assert done.low == pytest.approx(0.2027, abs=2e-4) and done.high == pytest.approx(0.5599, abs=2e-4)
    retry = result.change("retry_rate")
    assert (retry.before, retry.after, retry.difference) == (0.5, 0.0, -0.5)
    assert (retry.low, retry.high, retry.method, retry.verdict) == (-0.5, -0.5, "bootstrap", "better")
    clarity = result.change("semantic_clarity_score")
    assert (clarity.before, clarity.after, clarity.verdict) == (0.5, 1.0, "better")
    from mcp_tracking import MemorySink

    twin = MemorySink()  # the Python twin counts each session alike
    twin.write(sessions(T0, 40, 20, 4, 2, prefix="b") + sessions(SPLIT, 40, 36, 4, 0, prefix="a"))
    assert compare_windows(twin, Window(until=SPLIT), Window(since=SPLIT)).to_dict() == result.to_dict()


def test_a_difference_within_the_noise_is_not_called(store):
    """20 of 40 against 22 of 40: Newcomb's interval (about -0.16 to 0.26) holds 0: no significant change."""
    url = store(sessions(T0, 40, 20, 3, 1, prefix="b") + sessions(SPLIT, 40, 22, 3, 1, prefix="a"))
    done = compare_windows(url, Window(until=SPLIT), Window(since=SPLIT)).change("task_completion_rate")
    assert done.low < 0 < done.high and done.verdict == "no significant change"
    assert done.difference == pytest.approx(0.05)


def test_thin_evidence_claims_nothing(store):
    """5 sessions a side: every metric says 'too little data' and gives no interval."""
    url = store(sessions(T0, 5, 1, 3, 2, prefix="b") + sessions(SPLIT, 5, 5, 3, 0, prefix="a"))
    result = compare_windows(url, Window(until=SPLIT), Window(since=SPLIT))
    assert {c.verdict for c in result.changes} == {"too little data"}
    assert all(c.low is None and c.high is None for c in result.changes)


def test_releases_are_compared_from_real_sessions(tmp_path):
    """Two releases of the demo server, 12 scripted sessions each, stamped by ``instrument(release=...)``: the
    comparison groups sessions by release; the same agents give the same behaviour, so nothing is called."""
    from mcp_tracking.demo.agents import run_sessions
    from mcp_tracking.demo.server import build_server, completeness_checks

    url = f"sqlite:///{tmp_path / 'r.db'}"
    for release in ("1.0", "2.0"):
        client = AnalyticsClient(url, handle_sigterm=False)
        server = build_server("drea")
        instrument(server, client, completeness=completeness_checks(), add_outcome_tool=True, release=release)
        anyio.run(lambda s=server: run_sessions(s, sessions=12, seed=3))
        assert client.close(timeout=30)
    result = compare_windows(url, Window(release="1.0"), Window(release="2.0"))
    assert (result.sessions_before, result.sessions_after) == (12, 12)
    done = result.change("task_completion_rate")
    assert done.before == done.after and done.verdict == "no significant change"
    starts = [e for e in SQLiteSink(tmp_path / "r.db", read_only=True).iter_events()
              if e["event_name"] == "session_start"]
    assert sorted({e["metadata"]["release"] for e in starts}) == ["1.0", "2.0"]


def test_release_from_the_environment(monkeypatch):
    from mcp_tracking import MemorySink

    monkeypatch.setenv("MCP_TRACKING_RELEASE", "2026.12.1")
    sink = MemorySink()
    client = AnalyticsClient(sink, handle_sigterm=False)
    client.track("u", "session_start", {}, session_id="s")  # the design's host writes its own session_start
    client.close()
    start = next(e for e in sink.events if e["event_name"] == "session_start")
    assert start["metadata"]["release"] == "2026.12.1"


def test_compare_on_the_command_line(store):
    url = store(sessions(T0, 40, 20, 4, 2, prefix="b") + sessions(SPLIT, 40, 36, 4, 0, prefix="a"))
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_URL"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mcp_tracking.cli", "compare", "--db", url, *args],
                              capture_output=True, text=True, timeout=120, env=env)

    table = cli("--split", SPLIT.isoformat())
    assert table.returncode == 0, table.stderr
    assert "What changed" in table.stdout and "+40.0 pts" in table.stdout and "better" in table.stdout
    data = json.loads(cli("--before", f"..{SPLIT.isoformat()}", "--after", f"{SPLIT.isoformat()}..",
                          "--format", "json").stdout)
    done = next(c for c in data["changes"] if c["metric"] == "task_completion_rate")
    assert done["verdict"] == "better" and data["before"]["sessions"] == 40
    same = cli()
    assert same.returncode != 0 and "the two windows are the same" in same.stderr


def mixed(n: int, prefix: str, start: datetime, every: int) -> list[EventRecord]:
    """``n`` sessions that differ from each other (calls, retries, completion vary with the index), so every
    variance is positive."""
    out: list[EventRecord] = []
    for i in range(n):
        out += sessions(start + timedelta(hours=i), 1, 1 if i % every else 0, 1 + i % 4, i % 3 % (1 + i % 4),
                        prefix=f"{prefix}{i}-")
    return out


def test_the_delta_method_in_sql_matches_the_python_twin(store, monkeypatch):
    """Past the bootstrap's size the SQL stores make the sums in the database; the Python twin makes them from
    each session's counts. Same events, same intervals (to rounding)."""
    from mcp_tracking import MemorySink
    from mcp_tracking.metrics import compare

    monkeypatch.setattr(compare, "BOOTSTRAP_MAX_SESSIONS", 10)
    events = mixed(60, "b", T0, 3) + mixed(60, "a", SPLIT, 5)
    in_sql = compare_windows(store(events), Window(until=SPLIT), Window(since=SPLIT))
    twin = MemorySink()
    twin.write(events)
    in_python = compare_windows(twin, Window(until=SPLIT), Window(since=SPLIT))
    assert {c.method for c in in_sql.changes} >= {"delta", "newcomb"}
    for a, b in zip(in_sql.changes, in_python.changes, strict=True):
        assert (a.metric, a.method, a.verdict, a.n_before, a.n_after) == (b.metric, b.method, b.verdict,
                                                                         b.n_before, b.n_after)
        for x, y in ((a.before, b.before), (a.after, b.after), (a.low, b.low), (a.high, b.high)):
            assert x == y if y is None else x == pytest.approx(y, rel=1e-9, abs=1e-12)
    # the delta method by hand for retries before: sessions i = 0..59 with c = 1 + i % 4 calls, r = i % 3 % c
    # retries; ratio R = sum r / sum c; variance sum (r - R c)^2 / (k - 1) / (k * mean(c)^2)
    c = [1 + i % 4 for i in range(60)]
    r = [i % 3 % (1 + i % 4) for i in range(60)]
    ratio = sum(r) / sum(c)
    var = sum((ri - ratio * ci) ** 2 for ri, ci in zip(r, c, strict=True)) / 59 / (60 * (sum(c) / 60) ** 2)
    retry = in_sql.change("retry_rate")  # the after sessions make the same calls and retries: the same variance
    assert retry.before == pytest.approx(ratio) and retry.difference == pytest.approx(0, abs=1e-12)
    assert retry.high - retry.difference == pytest.approx(1.959963984540054 * (var + var) ** 0.5, rel=1e-9)


def test_the_sqlite_session_pass_splits_into_halves_that_add_up(tmp_path):
    """On a big table compare runs the session pass as two halves (split near the median session id) on two
    connections; the halves' sums add up to the whole pass."""
    from mcp_tracking.metrics import sqlite as dialect
    from mcp_tracking.metrics.compare import _window_sums_sql

    path = tmp_path / "h.db"
    sink = SQLiteSink(path)
    sink.write(mixed(80, "b", T0, 3) + mixed(80, "a", SPLIT, 5))
    sink.close()
    reader = SQLiteSink(path, read_only=True)
    filters = {"session_id": None, "user_id": None, "mcp_name": None, "since": None, "until": None}
    windows = ({"until": SPLIT}, {"since": SPLIT})
    with reader.read_snapshot() as (conn, _):
        assert dialect.split_point(conn) is None  # small: one pass
        split = dialect.split_point(conn, min_rows=0)
        assert split is not None
        whole = dialect.windowed(conn, filters, windows, _window_sums_sql())[0]
        low = dialect.windowed(conn, filters, windows, _window_sums_sql(), (None, split))[0]
        high = dialect.windowed(conn, filters, windows, _window_sums_sql(), (split, None))[0]
        width = len(whole) // 2  # each window's block starts with its session count
        assert low[0] + low[width] > 0 and high[0] + high[width] > 0  # both halves hold sessions
        assert [int(a or 0) + int(b or 0) for a, b in zip(low, high, strict=True)] == [int(v or 0) for v in whole]


def test_sessions_outside_both_windows_change_nothing(store, tmp_path):
    """Small windows in a bigger store: the sessions' counts are read for the windows' sessions only (through
    the session index); sessions before, between and after the windows leave the result as it was."""
    first, second = T0 + timedelta(days=2), SPLIT + timedelta(days=2)
    windows = (Window(since=first, until=first + timedelta(days=1)),
               Window(since=second, until=second + timedelta(days=1)))
    inside = mixed(15, "b", first, 3) + mixed(15, "a", second, 5)  # 15 hours of sessions in each window
    alone = compare_windows(store(inside), *windows)
    crowd = (mixed(40, "x", T0 - timedelta(days=5), 2) + mixed(40, "y", T0 + timedelta(days=5), 4)
             + mixed(40, "z", SPLIT + timedelta(days=5), 2))
    sink = SQLiteSink(tmp_path / "crowded.db")
    sink.write(mixed(15, "b", first, 3) + crowd + mixed(15, "a", second, 5))
    sink.close()
    crowded = compare_windows(f"sqlite:///{tmp_path / 'crowded.db'}", *windows)
    assert (crowded.sessions_before, crowded.sessions_after) == (15, 15)
    assert crowded.to_dict() == alone.to_dict()
    assert "bootstrap" in {c.method for c in crowded.changes}


def test_the_bootstrap_draws_what_each_metric_would_draw_alone():
    """The bootstrap draws once per resample for a group of metrics and sums packed integers; the intervals
    are the ones each metric gets from its own ``random.Random(seed).choices`` (before, then after), worked
    here the plain way: negative numerators, empty denominators and non-integer counts included."""
    import math
    import random

    from mcp_tracking.metrics.compare import bootstrap

    def alone(before, after, seed, resamples):
        rng, diffs = random.Random(seed), []
        for _ in range(resamples):
            b, a = rng.choices(before, k=len(before)), rng.choices(after, k=len(after))
            db, da = sum(d for _, d in b), sum(d for _, d in a)
            if db and da:
                diffs.append(sum(n for n, _ in a) / da - sum(n for n, _ in b) / db)
        if len(diffs) < resamples // 2:
            return None, None
        diffs.sort()
        return diffs[int(0.025 * (len(diffs) - 1))], diffs[math.ceil(0.975 * (len(diffs) - 1))]

    r = random.Random(7)
    for trial in range(12):
        sizes = r.randint(1, 40), r.randint(1, 40)
        group = [tuple([(r.randint(-4, 9) + (0.5 if trial % 4 == 3 else 0), r.randint(0, 6))
                        for _ in range(size)] for size in sizes) for _ in range(r.randint(1, 4))]
        assert bootstrap(group, seed=trial, resamples=200) == [alone(b, a, trial, 200) for b, a in group]
    huge = [([(10**12, 10**12 + 1), (-(10**12), 3)], [(5, 7), (0, 0), (2**40, 1)])]  # wide slots still exact
    assert bootstrap(huge, seed=1, resamples=200) == [alone(*huge[0], 1, 200)]


def test_small_windows_are_read_without_the_pass_over_every_session(tmp_path, monkeypatch):
    """When the session starts in the windows' time ranges are few, compare reads the windows' sessions alone
    and sums them itself. The bound never undercounts (a release or a filter only narrows a window), and the
    result is the one the pass over every session gives."""
    from mcp_tracking.metrics import compare
    from mcp_tracking.metrics import sqlite as dialect

    first, second = T0 + timedelta(days=2), SPLIT + timedelta(days=2)
    path = tmp_path / "bound.db"
    sink = SQLiteSink(path)
    sink.write(mixed(15, "b", first, 3) + mixed(15, "a", second, 5) + mixed(40, "x", T0 - timedelta(days=5), 2))
    sink.close()
    url = f"sqlite:///{path}"
    windows = (Window(since=first, until=first + timedelta(days=1)),
               Window(since=second, until=second + timedelta(days=1)))
    reader = SQLiteSink(path, read_only=True)
    raw = tuple({"since": w.since, "until": w.until, "release": w.release} for w in windows)
    with reader.read_snapshot() as (conn, _):
        assert dialect.sessions_at_most(conn, raw, 4001) == 30
        assert dialect.sessions_at_most(conn, raw, 10) == 10  # counted up to the limit only
        everything = ({"since": None, "until": None, "release": "1.0"}, {"since": None, "until": None,
                                                                       "release": "2.0"})
        assert dialect.sessions_at_most(conn, everything, 4001) == 70  # releases: every start is a candidate
    seen: list[str] = []
    real = dialect.windowed
    monkeypatch.setattr(dialect, "windowed", lambda *a, **k: seen.append("narrow" if k.get("narrow") else "pass")
                        or real(*a, **k))
    quick = compare_windows(url, *windows)
    assert seen == ["narrow"] and (quick.sessions_before, quick.sessions_after) == (15, 15)
    seen.clear()
    monkeypatch.setattr(dialect, "sessions_at_most", lambda conn, windows, limit: limit)  # as if it were big
    whole = compare_windows(url, *windows)
    assert seen == ["pass", "narrow"]
    assert quick.to_dict() == whole.to_dict() and "bootstrap" in {c.method for c in quick.changes}
    monkeypatch.undo()  # more sessions than the bootstrap takes: the pass, and the delta method
    monkeypatch.setattr(compare, "BOOTSTRAP_MAX_SESSIONS", 10)
    methods = {c.method for c in compare_windows(url, *windows).changes}
    assert methods >= {"delta", "newcomb"} and "bootstrap" not in methods
