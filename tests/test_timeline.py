"""A session call by call (the dashboard's worst sessions, and ``mcp-tracking serve`` later): what the agent
called, what it got back, what it did next, from a real server's events."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import anyio
from scenario import mcpserver, run_on_server

from mcp_tracking import AnalyticsClient, MemorySink
from mcp_tracking.events import EventRecord
from mcp_tracking.report.timeline import render_timeline, session_timeline, worst_sessions


def test_the_contract_scenario_call_by_call():
    """The scripted session of tests/scenario.py on MCPServer: every step in order, with its outcome, the
    answer the agent got where we know it, the marks, and what the agent called next."""
    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02)
    anyio.run(run_on_server, mcpserver(client))
    client.close()
    (sid,) = {e["session_id"] for e in sink.events}
    tl = session_timeline(sink, sid)
    assert [(s.tool, s.outcome) for s in tl.steps] == [
        ("serach", "unknown name"), ("search", "refused"), ("search", "refused"), ("search", "completed"),
        ("lookup", "failed"), ("lookup", "failed"), ("list_items", "completed"), ("list_items", "completed"),
        ("status", "completed"), ("status", "completed"), ("search", "completed")]
    unknown, refused, retried, observed, raised, _, switched, same, *_ = tl.steps
    assert unknown.answer == "Unknown tool. Did you mean 'search'?" and unknown.next_tool == "search"
    assert refused.answer.startswith("Invalid arguments: limit: expected integer")
    assert any(m.startswith("retry #1 of call 1 (validation_failed)") for m in retried.marks)
    assert observed.answer is None and any(m.startswith("schema: limit") for m in observed.marks)
    assert raised.error.startswith("tool_error") and raised.duration_ms is not None
    assert "switched from 'lookup' after it failed" in switched.marks
    assert any("repeated_after_success" in m for m in same.marks)
    assert tl.outcome == "completed (success=true)" and tl.client and "answer complete" in tl.steps[-1].marks


def test_overlapping_calls_are_drawn_side_by_side_and_names_are_escaped():
    """Two calls in flight at once: the slow one from 0 for 900 ms, the fast one from 10 ms for 5 ms, each its
    own bar from its own start; a hostile name is shown as text, never as markup."""
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    sink = MemorySink()
    evil = "<script>alert(1)</script>"
    sink.write([
        EventRecord("session_start", "u", "s", "m", {}, created_at=t0),
        EventRecord("tool_call_started", "u", "s", "m", {"tool_name": "slow", "call_sequence": 1}, created_at=t0),
        EventRecord("tool_call_started", "u", "s", "m", {"tool_name": "fast", "call_sequence": 2},
                    created_at=t0 + timedelta(milliseconds=10)),
        EventRecord("tool_call_completed", "u", "s", "m", {"tool_name": "fast", "call_sequence": 2,
                                                            "execution_time_ms": 5.0},
                    created_at=t0 + timedelta(milliseconds=15)),
        EventRecord("hallucinated_tool_call", "u", "s", "m", {"requested_tool_name": evil},
                    created_at=t0 + timedelta(milliseconds=20)),
        EventRecord("tool_call_completed", "u", "s", "m", {"tool_name": "slow", "call_sequence": 1,
                                                            "execution_time_ms": 900.0},
                    created_at=t0 + timedelta(milliseconds=900)),
    ])
    page = render_timeline(session_timeline(sink, "s"))
    bars = re.findall(r'<rect class="bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)
    (slow_x, slow_w), (fast_x, fast_w) = ((float(x), float(w)) for x, w in bars)
    assert slow_x < fast_x < slow_x + slow_w and fast_w < slow_w  # overlapping, each on its own clock
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_worst_sessions_come_first():
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    sink = MemorySink()
    events = []
    for sid, retries in (("good", 0), ("bad", 2), ("worse", 3)):
        events.append(EventRecord("session_start", "u", sid, "m", {}, created_at=t0))
        for k in range(4):
            events.append(EventRecord("tool_call_started", "u", sid, "m", {"tool_name": "t"}, created_at=t0))
            if k < retries:
                events.append(EventRecord("tool_call_retry", "u", sid, "m", {"tool_name": "t"}, created_at=t0))
    sink.write(events)
    assert worst_sessions(sink, n=2) == ["worse", "bad"]
