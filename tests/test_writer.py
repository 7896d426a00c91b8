"""The writer process (``mcp_tracking.emit.writer``): the processing and the store off the server's interpreter,
with the guarantees of the thread: nothing lost on an outage, SIGTERM drains, SIGKILL loses at most the
unsent queue, no orphan, fork-safe, a clean stdout, and the thread again if the writer dies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mcp_tracking import AnalyticsClient, SQLiteSink

ROOT = Path(__file__).resolve().parent.parent


def writers_with(marker: str) -> list[int]:
    """Writer processes whose environment holds ``marker`` (each test's own store path): found wherever they
    are, children of this process or orphans."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"mcp_tracking.emit.writer" not in cmdline:
                continue
            if marker.encode() in (entry / "environ").read_bytes():
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie has finished
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def rows(db: Path, sql: str = "SELECT COUNT(*) FROM raw_analytics") -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def wait_for(check, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except sqlite3.OperationalError:  # the writer has created the file, not yet the table
            pass
        time.sleep(0.02)
    return False


def test_the_worker_asks_the_writer_to_confirm_once_a_second_not_every_cycle(tmp_path, monkeypatch):
    """Each cycle hands its events over without waiting for the writer (every wait is a forced switch of the
    server's thread). The writer confirms when a flush asks, when ``MAX_UNCONFIRMED`` events are waiting, or
    ``SYNC_INTERVAL`` after its last answer: the unconfirmed events (what a dying writer could take with it)
    stay bounded, and the counters come back by themselves."""
    from mcp_tracking.emit import emitter as emitter_module

    monkeypatch.setattr(emitter_module, "SYNC_INTERVAL", 3600.0)
    monkeypatch.setattr(emitter_module, "MAX_UNCONFIRMED", 10**9)
    db = tmp_path / "c.db"
    client = AnalyticsClient(f"sqlite:///{db}", flush_interval=0.05, handle_sigterm=False)
    for i in range(50):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert wait_for(lambda: db.exists() and rows(db) == [(50,)])  # written by the writer, with no flush
    time.sleep(0.3)  # several more cycles of the worker
    writer = client.emitter._writer
    assert writer is not None and writer.pending == 50 and client.emitter.stats.written == 0  # not confirmed
    assert client.flush(30)  # a flush waits for the confirmation
    assert writer.pending == 0 and client.emitter.stats.written == 50

    monkeypatch.setattr(emitter_module, "MAX_UNCONFIRMED", 20)  # past the bound: confirmed on the next cycle
    for i in range(30):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert wait_for(lambda: writer.pending == 0 and client.emitter.stats.written == 80)

    monkeypatch.setattr(emitter_module, "MAX_UNCONFIRMED", 10**9)
    monkeypatch.setattr(emitter_module, "SYNC_INTERVAL", 0.2)  # and by time
    for i in range(5):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert wait_for(lambda: writer.pending == 0 and client.emitter.stats.written == 85)
    assert client.close(timeout=30)


def test_a_store_url_is_written_by_a_writer_process(tmp_path):
    """The default for a SQLite URL: a child process of ours writes, the processors run there (redaction),
    the counters come back, and closing ends it."""
    db = tmp_path / "w.db"
    client = AnalyticsClient(f"sqlite:///{db}", handle_sigterm=False)
    for i in range(500):
        client.track("u", "custom_event", {"i": i, "api_key": "sk-live-123456"}, session_id="s")
    assert client.flush(30)
    pid = client.writer_pid
    assert pid is not None and pid != os.getpid()
    assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    stats = client.emitter.stats
    assert (stats.accepted, stats.written, stats.failed_events) == (500, 500, 0)
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT id) FROM raw_analytics") == [(500, 500)]
    assert rows(db, "SELECT DISTINCT json_extract(metadata, '$.api_key') FROM raw_analytics") == [("[REDACTED]",)]
    assert client.close(timeout=30)
    assert gone(pid)


def test_when_the_thread_writes_instead(tmp_path, monkeypatch):
    """``writer="thread"``, a store class of the host's (a subclass: it may hold state of its own), a store whose
    ``write`` was replaced, a processor of the host's (it lives in this process): the worker thread writes. A
    plain store object goes to the writer process like a URL."""
    url = f"sqlite:///{tmp_path / 't.db'}"

    def pid_after_a_write(client: AnalyticsClient) -> int | None:
        client.track("u", "custom_event", {}, session_id="s")
        assert client.flush(30)
        pid = client.writer_pid
        assert client.close(timeout=30)
        return pid

    assert pid_after_a_write(AnalyticsClient(url, writer="thread", handle_sigterm=False)) is None
    assert pid_after_a_write(AnalyticsClient(SQLiteSink(tmp_path / "t.db"), handle_sigterm=False)) is not None
    assert pid_after_a_write(AnalyticsClient(url, processors=[lambda e: e], handle_sigterm=False)) is None

    class Mine(SQLiteSink):
        pass

    assert pid_after_a_write(AnalyticsClient(Mine(tmp_path / "t.db"), handle_sigterm=False)) is None
    patched = SQLiteSink(tmp_path / "t.db")
    patched.write = lambda batch: SQLiteSink.write(patched, batch)  # type: ignore[method-assign]
    assert pid_after_a_write(AnalyticsClient(patched, handle_sigterm=False)) is None
    monkeypatch.setenv("MCP_TRACKING_WRITER", "thread")
    assert pid_after_a_write(AnalyticsClient(url, handle_sigterm=False)) is None
    with pytest.raises(ValueError, match="writer must be one of"):
        AnalyticsClient(url, writer="fork", handle_sigterm=False)


class DownSink(SQLiteSink):
    """A real SQLite store that refuses every write while a marker file exists (an outage another process
    can see), and that a writer process can open: ``writer_spec`` names this class."""

    def __init__(self, path, marker) -> None:
        super().__init__(path)
        self.marker = Path(marker)

    def __repr__(self) -> str:
        return f"DownSink({str(self.path)!r})"

    def writer_spec(self):
        return f"{__name__}:DownSink", {"path": str(self.path), "marker": str(self.marker)}

    def write(self, batch) -> None:
        if self.marker.exists():
            raise ConnectionError("database is down")
        super().write(batch)


def test_an_outage_is_spooled_by_the_writer_and_replayed_in_order(tmp_path):
    """The store is down: the writer process spools what it was handed (the flush still returns: spooled is
    delivered); when the store is back, the spool is replayed first, in order, nothing lost or doubled."""
    db, marker = tmp_path / "down.db", tmp_path / "down"
    marker.touch()
    client = AnalyticsClient(DownSink(db, marker), spool_after=0.2, flush_interval=0.05,
                             spool_dir=tmp_path / "spool", handle_sigterm=False)
    for i in range(300):
        client.track("u", "tool_call_started", {"tool_name": "t", "call_sequence": i + 1}, session_id="s")
    assert client.flush(30)
    assert client.writer_pid is not None
    stats = client.emitter.stats
    assert (stats.spooled, stats.written, stats.failed_events) == (300, 0, 0)
    marker.unlink()
    for i in range(300, 310):
        client.track("u", "tool_call_started", {"tool_name": "t", "call_sequence": i + 1}, session_id="s")
    deadline = time.monotonic() + 30
    while (client.flush(30) and client.emitter.stats.written + client.emitter.stats.replayed < 310
           and time.monotonic() < deadline):
        time.sleep(0.1)  # the writer replays on its next turn; a flush brings its counters back
    stats = client.emitter.stats  # the 10 sent behind the spool queue up behind it (spooled, then replayed)
    assert stats.replayed >= 300 and stats.written + stats.replayed == 310 and stats.failed_events == 0
    seqs = [r[0] for r in rows(db, "SELECT json_extract(metadata, '$.call_sequence') FROM raw_analytics "
                                   "ORDER BY created_at, id")]
    assert seqs == list(range(1, 311))
    assert client.close(timeout=30)


def test_a_writer_that_dies_hands_back_to_the_thread(tmp_path):
    """Kill the writer process: the next hand-over finds it gone and the worker thread writes from then on.
    What the writer had confirmed is stored; nothing after it is lost."""
    db = tmp_path / "k.db"
    client = AnalyticsClient(f"sqlite:///{db}", handle_sigterm=False)
    for i in range(100):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert client.flush(30)
    pid = client.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)
    for i in range(100, 200):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert client.flush(30)
    assert client.writer_pid is None
    assert rows(db) == [(200,)]
    assert client.emitter.stats.failed_events == 0
    assert client.close(timeout=30)


