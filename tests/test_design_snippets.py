"""The design's "Event Metadata Structures" and "Enhanced Tool Usage Tracking" snippets, copied verbatim.

Each runs unchanged against AnalyticsClient (``{...}`` included: it is a Python set holding Ellipsis),
and the rows stored in SQLite carry exactly the fields the snippet sent.
"""

from __future__ import annotations

import sqlite3

import pytest

from mcp_tracking import AnalyticsClient
from mcp_tracking._json import loads


@pytest.fixture(name="analytics")
def _analytics(sqlite_path):
    client = AnalyticsClient(f"sqlite:///{sqlite_path}", flush_interval=0.05)
    yield client
    client.close(end_sessions=False)


def stored(path, event_name):
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT user_id, session_id, mcp_name, metadata FROM raw_analytics WHERE event_name = ? "
                            "ORDER BY created_at", (event_name,)).fetchall()
    finally:
        conn.close()
    return [(u, s, m, loads(md)) for u, s, m, md in rows]


SESSION_ID = "session_123"


def test_metadata_structure_snippets(analytics, sqlite_path):
    """Snippets 1-8 of "Event Metadata Structures" store their fields exactly."""
    session_id = SESSION_ID
    # --- verbatim from the design (1. Session Completion Event) ---
    analytics.track(
        user_id="user_123",
        event_name="session_completed",
        metadata={
            "completion_reason": "task_finished",  # or "timeout", "user_cancelled", etc.
            "success": True,
            "steps_count": 5,  # Number of tool calls in session
            "total_duration_ms": 2500.0,
            "final_result_type": "agent_summary"  # or "tool_result", "error"
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 2. Tool Call Started Event ---
    analytics.track(
        user_id="user_123",
        event_name="tool_call_started",
        metadata={
            "tool_name": "get_benchmark_results_by_filters",
            "tool_params": {...},  # Parameters being used
            "call_sequence": 1,  # Order in session (1, 2, 3...)
            "is_retry": False,  # Whether this is a retry
            "previous_tool_name": None,  # Previous tool in session
            "params_hash": "abc123",  # Hash of params for retry detection
            "mcp_tool_available": True  # Whether tool exists in manifest
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 3. Tool Call Failed Event ---
    analytics.track(
        user_id="user_123",
        event_name="tool_call_failed",
        metadata={
            "tool_name": "get_benchmark_results_by_filters",
            "tool_params": {...},
            "error_type": "execution_error",  # or "validation_error", "timeout"
            "error_message": "Database connection failed",
            "execution_time_ms": 150.0,
            "call_sequence": 2,
            "retry_eligible": True  # Whether this can be retried
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 4. Schema Validation Error Event ---
    analytics.track(
        user_id="user_123",
        event_name="schema_validation_error",
        metadata={
            "tool_name": "get_benchmark_results_by_filters",
            "tool_params": {...},  # Invalid params
            "validation_errors": [
                {
                    "field": "model_name",
                    "error": "required field missing",
                    "schema_path": "properties.model_name"
                }
            ],
            "call_sequence": 3,
            "schema_version": "1.0.0"
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 5. Hallucinated Tool Call Event ---
    analytics.track(
        user_id="user_123",
        event_name="hallucinated_tool_call",
        metadata={
            "requested_tool_name": "get_benchmark_results_advanced",  # Not in manifest
            "tool_params": {...},
            "available_tools": ["get_benchmark_results_by_filters", ...],  # Actual tools
            "call_sequence": 4,
            "similar_tool_suggested": "get_benchmark_results_by_filters"  # If fuzzy match exists
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 6. Tool Call Retry Event ---
    analytics.track(
        user_id="user_123",
        event_name="tool_call_retry",
        metadata={
            "tool_name": "get_benchmark_results_by_filters",
            "tool_params": {...},
            "params_hash": "abc123",  # Same as original call
            "original_call_sequence": 2,  # First attempt sequence number
            "retry_attempt": 1,  # 1st retry, 2nd retry, etc.
            "retry_reason": "execution_failed",  # Why retrying
            "call_sequence": 5
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 7. Wrong Tool Error Event ---
    analytics.track(
        user_id="user_123",
        event_name="wrong_tool_error",
        metadata={
            "first_tool_name": "get_benchmark_results",
            "second_tool_name": "get_benchmark_results_by_filters",
            "first_tool_params": {...},
            "second_tool_params": {...},
            "detection_pattern": "retry_with_different_tool",  # or "immediate_switch"
            "call_sequence": [2, 3]  # Sequence numbers of both calls
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- 8. Answer Completeness Event ---
    analytics.track(
        user_id="user_123",
        event_name="answer_complete",  # or "answer_incomplete"
        metadata={
            "completeness_score": 0.85,  # 0.0 to 1.0
            "detection_method": "heuristic_validation",  # or "user_feedback", "explicit_signal"
            "checks_passed": [
                "has_result_data",
                "has_multiple_results",
                "includes_metrics"
            ],
            "checks_failed": [
                "missing_cost_analysis"
            ],
            "tool_name": "get_benchmark_results_by_filters",
            "result_count": 5
        },
        session_id=session_id,
        mcp_name="drea"
    )
    # --- end of verbatim snippets ---
    assert analytics.flush()
    placeholder = ["<ellipsis>"]  # {...} is a set holding Ellipsis: stored as a JSON array
    expectations = {
        "session_completed": {"completion_reason": "task_finished", "success": True, "steps_count": 5,
                              "total_duration_ms": 2500.0, "final_result_type": "agent_summary"},
        "tool_call_started": {"tool_name": "get_benchmark_results_by_filters", "tool_params": placeholder,
                              "call_sequence": 1, "is_retry": False, "previous_tool_name": None,
                              "params_hash": "abc123", "mcp_tool_available": True},
        "tool_call_failed": {"tool_name": "get_benchmark_results_by_filters", "tool_params": placeholder,
                             "error_type": "execution_error", "error_message": "Database connection failed",
                             "execution_time_ms": 150.0, "call_sequence": 2, "retry_eligible": True},
        "schema_validation_error": {"tool_name": "get_benchmark_results_by_filters", "tool_params": placeholder,
                                    "validation_errors": [{"field": "model_name", "error": "required field missing",
                                                           "schema_path": "properties.model_name"}],
                                    "call_sequence": 3, "schema_version": "1.0.0"},
        "hallucinated_tool_call": {"requested_tool_name": "get_benchmark_results_advanced",
                                   "tool_params": placeholder,
                                   "available_tools": ["get_benchmark_results_by_filters", "<ellipsis>"],
                                   "call_sequence": 4,
                                   "similar_tool_suggested": "get_benchmark_results_by_filters"},
        "tool_call_retry": {"tool_name": "get_benchmark_results_by_filters", "tool_params": placeholder,
                            "params_hash": "abc123", "original_call_sequence": 2, "retry_attempt": 1,
                            "retry_reason": "execution_failed", "call_sequence": 5},
        "wrong_tool_error": {"first_tool_name": "get_benchmark_results",
                             "second_tool_name": "get_benchmark_results_by_filters",
                             "first_tool_params": placeholder, "second_tool_params": placeholder,
                             "detection_pattern": "retry_with_different_tool", "call_sequence": [2, 3]},
        "answer_complete": {"completeness_score": 0.85, "detection_method": "heuristic_validation",
                            "checks_passed": ["has_result_data", "has_multiple_results", "includes_metrics"],
                            "checks_failed": ["missing_cost_analysis"],
                            "tool_name": "get_benchmark_results_by_filters", "result_count": 5},
    }
    for event_name, metadata in expectations.items():
        rows = stored(sqlite_path, event_name)
        assert len(rows) == 1, event_name
        user, session, mcp, md = rows[0]
        assert (user, session, mcp) == ("user_123", SESSION_ID, "drea")
        assert md == metadata, event_name


def test_enhanced_tool_usage_snippets(analytics, sqlite_path):
    """The "current" and "enhanced" tool-usage snippets run unchanged and emit the lifecycle."""
    session_id = SESSION_ID
    # --- verbatim: Current approach ---
    analytics.track_tool_usage(
        user_id="user_123",
        tool_name="get_benchmark_results_by_filters",
        tool_params={...},
        success=True,
        execution_time_ms=111.46
    )
    for success in (True, False):
        e = RuntimeError("Database connection failed")
        # --- verbatim: Enhanced approach ---
        # Track tool call START
        analytics.track_tool_call_started(
            user_id="user_123",
            tool_name="get_benchmark_results_by_filters",
            tool_params={...},
            session_id=session_id,
            mcp_name="drea",
            mcp_tools_manifest=["get_benchmark_results_by_filters", ...]  # For hallucination detection
        )

        # ... tool executes ...

        # Track tool call COMPLETION or FAILURE
        if success:
            analytics.track_tool_usage(  # Existing method, now tracks "completed"
                user_id="user_123",
                tool_name="get_benchmark_results_by_filters",
                tool_params={...},
                success=True,
                execution_time_ms=111.46,
                session_id=session_id,
                mcp_name="drea"
            )
        else:
            analytics.track_tool_call_failed(
                user_id="user_123",
                tool_name="get_benchmark_results_by_filters",
                tool_params={...},
                error_type="execution_error",
                error_message=str(e),
                execution_time_ms=111.46,
                session_id=session_id,
                mcp_name="drea"
            )
    assert analytics.flush()
    completed = stored(sqlite_path, "tool_call_completed")
    assert len(completed) == 2
    assert {"tool_name", "tool_params", "success", "execution_time_ms"} <= set(completed[0][3])
    assert completed[0][3]["execution_time_ms"] == 111.46 and completed[0][3]["success"] is True
    started = [md for _, s, _, md in stored(sqlite_path, "tool_call_started") if s == SESSION_ID]
    assert [m["call_sequence"] for m in started] == [1, 2]
    assert [m["is_retry"] for m in started] == [False, True]  # same tool, same params, same session
    retries = stored(sqlite_path, "tool_call_retry")
    assert len(retries) == 1 and retries[0][3]["original_call_sequence"] == 1  # the design never emitted it
    failed = stored(sqlite_path, "tool_call_failed")
    assert failed[0][3]["error_message"] == "Database connection failed"
    assert failed[0][3]["call_sequence"] == 2
    assert analytics.get_session_tool_call_count(session_id) == 2


def test_design_helper_hallucination_and_schema(analytics):
    """track_tool_call_started flags unknown names with a suggestion; helpers fill call_sequence from memory."""
    sid = "s-h"
    assert analytics.track_tool_call_started("u", "get_benchmark_results_advanced", {"model_name": "x"},
                                             session_id=sid, mcp_name="drea",
                                             mcp_tools_manifest=["get_benchmark_results_by_filters", "list_models"]) \
        is False
    analytics.track_schema_validation_error("u", "get_benchmark_results_by_filters", {"limit": "x"},
                                            [{"field": "model_name", "error": "required field missing",
                                              "schema_path": "properties.model_name"}], session_id=sid)
    events = analytics.get_session_events(sid)
    by_name = {e["event_name"]: e["metadata"] for e in events}
    assert by_name["hallucinated_tool_call"]["similar_tool_suggested"] == "get_benchmark_results_by_filters"
    assert by_name["hallucinated_tool_call"]["available_tools"] == ["get_benchmark_results_by_filters", "list_models"]
    assert by_name["schema_validation_error"]["call_sequence"] == 1
