"""Sinks from URLs, read-only opening, JSONL recovery, the embedded default."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mcp_tracking import AnalyticsClient, JSONLSink, MemorySink, SQLiteSink, sink_from_url
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks import default_url
from mcp_tracking.sinks.sqlite import SQLiteStoreError


def test_sink_from_url_variants(tmp_path, monkeypatch):
    """sqlite (relative and absolute), jsonl, memory and plain paths map to the right sink."""
    monkeypatch.chdir(tmp_path)
    assert isinstance(sink_from_url("memory://"), MemorySink)
    rel = sink_from_url("sqlite:///rel.db")
    assert isinstance(rel, SQLiteSink) and rel.path == Path("rel.db")
    absolute = sink_from_url(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.path == tmp_path / "abs.db"
    assert isinstance(sink_from_url("jsonl:///events.jsonl"), JSONLSink)
    assert isinstance(sink_from_url(tmp_path / "x.sqlite"), SQLiteSink)
    assert isinstance(sink_from_url("x.jsonl"), JSONLSink)
    with pytest.raises(ValueError, match="unknown store URL scheme"):
        sink_from_url("mongodb://x")
    with pytest.raises(ValueError, match="cannot tell"):
        sink_from_url("events.csv")


def test_embedded_default_is_sqlite_in_the_working_directory(tmp_path, monkeypatch):
    """No configuration: ./mcp_tracking.db; MCP_TRACKING_URL overrides it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_TRACKING_URL", raising=False)
    client = AnalyticsClient()
    assert isinstance(client.sink, SQLiteSink) and client.sink.path == Path("mcp_tracking.db")
    client.track("u", "hello", {})
    client.close()
    assert (tmp_path / "mcp_tracking.db").exists()
    monkeypatch.setenv("MCP_TRACKING_URL", f"jsonl:///{tmp_path}/env.jsonl")
    assert default_url().startswith("jsonl://")
    assert isinstance(AnalyticsClient().sink, JSONLSink)


def test_read_only_sqlite_cannot_write(sqlite_path):
    """A read-only sink refuses writes and reads what is there; a missing file is a clear error."""
    SQLiteSink(sqlite_path).write([EventRecord("e", "u", "s", None, {})])
    ro = SQLiteSink(sqlite_path, read_only=True)
    assert ro.count() == 1
    with pytest.raises(SQLiteStoreError):
        ro.write([EventRecord("e", "u", "s", None, {})])
    conn = ro.connect_read()
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM raw_analytics")
    conn.close()
    with pytest.raises(SQLiteStoreError, match="no database"):
        SQLiteSink(sqlite_path.parent / "missing.db", read_only=True).connect_read()


def test_sqlite_schema_version_is_recorded_and_checked(sqlite_path):
    """The store records its schema version and refuses a newer one."""
    sink = SQLiteSink(sqlite_path)
    sink.write([EventRecord("e", "u", "s", None, {})])
    sink.close()
    conn = sqlite3.connect(sqlite_path)
    assert conn.execute("SELECT value FROM mcp_tracking_meta WHERE key='store_schema_version'").fetchone() == ("1",)
    conn.execute("UPDATE mcp_tracking_meta SET value='99'")
    conn.commit()
    conn.close()
    with pytest.raises(SQLiteStoreError, match="newer"):
        SQLiteSink(sqlite_path).write([EventRecord("e", "u", "s", None, {})])


def test_jsonl_skips_a_torn_last_line_and_duplicates(tmp_path):
    """A crash mid-write leaves a partial line; replayed events appear once."""
    sink = JSONLSink(tmp_path / "e.jsonl")
    batch = [EventRecord("e", "u", "s", None, {"i": i}) for i in range(3)]
    sink.write(batch)
    sink.write(batch[:1])
    sink.close()
    with open(tmp_path / "e.jsonl", "ab") as fh:
        fh.write(b'{"event_id": "torn')
    events = list(sink.iter_events())
    assert [e["metadata"]["i"] for e in events] == [0, 1, 2]


def test_iter_events_filters_by_session_and_user(sqlite_path):
    """Stored events read back filtered, oldest first, in the design's dict shape."""
    sink = SQLiteSink(sqlite_path)
    sink.write([EventRecord("a", "u1", "s1", "m", {"k": 1}), EventRecord("b", "u2", "s2", "m", {"k": 2}),
                EventRecord("c", "u1", "s1", "m", {"k": 3})])
    got = list(sink.iter_events(session_id="s1"))
    assert [e["event_name"] for e in got] == ["a", "c"]
    assert set(got[0]) >= {"event_id", "event_name", "user_id", "session_id", "mcp_name", "created_at", "metadata"}
    assert [e["event_name"] for e in sink.iter_events(user_id="u2")] == ["b"]


@pytest.mark.parametrize("size", [1, 79, 80, 81, 161, 1000])
def test_sqlite_batches_of_any_size_are_stored_once_in_order(tmp_path, size):
    """Batches go in as multi-row statements of 80 rows: every size around that edge stores each event
    once, with its fields, and a replayed batch (or an event twice in one batch) adds nothing."""
    sink = SQLiteSink(tmp_path / "t.db")
    batch = [EventRecord("tool_call_completed", f"u{i}", f"s{i % 7}", "m",
                         {"tool_name": f"t{i}", "execution_time_ms": float(i), "success": i % 2 == 0,
                          "params_hash": f"h{i}"}) for i in range(size)]
    sink.write(batch)
    sink.write(batch)  # a replay
    sink.write(batch[:1] + batch[:1])  # the same event twice in one batch
    conn = sqlite3.connect(tmp_path / "t.db")
    rows = conn.execute("SELECT id, user_id, session_id, tool_name, execution_time_ms, success, params_hash "
                        "FROM raw_analytics ORDER BY rowid").fetchall()
    conn.close()
    sink.close()
    assert rows == [(r.event_id, f"u{i}", f"s{i % 7}", f"t{i}", float(i), int(i % 2 == 0), f"h{i}")
                    for i, r in enumerate(batch)]