SIGNAL_CHILD = r"""
import sys, time
from mcp_tracking import AnalyticsClient
client = AnalyticsClient("sqlite:///{db}", flush_interval=30, batch_size=100000, max_queue_size=200000)
for i in range(1000):
    client.track("u", "e", {{"i": i}}, session_id="s")
client.flush()
for i in range(1000, 5000):
    client.track("u", "e", {{"i": i}}, session_id="s")
print("ready", client.writer_pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_signals_with_a_writer_process(tmp_path, sig):
    """SIGTERM drains through the writer (all 5,000 stored); SIGKILL loses at most what was still queued in the
    server (the 1,000 flushed are stored). Either way the writer ends with its server: no orphan."""
    db = tmp_path / f"sig{int(sig)}.db"
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_CHILD.format(db=db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    word, pid = proc.stdout.readline().split()
    assert word == "ready" and pid != "None"
    os.kill(proc.pid, sig)
    proc.wait(60)
    assert gone(int(pid)), "the writer outlived its server"
    count = rows(db, "SELECT COUNT(*) FROM raw_analytics WHERE event_name = 'e'")[0][0]
    if sig == signal.SIGTERM:
        assert count == 5000
    else:
        assert 1000 <= count <= 5000
    assert not writers_with(str(db))


FORK_CHILD = r"""
import os, sys
from mcp_tracking import AnalyticsClient
client = AnalyticsClient("sqlite:///{db}", handle_sigterm=False)
for i in range(100):
    client.track("u", "e", {{"who": "parent"}}, session_id="p")
