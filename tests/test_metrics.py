"""The ten metrics: a hand-computed scenario through SQLite and the Python twin, random equivalence, edges."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from helpers import assert_whole_sessions_agree, writing_whole_sessions

from mcp_tracking import AnalyticsClient, MemorySink, SQLiteSink, compute_metrics
from mcp_tracking.events import EventRecord
from mcp_tracking.metrics.model import METRIC_KEYS

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def scenario() -> list[EventRecord]:
    """Four sessions with known hallucinations, schema errors, failures, recoveries, retries, completions,
    in the event contract's order (docs/events.md)."""
    out: list[EventRecord] = []
    clock = [T0]

    def ev(name, user, sid, **md):
        clock[0] += timedelta(seconds=1)
        out.append(EventRecord(name, user, sid, "drea", md, created_at=clock[0]))

    # S1 (alice): fails on t1, schema error on t2, switches, retries t2 once, completes successfully
    ev("session_start", "alice", "S1")
    ev("tool_call_started", "alice", "S1", tool_name="t1", params_hash="a", call_sequence=1)
    ev("tool_call_failed", "alice", "S1", tool_name="t1", error_type="execution_error", execution_time_ms=5.0)
    ev("wrong_tool_error", "alice", "S1", first_tool_name="t1", second_tool_name="t2", call_sequence=[1, 2])
    ev("tool_call_started", "alice", "S1", tool_name="t2", params_hash="h", call_sequence=2)
    ev("schema_validation_error", "alice", "S1", tool_name="t2",
       validation_errors=[{"field": "limit", "error": "expected integer, got string 'x'", "kind": "type"}])
    ev("tool_call_completed", "alice", "S1", tool_name="t2", execution_time_ms=10.0)
    ev("tool_call_started", "alice", "S1", tool_name="t2", params_hash="h", call_sequence=3)
    ev("tool_call_retry", "alice", "S1", tool_name="t2", params_hash="h", retry_attempt=1)
    ev("tool_call_completed", "alice", "S1", tool_name="t2", execution_time_ms=30.0)
    ev("answer_complete", "alice", "S1", tool_name="t2")
    ev("session_completed", "alice", "S1", success=True)
    # S2 (alice): asks for t3, which is not a tool (not a call, not a step), then calls t1; never completes
    ev("session_start", "alice", "S2")
    ev("hallucinated_tool_call", "alice", "S2", requested_tool_name="t3", similar_tool_suggested="t1")
    ev("tool_call_started", "alice", "S2", tool_name="t1", params_hash="b", after_hallucinated_tool="t3")
    ev("tool_call_completed", "alice", "S2", tool_name="t1", execution_time_ms=20.0)
    ev("session_abandoned", "alice", "S2", success=False)
    # S3 (bob): the same t1 call four times (3 retries), completed without success
    ev("session_start", "bob", "S3")
    for i in range(4):
        ev("tool_call_started", "bob", "S3", tool_name="t1", params_hash="k")
        if i:
            ev("tool_call_retry", "bob", "S3", tool_name="t1", params_hash="k", retry_attempt=i)
        if i < 3:
            ev("tool_call_failed", "bob", "S3", tool_name="t1", error_type="execution_error", execution_time_ms=1.0)
    ev("tool_call_completed", "bob", "S3", tool_name="t1", execution_time_ms=40.0)
    ev("answer_incomplete", "bob", "S3", tool_name="t1")
    ev("answer_complete", "bob", "S3", tool_name="t1")
    ev("session_completed", "bob", "S3", success=False)
    # S4 (bob): started, nothing else
    ev("session_start", "bob", "S4")
    return out


@pytest.fixture(name="sources", params=["sqlite", "python"])
def _sources(request, tmp_path):
    events = scenario()
    if request.param == "sqlite":
        sink = SQLiteSink(tmp_path / "m.db")
        sink.write(events)
        return f"sqlite:///{tmp_path}/m.db"
    sink = MemorySink()
    sink.write(events)
    return sink


