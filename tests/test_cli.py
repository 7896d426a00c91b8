"""The command line, as a newcomer runs it: demo, report, dashboard, status, errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT


def run(*args: str, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcp_tracking.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module", name="demo_dir")
def _demo_dir(tmp_path_factory):
    """Run `mcp-tracking demo` once on the embedded default, in a fresh directory."""
    d = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_URL"}
    proc = subprocess.run([sys.executable, "-m", "mcp_tracking.cli", "demo"], cwd=d, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return d, proc


def test_demo_writes_the_embedded_store_and_prints_the_report(demo_dir):
    """The README's main command: every event type lands in ./mcp_tracking.db; report and dashboard follow."""
    d, proc = demo_dir
    assert (d / "mcp_tracking.db").exists() and (d / "mcp_tracking_dashboard.html").exists()
    assert "Task completion rate" in proc.stdout and "Tool confusion" in proc.stdout
    assert "Unknown tool names" in proc.stdout  # the demo's agents ask for names that are not tools
    import sqlite3

    names = {r[0] for r in sqlite3.connect(d / "mcp_tracking.db").execute("SELECT DISTINCT event_name FROM raw_analytics")}
    from mcp_tracking.events import EventName

    assert {e.value for e in EventName} <= names  # every event type, from real calls


def test_report_formats(demo_dir):
    """table, json (the stable keys) and csv."""
    d, _ = demo_dir
    table = run("report", "--db", "sqlite:///mcp_tracking.db", cwd=d)
    assert table.returncode == 0 and "Hallucination rate" in table.stdout
    js = json.loads(run("report", "--format", "json", "--mcp", "drea", cwd=d).stdout)
    assert list(js)[:10] == ["task_completion_rate", "steps_to_goal", "semantic_clarity_score", "retry_rate",
                             "hallucination_rate", "schema_violation_rate", "recovery_rate", "latency_per_step",
                             "tool_popularity", "answer_completeness_rate"]
    assert js["scope"]["mcp_name"] == "drea" and js["totals"]["sessions"] == 48
    popular = {t["tool_name"] for t in js["tool_popularity"]["tools"]}
    unknown = {u["requested_tool_name"] for u in js["unknown_tools"]}
    assert unknown and not unknown & popular  # names that are not tools are listed apart, never as tools
    assert all(u["count"] >= 1 and (u["suggested"] is None or u["suggested"] in popular) for u in js["unknown_tools"])
    rows = list(csv.reader(io.StringIO(run("report", "--format", "csv", cwd=d).stdout)))
    assert rows[0] == ["metric", "subject", "value", "details"] and rows[1][:2] == ["task_completion_rate", ""]
    assert {r[0] for r in rows[1:]} >= {"latency_per_step", "tool_popularity", "tool_failure_rate", "unknown_tools"}
    by_user = json.loads(run("report", "--format", "json", "--breakdown", "user", cwd=d).stdout)
    assert len(by_user["breakdown"]) == 9
    status = json.loads(run("status", "--format", "json", cwd=d).stdout)
    assert status["sessions"] == 48
    writer = status["writers"][0]  # the demo process reported its emitter's counters into the store
    assert writer["accepted"] == writer["written"] == status["events"] and writer["dropped"] == 0


def test_errors_are_one_clear_line(tmp_path, demo_dir):
    """Bad URL, missing store, empty scope, bad date, not our table: one line on stderr, non-zero exit."""
    d, _ = demo_dir
    cases = [
        (("report", "--db", "mongodb://x"), "unknown store URL scheme"),
        (("report", "--db", f"sqlite:///{tmp_path}/missing.db"), "no database at"),
        (("report", "--user", "nobody"), "no events in these filters"),
    ]
    for args, message in cases:
        p = run(*args, cwd=d)
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)")
    p = run("report", "--db", f"sqlite:///{tmp_path}/other.db", cwd=d)
    assert p.returncode == 2 and "no raw_analytics table" in p.stderr
    p = run("report", "--since", "yesterday", cwd=d)
    assert p.returncode == 2 and "not an ISO date" in p.stderr


def test_report_opens_the_store_read_only(demo_dir):
    """Reading never writes: the database file is byte-identical after a report."""
    d, _ = demo_dir
    before = (d / "mcp_tracking.db").read_bytes()
    assert run("report", "--format", "json", cwd=d).returncode == 0
    assert (d / "mcp_tracking.db").read_bytes() == before


def test_demo_runs_in_under_a_minute(demo_dir):
    """The demo reports its own duration; a fresh machine should see well under a minute."""
    _, proc = demo_dir
    line = next(x for x in proc.stdout.splitlines() if "events written" in x)
    assert float(line.rsplit(" in ", 1)[1].split()[0]) < 60


def test_console_script_entry_point_is_declared():
    """pyproject declares the mcp-tracking console script."""
    assert 'mcp-tracking = "mcp_tracking.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_breakdown_shows_in_every_format(demo_dir):
    """``--breakdown user`` is never silently ignored: a table section, CSV rows, a JSON key."""
    d, _ = demo_dir
    table = run("report", "--breakdown", "user", cwd=d).stdout
    assert "Breakdown" in table and "User or session" in table
    rows = list(csv.reader(io.StringIO(run("report", "--format", "csv", "--breakdown", "user", cwd=d).stdout)))
    assert sum(r[0] == "breakdown" for r in rows) == 9


def test_demo_twice_says_it_appended_and_reports_its_own_run(tmp_path):
    """A second demo into the same store: its report covers its own 48 sessions, and it says the store
    already held events (nothing is deleted)."""
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_URL"}
    first = subprocess.run([sys.executable, "-m", "mcp_tracking.cli", "demo", "--sessions", "6"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0 and "already held" not in first.stdout
    second = subprocess.run([sys.executable, "-m", "mcp_tracking.cli", "demo", "--sessions", "6"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0 and "already held" in second.stdout
    assert "6 of 6 sessions" in second.stdout or "of 6 sessions" in second.stdout
    whole = json.loads(run("report", "--format", "json", cwd=tmp_path).stdout)
    assert whole["totals"]["sessions"] == 12