client.flush()
parent_writer = client.writer_pid
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(r)
    for i in range(100):
        client.track("u", "e", {{"who": "child"}}, session_id="c")
    ok = client.flush(30)
    mine = client.writer_pid
    ok = client.close(timeout=30) and ok
    os.write(w, f"{{mine}} {{int(ok)}}".encode())
    os._exit(0)
os.close(w)
child_writer, child_ok = os.read(r, 100).decode().split()
os.waitpid(child, 0)
for i in range(100):
    client.track("u", "e", {{"who": "parent"}}, session_id="p")
ok = client.flush(30)
print(parent_writer, client.writer_pid, child_writer, child_ok, int(ok), flush=True)
print(int(client.close(timeout=30)), flush=True)
"""


def test_fork_gives_the_child_its_own_writer(tmp_path):
    """A forked child (a pre-fork server) writes through a writer of its own; the parent's goes on unharmed
    (the child let go of it without closing it), and both stores' events land."""
    db = tmp_path / "fork.db"
    out = subprocess.run([sys.executable, "-c", FORK_CHILD.format(db=db)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    first, closed = out.stdout.splitlines()
    parent_before, parent_after, child_writer, child_ok, ok = first.split()
    assert parent_before == parent_after != "None" and child_writer not in ("None", parent_before)
    assert (child_ok, ok, closed) == ("1", "1", "1")
    assert rows(db, "SELECT json_extract(metadata, '$.who'), COUNT(*) FROM raw_analytics WHERE event_name = 'e' "
                    "GROUP BY 1 ORDER BY 1") \
        == [("child", 100), ("parent", 200)]
    assert gone(int(parent_before)) and gone(int(child_writer))


def test_a_stdio_server_keeps_its_stdout_and_its_writer_ends_with_it(tmp_path):
    """A tracked stdio server (the example) writes through a writer process: every line on its stdout is
    JSON-RPC, the events are stored, and when the client closes the server's stdin both processes end."""
    db = tmp_path / "stdio.db"
    env = {**os.environ, "MCP_TRACKING_URL": f"sqlite:///{db}"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "mcpserver_example.py"), "stdio"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    for i in range(20):
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                     "params": {"name": "list_models", "arguments": {}, "_meta": meta}}) + "\n")
    proc.stdin.flush()
    for _ in range(20):
        assert json.loads(proc.stdout.readline())["jsonrpc"] == "2.0"
    running = writers_with(str(db))
    deadline = time.monotonic() + 15
    while not running and time.monotonic() < deadline:  # started by the worker, on its first batch
        time.sleep(0.1)
        running = writers_with(str(db))
    assert len(running) == 1
    proc.stdin.close()
    assert all(json.loads(x)["jsonrpc"] == "2.0" for x in proc.stdout.read().splitlines() if x.strip())
    proc.wait(30)
    assert gone(running[0])
    assert rows(db, "SELECT COUNT(*) FROM raw_analytics WHERE event_name = 'tool_call_started'") == [(20,)]


