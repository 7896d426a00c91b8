"""Nothing lost, nothing broken: store outages (spool), restarts mid-outage, SIGTERM and SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcp_tracking import AnalyticsClient, SQLiteSink


class FlakySink(SQLiteSink):
    """A real SQLite store that refuses every write while ``down`` is set (a database outage)."""

    def __init__(self, path, down_marker: Path | None = None) -> None:
        super().__init__(path)
        self.down = False
        self.down_marker = down_marker

    def __repr__(self) -> str:  # stable across processes: the spool is keyed by it
        return f"FlakySink({str(self.path)!r})"

    def write(self, batch) -> None:
        if self.down or (self.down_marker is not None and self.down_marker.exists()):
            raise ConnectionError("database is down")
        super().write(batch)


def stored(path) -> list[tuple[str, int, str]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT session_id, json_extract(metadata, '$.call_sequence'), id FROM raw_analytics "
                        "WHERE event_name = 'tool_call_started' ORDER BY created_at, id").fetchall()
    conn.close()
    return rows


@pytest.mark.slow
def test_store_down_for_thirty_seconds_under_load(tmp_path):
    """30 s of outage under a steady load: every event stored exactly once, in per-session order."""
    sink = FlakySink(tmp_path / "flaky.db")
    client = AnalyticsClient(sink, flush_interval=0.1, batch_size=200, spool_after=0.5,
                             spool_dir=tmp_path / "spool")
    sent = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal sent
        seq: dict[str, int] = {}
        while not stop.is_set():
            sid = f"s{sent % 13}"
            seq[sid] = seq.get(sid, 0) + 1
            client.track("u", "tool_call_started", {"tool_name": "t", "call_sequence": seq[sid]}, session_id=sid)
            sent += 1
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(2)
        sink.down = True
        time.sleep(30)
        sink.down = False
        time.sleep(2)
    finally:
        stop.set()
        producer.join()
    assert client.flush(60)
    stats = client.stats
    client.close(end_sessions=False)
    assert stats.spooled > 0 and stats.replayed == stats.spooled
    assert stats.dropped == 0 and stats.failed_events == 0
    rows = stored(tmp_path / "flaky.db")
    assert len(rows) == sent and len({r[2] for r in rows}) == sent  # all, once
    per_session: dict[str, list[int]] = {}
    for sid, seq, _ in rows:
        per_session.setdefault(sid, []).append(seq)
    for seqs in per_session.values():
        assert seqs == list(range(1, len(seqs) + 1))  # in order, no gap


CHILD = r"""
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_reliability import FlakySink
from mcp_tracking import AnalyticsClient
tag, n = sys.argv[1], int(sys.argv[2])
client = AnalyticsClient(FlakySink({db!r}, Path({marker!r})), flush_interval=0.05, spool_after=0.2,
                         spool_dir={spool!r})
for i in range(n):
    client.track("u", "tool_call_started", {{"tool_name": "t", "call_sequence": i + 1}}, session_id=tag)
client.close(end_sessions=False)
s = client.stats
print(s.accepted, s.written, s.spooled, s.replayed, s.failed_events, flush=True)
"""


def test_restart_in_the_middle_of_an_outage_replays_the_spool(tmp_path):
    """A process spools during an outage and exits; the next one replays it first: all once, in order."""
    db, marker, spool = tmp_path / "r.db", tmp_path / "down", tmp_path / "spool"
    script = CHILD.format(tests=str(Path(__file__).parent), db=str(db), marker=str(marker), spool=str(spool))
    marker.touch()
    first = subprocess.run([sys.executable, "-c", script, "first", "3000"], capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    accepted, written, spooled, _, failed = map(int, first.stdout.split())
    assert (accepted, written, spooled, failed) == (3000, 0, 3000, 0)
    assert any(spool.iterdir())
    marker.unlink()
    second = subprocess.run([sys.executable, "-c", script, "second", "1000"], capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    accepted, written, spooled, replayed, failed = map(int, second.stdout.split())
    assert (written, replayed, failed) == (1000, 3000, 0)
    rows = stored(db)
    assert [r[0] for r in rows] == ["first"] * 3000 + ["second"] * 1000  # the spool first, in order
    assert [r[1] for r in rows[:3000]] == list(range(1, 3001))
    assert len({r[2] for r in rows}) == 4000


SIGNAL_CHILD = r"""
import sys, time
from mcp_tracking import AnalyticsClient, SQLiteSink
client = AnalyticsClient(SQLiteSink({db!r}), flush_interval=30, batch_size=100000, max_queue_size=200000)
for i in range({flushed}):
    client.track("u", "e", {{"i": i}}, session_id="s")
client.flush()
for i in range({flushed}, {flushed} + {pending}):
    client.track("u", "e", {{"i": i}}, session_id="s")
print("ready", flush=True)
time.sleep(60)
"""


def count(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM raw_analytics WHERE event_name = 'e'").fetchone()[0]
    finally:
        conn.close()


def run_and_signal(tmp_path, sig: int, flushed: int, pending: int) -> int:
    db = tmp_path / f"sig{sig}.db"
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_CHILD.format(db=str(db), flushed=flushed, pending=pending)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, sig)
    proc.wait(60)
    return count(db)


def test_sigterm_loses_nothing(tmp_path):
    """SIGTERM drains the queue before the process ends, even with a 30 s flush interval."""
    assert run_and_signal(tmp_path, signal.SIGTERM, 1000, 4000) == 5000


def test_sigkill_loses_at_most_what_was_not_yet_written(tmp_path):
    """SIGKILL cannot be caught: what was written survives; at most the unwritten queue is lost."""
    stored_after_kill = run_and_signal(tmp_path, signal.SIGKILL, 1000, 4000)
    assert 1000 <= stored_after_kill <= 5000