def test_hand_computed_scenario(sources):
    """Every metric equals the value computed by hand, through SQLite and through the Python twin.

    8 tool calls (S1 3, S2 1, S3 4: t3 is not one), 1 schema error, 1 wrong-tool switch, 4 retries."""
    d = compute_metrics(sources).to_dict()
    assert list(d)[:10] == list(METRIC_KEYS)
    assert d["task_completion_rate"] == {"value": 0.5, "completed_sessions": 2, "total_sessions": 4}
    assert d["steps_to_goal"] == {"value": 3.0, "successful_sessions": 1, "total_steps": 3, "max": 3}
    assert d["semantic_clarity_score"]["value"] == round(1 - (1 + 1 + 4) / 8, 4)
    assert d["retry_rate"]["value"] == round(4 / 8, 4)
    assert d["hallucination_rate"]["value"] == 0.25 and d["hallucination_rate"]["per_call"] == round(1 / 8, 4)
    assert d["schema_violation_rate"]["value"] == round(1 / 8, 4)
    # S1 (failure + schema error) and S3 (failures) had errors; S1 ended in success
    assert d["recovery_rate"] == {"value": 0.5, "recovered_sessions": 1, "sessions_with_errors": 2}
    assert d["answer_completeness_rate"]["value"] == round(2 / 3, 4)
    lat = d["latency_per_step"]
    assert (lat["value"], lat["count"], lat["max_ms"]) == (25.0, 4, 40.0)
    assert lat["by_tool"] == [
        {"tool_name": "t1", "count": 2, "mean_ms": 30.0, "p50_ms": 20.0, "p95_ms": 40.0, "max_ms": 40.0},
        {"tool_name": "t2", "count": 2, "mean_ms": 20.0, "p50_ms": 10.0, "p95_ms": 30.0, "max_ms": 30.0},
    ]
    assert d["tool_popularity"] == {"value": "t1", "tools": [  # known tools only: no t3
        {"tool_name": "t1", "call_count": 6, "share": 0.75}, {"tool_name": "t2", "call_count": 2, "share": 0.25}]}
    assert d["tool_failure_rate"] == [
        {"tool_name": "t1", "calls": 6, "failed": 4, "value": 0.6667},
        {"tool_name": "t2", "calls": 2, "failed": 0, "value": 0.0},
    ]
    assert d["tool_confusion_pairs"] == [
        {"kind": "hallucination", "from_tool": "t3", "to_tool": "t1", "count": 1},
        {"kind": "wrong_tool", "from_tool": "t1", "to_tool": "t2", "count": 1},
    ]
    assert d["unknown_tools"] == [{"requested_tool_name": "t3", "count": 1, "suggested": "t1",
                                   "called_next": {"t1": 1}}]
    assert d["schema_hotspots"] == [{"tool_name": "t2", "field": "limit", "kind": "type", "count": 1,
                                     "example_error": "expected integer, got string 'x'"}]
    assert d["retry_loops"] == [{"session_id": "S3", "tool_name": "t1", "params_hash": "k", "calls": 4}]


def test_scopes_and_breakdowns(sources):
    """Per user, per session and time windows; per-user and per-session breakdowns."""
    bob = compute_metrics(sources, user_id="bob").to_dict()
    assert bob["task_completion_rate"]["value"] == 0.5 and bob["steps_to_goal"]["value"] is None
    assert bob["retry_rate"]["value"] == 0.75
    s1 = compute_metrics(sources, session_id="S1")
    assert s1.value("semantic_clarity_score") == 0.0 and s1.value("recovery_rate") == 1.0
    early = compute_metrics(sources, until=T0 + timedelta(seconds=12, milliseconds=500))
    assert early.totals.events == 12 and early.value("task_completion_rate") == 1.0
    late = compute_metrics(sources, since=T0 + timedelta(seconds=13))
    assert late.totals.events == len(scenario()) - 12
    users = compute_metrics(sources, breakdown="user").to_dict()["breakdown"]
    assert users["alice"]["task_completion_rate"] == 0.5 and users["alice"]["tool_calls"] == 4  # S1 3 + S2 1
    assert users["bob"]["steps_to_goal"] is None and users["bob"]["tool_calls"] == 4
    sessions = compute_metrics(sources, breakdown="session").to_dict()["breakdown"]
    assert set(sessions) == {"S1", "S2", "S3", "S4"} and sessions["S4"]["retry_rate"] is None