UVICORN_APP = textwrap.dedent("""
    from mcp.server.mcpserver import MCPServer
    from mcp_tracking import instrument

    mcp = MCPServer("workers")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        return a + b

    instrument(mcp)
    app = mcp.streamable_http_app()
""")


@pytest.mark.slow
@pytest.mark.anyio
async def test_uvicorn_workers_each_write_through_their_own_writer(tmp_path):
    """``uvicorn --workers 2``: each worker process has its own writer; on shutdown (SIGTERM to uvicorn) every
    call is stored and no writer is left."""
    from helpers import free_port, server_process
    from mcp import Client

    (tmp_path / "workers_app.py").write_text(UVICORN_APP)
    db = tmp_path / "workers.db"
    port = free_port()
    env = {"MCP_TRACKING_URL": f"sqlite:///{db}", "PYTHONPATH": str(tmp_path)}
    with server_process(["-m", "uvicorn", "workers_app:app", "--workers", "2", "--host", "127.0.0.1", "--port",
                         str(port), "--log-level", "warning"], port=port, env=env) as proc:
        for _ in range(8):  # new connections spread over the workers
            async with Client(f"http://127.0.0.1:{port}/mcp") as c:  # 2026-07-28: no session to pin
                for i in range(5):
                    assert (await c.call_tool("add", {"a": i, "b": 1})).is_error is False
        deadline = time.monotonic() + 15
        while len(writers_with(str(db))) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        running = writers_with(str(db))
        parents = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in running}
        assert 1 <= len(running) <= 2 and len(parents) == len(running) and proc.pid not in parents  # per worker
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert all(gone(pid) for pid in running)
    assert not writers_with(str(db))
    assert rows(db, "SELECT COUNT(*) FROM raw_analytics WHERE event_name = 'tool_call_completed'") == [(40,)]


def test_a_writer_that_cannot_start_leaves_the_thread_writing(tmp_path, monkeypatch):
    """No interpreter to run the writer with (an embedded Python whose ``sys.executable`` is not one): the
    first hand-over fails, the worker thread writes from then on (no second try per batch), nothing is lost."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    db = tmp_path / "nostart.db"
    client = AnalyticsClient(f"sqlite:///{db}", handle_sigterm=False)
    for i in range(300):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert client.flush(30)
    assert client.writer_pid is None
    for i in range(300, 400):
        client.track("u", "custom_event", {"i": i}, session_id="s")
    assert client.flush(30) and client.emitter._writer is None  # given up for good, not retried per batch
    assert rows(db) == [(400,)] and client.emitter.stats.failed_events == 0
    assert client.close(timeout=30)
