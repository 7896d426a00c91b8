"""AnalyticsClient: in-memory session state, canonical hashing, outcomes, robustness."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from decimal import Decimal

from mcp_tracking import AnalyticsClient, MemorySink
from mcp_tracking._json import params_hash


class CountingSink(MemorySink):
    """A memory sink that counts reads: the hot path must never read the store."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def iter_events(self, **kw):
        self.reads += 1
        return super().iter_events(**kw)


def test_params_hash_is_canonical_and_total():
    """Same params in any key order hash alike; non-JSON values hash stably instead of raising."""
    assert params_hash({"a": 1, "b": {"x": [1, 2], "y": 2}}) == params_hash({"b": {"y": 2, "x": [1, 2]}, "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
    odd = {"when": datetime(2026, 1, 1, tzinfo=timezone.utc), "raw": b"\x00\x01", "tags": {"b", "a"},
           "nan": math.nan, "obj": object(), "dec": Decimal("1.5"), 3: "int key", "big": 2**80}
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    deep: dict = {}
    cur = deep
    for _ in range(1000):
        cur["n"] = {}
        cur = cur["n"]
    for value in (odd, cyclic, deep, None, [1, 2], "text"):
        h = params_hash(value)
        assert len(h) == 32 and h == params_hash(value)
    assert params_hash({"tags": {"a", "b"}}) == params_hash({"tags": {"b", "a"}})


def test_hot_path_never_reads_the_store():
    """Sequence, retries and counts come from memory: a thousand calls, zero store reads."""
    sink = CountingSink()
    client = AnalyticsClient(sink)
    for i in range(1000):
        client.track_tool_call_started("u", "t", {"i": i % 10}, session_id="s", mcp_tools_manifest=["t"])
        client.track_tool_usage("u", "t", {"i": i % 10}, True, 1.0, session_id="s")
    assert client.get_session_tool_call_count("s") == 1000
    assert sink.reads == 0
    client.flush()
    retries = [e for e in sink.events if e["event_name"] == "tool_call_retry"]
    assert len(retries) == 990
    client.close(end_sessions=False)


def test_wrong_tool_after_a_failure():
    """A failed call followed by a different tool emits wrong_tool_error with both sequences."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    client.track_tool_call_started("u", "get_benchmark_results", {"m": 1}, session_id="s")
    client.track_tool_call_failed("u", "get_benchmark_results", {"m": 1}, "execution_error", "boom", 3.0,
                                  session_id="s")
    client.track_tool_call_started("u", "get_benchmark_results_by_filters", {"m": 1}, session_id="s")
    client.flush()
    wrong = [e["metadata"] for e in sink.events if e["event_name"] == "wrong_tool_error"]
    assert wrong == [{"first_tool_name": "get_benchmark_results", "second_tool_name": "get_benchmark_results_by_filters",
                      "first_tool_params": {"m": 1}, "second_tool_params": {"m": 1},
                      "detection_pattern": "retry_with_different_tool", "call_sequence": [1, 2],
                      "first_error_type": "execution_error"}]
    client.close(end_sessions=False)


def test_session_outcome_at_end_follows_the_final_call():
    """Ending a session: completed when its last call succeeded, abandoned when it failed."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    for sid, ok in (("good", True), ("bad", False)):
        client.start_session("u", sid)
        client.track_tool_call_started("u", "t", {}, session_id=sid)
        client.track_tool_call_failed("u", "t", {}, session_id=sid)  # an early failure...
        client.track_tool_call_started("u", "t2", {}, session_id=sid)
        client.track_tool_usage("u", "t2", {}, ok, 2.0, session_id=sid)  # ...then the final call
        client.end_session(sid)
    client.flush()
    good = {e["event_name"]: e["metadata"] for e in sink.events if e["session_id"] == "good"}
    bad = {e["event_name"]: e["metadata"] for e in sink.events if e["session_id"] == "bad"}
    assert good["session_completed"]["success"] is True  # recovered: not "no call ever failed"
    assert good["session_completed"]["failed_calls_count"] == 1
    assert good["session_completed"]["steps_count"] == 2
    assert "session_abandoned" in bad and "session_completed" not in bad
    assert good["session_end"]["end_reason"] == "explicit"
    client.close(end_sessions=False)


def test_explicit_outcomes_win():
    """track_session_completed / task_completed(success=False) decide the outcome; nothing is emitted twice."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    client.track_tool_call_started("u", "t", {}, session_id="a")
    client.track_tool_usage("u", "t", {}, True, 1.0, session_id="a")
    client.track_session_completed("u", session_id="a", completion_reason="task_finished")
    client.end_session("a")
    client.track_task_completed("u", session_id="b", success=False)
    client.end_session("b")
    client.flush()
    assert [e["event_name"] for e in sink.events if e["session_id"] == "a"].count("session_completed") == 1
    b = [e["event_name"] for e in sink.events if e["session_id"] == "b"]
    assert "session_failed" in b and "session_completed" not in b
    client.close(end_sessions=False)


def test_sessions_idle_out_and_memory_is_bounded():
    """Idle sessions end with idle_timeout; past max_sessions the least recently active are ended."""
    now = [0.0]
    sink = MemorySink()
    client = AnalyticsClient(sink, idle_timeout=60, max_sessions=100)
    client.sessions.clock = lambda: now[0]
    for i in range(250):
        client.track("u", "tool_call_started", {"tool_name": "t"}, session_id=f"s{i}")
    assert len(client.sessions) == 100
    now[0] = 61.0
    assert client.sessions.expire() == 100
    assert len(client.sessions) == 0
    client.flush()
    ends = [e["metadata"]["end_reason"] for e in sink.events if e["event_name"] == "session_end"]
    assert ends.count("evicted") == 150 and ends.count("idle_timeout") == 100
    client.close(end_sessions=False)


def test_track_accepts_any_name_and_bad_input_without_raising():
    """Custom event names (the drea server sends tool names) and odd metadata are stored, never raised."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    assert client.track("user_123", "get_benchmark_results_by_filters", {"k": {1, 2}, "b": b"x"}, "s", "drea")
    assert client.track(None, "x", None)  # type: ignore[arg-type]
    assert client.track("u", "x", {"n": math.inf, "o": object()})
    client.flush()
    assert [e["event_name"] for e in sink.events] == ["get_benchmark_results_by_filters", "x", "x"]
    assert sink.events[1]["user_id"] == "anonymous"
    assert sink.events[2]["metadata"] == {"n": "inf", "o": "<object>"}
    client.close(end_sessions=False)


def test_bound_session_is_the_current_one():
    """client.session() binds a session for get_current_session_id and the interceptors."""
    client = AnalyticsClient(MemorySink())
    default = client.get_current_session_id()
    assert default == client.get_current_session_id()
    with client.session("mine", user_id="alice") as sid:
        assert sid == "mine" and client.get_current_session_id() == "mine"
    assert client.get_current_session_id() == default
    client.close(end_sessions=False)


def test_the_other_explicit_helpers_emit_their_events():
    """track_session_failed/abandoned, track_tool_call_retry, track_wrong_tool, track_answer_completeness."""
    sink = MemorySink()
    client = AnalyticsClient(sink)
    client.track_tool_call_started("u", "t", {"a": 1}, session_id="s")
    client.track_tool_call_retry("u", "t", {"a": 1}, original_call_sequence=1, session_id="s")
    client.track_wrong_tool("u", "t", "t2", {"a": 1}, {"b": 2}, call_sequence=[1, 2], session_id="s")
    client.track_answer_completeness("u", False, 0.5, ["has_result_data"], ["has_multiple_results"], "t", 1,
                                     session_id="s")
    client.track_session_failed("u", session_id="s")
    client.track_session_abandoned("u", session_id="s2")
    client.end_session("s")
    client.flush()
    by = {e["event_name"]: e["metadata"] for e in sink.events}
    # an explicit retry follows the tool_call_started of the call that retries (the documented order)
    assert by["tool_call_retry"]["original_call_sequence"] == 1 and by["tool_call_retry"]["call_sequence"] == 1
    assert by["wrong_tool_error"]["call_sequence"] == [1, 2]
    assert by["answer_incomplete"]["checks_failed"] == ["has_multiple_results"]
    assert by["session_failed"]["success"] is False and by["session_abandoned"]["success"] is False
    names = [e["event_name"] for e in sink.events if e["session_id"] == "s"]
    assert names.count("session_failed") == 1 and "session_abandoned" not in names  # no second outcome at end
    client.close(end_sessions=False)