def test_zero_denominators_give_null_not_zero(tmp_path):
    """An empty scope: every ratio is None, nothing crashes."""
    for source in (MemorySink(), f"sqlite:///{tmp_path}/empty.db"):
        if isinstance(source, str):
            SQLiteSink(tmp_path / "empty.db").write([EventRecord("x", "u", None, None, {})])
        d = compute_metrics(source, user_id="nobody").to_dict()
        for key in METRIC_KEYS:
            if key != "tool_popularity":
                assert d[key]["value"] is None, key
        assert d["tool_popularity"] == {"value": None, "tools": []}


def test_successful_sessions_without_tool_calls_count_zero_steps(tmp_path):
    """A session completed without any tool call: steps-to-goal max 0 (not null) in every backend."""
    events = [EventRecord("session_start", "u", "s1", "m", {}),
              EventRecord("session_completed", "u", "s1", "m", {"success": True, "steps_count": 0})]
    memory = MemorySink()
    memory.write(events)
    sqlite = SQLiteSink(tmp_path / "z.db")
    sqlite.write(events)
    for source in (memory, sqlite):
        totals = compute_metrics(source).totals
        assert (totals.successful_sessions, totals.steps_in_successful, totals.max_steps_successful) == (1, 0, 0)


def random_events(seed: int, sessions: int = 150) -> list[EventRecord]:
    """Varied random sessions from the real client and recorder logic."""
    rng = random.Random(seed)
    sink = MemorySink()
    client = AnalyticsClient(sink)
    tools = ["alpha", "beta", "gamma", "delta"]
    for s in range(sessions):
        sid, user = f"s{s}", f"u{rng.randint(0, 6)}"
        if rng.random() < 0.9:
            client.start_session(user, sid)
        for _ in range(rng.randint(0, 8)):
            name = rng.choice([*tools, "ghost"])
            params = {"q": rng.randint(0, 2)}
            if not client.track_tool_call_started(user, name, params, sid, mcp_tools_manifest=tools):
                client.track_tool_call_failed(user, name, params, "unknown_tool", session_id=sid)
                continue
            if rng.random() < 0.15:
                client.track_schema_validation_error(user, name, params, [
                    {"field": rng.choice(["q", "limit"]), "error": rng.choice(["bad", "missing"]),
                     "kind": rng.choice(["type", "required"])}], session_id=sid)
            if rng.random() < 0.75:
                client.track_tool_usage(user, name, params, True, round(rng.uniform(0.1, 500), 3), session_id=sid)
            else:
                client.track_tool_call_failed(user, name, params, "execution_error", "x", rng.uniform(0, 9),
                                              session_id=sid)
            if rng.random() < 0.25:
                client.track_answer_completeness(user, rng.random() < 0.6, session_id=sid)
        if rng.random() < 0.4:
            client.track_session_completed(user, session_id=sid)
        elif rng.random() < 0.1:
            client.track_task_completed(user, session_id=sid, success=False)
        if rng.random() < 0.8:
            client.end_session(sid)
    client.track("u0", "orphan_event", {"tool_name": "alpha"})  # no session at all
    client.close(end_sessions=False)
    return [EventRecord.from_dict(e) for e in sink.events]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sqlite_and_python_twin_agree_on_random_sessions(tmp_path, seed):
    """Identical numbers from both implementations, for every scope and breakdown."""
    events = random_events(seed)
    mem = MemorySink()
    mem.write(events)
    sql = SQLiteSink(tmp_path / "r.db")
    sql.write(events)
    mid = events[len(events) // 2].created_at
    for kw in ({}, {"user_id": "u3"}, {"session_id": "s7"}, {"since": mid}, {"until": mid}, {"mcp_name": "nope"},
               {"breakdown": "user"}, {"breakdown": "session"}):
        assert compute_metrics(mem, **kw).to_dict() == compute_metrics(sql, **kw).to_dict(), kw


def test_latency_uses_each_calls_own_time_when_calls_overlap():
    """Two overlapping calls in one session: each keeps its own execution time (the design's LAG pairs them wrongly)."""
    sink = MemorySink()
    t = T0
    sink.write([
        EventRecord("tool_call_started", "u", "s", None, {"tool_name": "slow"}, created_at=t),
        EventRecord("tool_call_started", "u", "s", None, {"tool_name": "fast"}, created_at=t + timedelta(milliseconds=10)),
        EventRecord("tool_call_completed", "u", "s", None, {"tool_name": "fast", "execution_time_ms": 5.0},
                    created_at=t + timedelta(milliseconds=15)),
        EventRecord("tool_call_completed", "u", "s", None, {"tool_name": "slow", "execution_time_ms": 900.0},
                    created_at=t + timedelta(milliseconds=900)),
    ])
    by_tool = {r["tool_name"]: r["p50_ms"] for r in compute_metrics(sink).to_dict()["latency_per_step"]["by_tool"]}
    assert by_tool == {"fast": 5.0, "slow": 900.0}
    # the design's LAG(created_at) pairing would give fast = 15 - 10 = 5 ms but slow = 900 - 15 = 885 ms


def test_sqlite_metrics_halves_count_the_same_rows_while_events_are_written(tmp_path):
    """The session facts and the event counts come from two read connections that see the same rows: while
    a writer keeps adding whole sessions in single transactions, every result is consistent across the two
    halves (sessions and started sessions on one, completed, successful and steps on the other)."""
    path = tmp_path / "busy.db"
    SQLiteSink(path).write([EventRecord("x", "u", None, None, {})])
    with writing_whole_sessions(lambda: SQLiteSink(path)):
        for _ in range(40):
            assert_whole_sessions_agree(compute_metrics(f"sqlite:///{path}").totals)


def test_completion_never_exceeds_one_for_sessions_without_their_start(tmp_path):
    """A session completed in the scope whose session_start is outside it (before ``since``, or never sent
    through the SDK) counts in neither side of the completion rate: SQLite and the Python twin agree."""
    events = [
        EventRecord("session_start", "u", "A", "m", {}, created_at=T0),
        EventRecord("session_completed", "u", "A", "m", {"success": True}, created_at=T0 + timedelta(seconds=10)),
        EventRecord("session_completed", "u", "B", "m", {"success": True}, created_at=T0 + timedelta(seconds=11)),
        EventRecord("session_completed", "u", "C", "m", {"success": False}, created_at=T0 + timedelta(seconds=12)),
    ]
    sqlite = SQLiteSink(tmp_path / "c.db")
    sqlite.write(events)
    memory = MemorySink()
    memory.write(events)
    for source in (f"sqlite:///{tmp_path}/c.db", memory):
        whole = compute_metrics(source).to_dict()["task_completion_rate"]
        assert whole == {"value": 1.0, "completed_sessions": 1, "total_sessions": 1}
        late = compute_metrics(source, since=T0 + timedelta(seconds=5)).to_dict()["task_completion_rate"]
        assert late == {"value": None, "completed_sessions": 0, "total_sessions": 0}
        by_user = compute_metrics(source, breakdown="user").to_dict()["breakdown"]["u"]
        assert by_user["task_completion_rate"] == 1.0
