"""``mcp-tracking advise``: recommendations derived from a scripted store, worked out by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from mcp_tracking import MemorySink, SQLiteSink
from mcp_tracking.events import EventRecord
from mcp_tracking.metrics.advice import advise

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
TOOLS = ["get_leaderboard", "search", "lookup", "fetch", "status", "slow", "never_used"]


class Script:
    def __init__(self) -> None:
        self.events: list[EventRecord] = []
        self.t = T0

    def ev(self, name: str, sid: str, **md: object) -> None:
        self.t += timedelta(seconds=1)
        self.events.append(EventRecord(name, "u", sid, "srv", dict(md), created_at=self.t))


def scenario(times: int, sessions: int) -> list[EventRecord]:
    """Every pattern ``times`` times, over ``sessions`` sessions."""
    s = Script()
    for i in range(sessions):
        s.ev("session_start", f"s{i}")
    for i in range(times):
        sid = f"s{i % sessions}"
        s.ev("hallucinated_tool_call", sid, requested_tool_name="getLeaderboard", available_tools=TOOLS,
             similar_tool_suggested="get_leaderboard")
        s.ev("tool_call_started", sid, tool_name="get_leaderboard", after_hallucinated_tool="getLeaderboard")
        s.ev("tool_call_completed", sid, tool_name="get_leaderboard", execution_time_ms=1.0)
        s.ev("hallucinated_tool_call", sid, requested_tool_name="searchAll", available_tools=TOOLS)
        s.ev("tool_call_started", sid, tool_name=["search", "lookup", "fetch"][i % 3], after_hallucinated_tool="searchAll")
        s.ev("tool_call_started", sid, tool_name="search")
        s.ev("schema_validation_error", sid, tool_name="search", validation_errors=[
            {"field": "limit", "kind": "type", "error": "expected integer, got string"}])
        s.ev("tool_call_failed", sid, tool_name="lookup", error_type="execution_error")
        s.ev("wrong_tool_error", sid, first_tool_name="lookup", second_tool_name="search")
        loop = f"loop{i}"
        s.ev("session_start", loop)
        for _ in range(2):
            s.ev("tool_call_retry", loop, tool_name="fetch", params_hash="h", retry_reason="execution_failed")
        s.ev("tool_call_started", sid, tool_name="status")
        s.ev("tool_call_retry", sid, tool_name="status", params_hash=f"p{i}", retry_reason="repeated_after_success")
        s.ev("tool_call_started", sid, tool_name="slow")
        s.ev("tool_call_failed", sid, tool_name="slow", error_type="timeout")
        s.ev("answer_incomplete", sid, tool_name="search")
    s.ev("answer_complete", "s0", tool_name="search")
    return s.events


def by_kind(items) -> dict[str, list]:
    out: dict[str, list] = {}
    for a in items:
        out.setdefault(a.kind, []).append(a)
    return out


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_every_rule_with_its_evidence(store, tmp_path):
    """Three of each pattern over 12 sessions. By hand: 'getLeaderboard' asked 3 times, each time followed by
    get_leaderboard -> alias (score 3); 'searchAll' 3 times followed by three different tools -> unknown_name;
    search.limit 3 type errors -> parameter; 3 switches lookup -> search -> confusion; fetch repeated 3 times
    in 3 sessions -> retry_loop; status repeated after success 3 times -> polling; slow timed out 3 times ->
    timeout, and failed 3 of 3 -> not failing_tool (fewer than 5 calls); search: 3 incomplete of 4 checked ->
    incomplete; never_used is on the list, called in none of 15 sessions -> never_called. lookup failed 3
    times of 3 starts (fewer than 5): no failing_tool either."""
    events = scenario(3, 12)
    if store == "sqlite":
        sink = SQLiteSink(tmp_path / "a.db")
        sink.write(events)
        sink.close()
        source = f"sqlite:///{tmp_path / 'a.db'}"
    else:
        source = MemorySink()
        source.write(events)
    kinds = by_kind(advise(source))
    assert sorted(kinds) == ["alias", "confusion", "incomplete", "never_called", "parameter", "polling",
                             "retry_loop", "timeout", "unknown_name"]
    (alias,) = kinds["alias"]
    assert (alias.subject, alias.score, alias.evidence["called_next"]) == ("getLeaderboard", 3, {"get_leaderboard": 3})
    assert "aliases={'getLeaderboard': 'get_leaderboard'}" in alias.detail
    assert kinds["unknown_name"][0].subject == "searchAll"
    assert (kinds["parameter"][0].subject, kinds["parameter"][0].score) == ("search.limit", 3)
    assert kinds["confusion"][0].subject == "lookup / search"
    loop = kinds["retry_loop"][0]
    assert (loop.subject, loop.sessions) == ("fetch", ["loop0", "loop1", "loop2"])
    assert (kinds["polling"][0].subject, kinds["polling"][0].score) == ("status", 3)
    assert (kinds["timeout"][0].subject, kinds["timeout"][0].score) == ("slow", 3)
    assert kinds["incomplete"][0].evidence == {"incomplete": 3, "checked": 4}
    assert [a.subject for a in kinds["never_called"]] == ["never_used"]


def test_thin_evidence_gives_no_advice(tmp_path):
    """Two of each pattern over 5 sessions: every rule stays silent, and the CLI says why."""
    sink = SQLiteSink(tmp_path / "thin.db")
    sink.write(scenario(2, 5))
    sink.close()
    assert advise(f"sqlite:///{tmp_path / 'thin.db'}") == []
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_URL"}
    out = subprocess.run([sys.executable, "-m", "mcp_tracking.cli", "advise", "--db", f"sqlite:///{tmp_path}/thin.db"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "No advice" in out.stdout


def test_advise_on_the_command_line(tmp_path):
    sink = SQLiteSink(tmp_path / "a.db")
    sink.write(scenario(4, 12))
    sink.close()
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_URL"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mcp_tracking.cli", "advise", "--db",
                               f"sqlite:///{tmp_path}/a.db", *args], capture_output=True, text=True, timeout=120,
                              env=env)

    table = cli()
    assert table.returncode == 0 and "things to change, most evidence first" in table.stdout
    data = json.loads(cli("--format", "json").stdout)
    assert data[0]["score"] >= data[-1]["score"] and {d["kind"] for d in data} >= {"alias", "parameter"}
