"""Helpers for end-to-end tests: free ports, server subprocesses, event filtering."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(args: list[str], *, port: int, env: dict[str, str] | None = None,
                   timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``python args...`` and wait until it listens on 127.0.0.1:port; stop it afterwards."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def by_session(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        out.setdefault(e["session_id"], []).append(e)
    return out


def lifecycle(events: list[dict]) -> list[tuple]:
    """(event_name, call_sequence) pairs: the shape of a session."""
    return [(e["event_name"], e["metadata"].get("call_sequence")) for e in events]


@contextlib.contextmanager
def writing_whole_sessions(make_sink: Callable[[], Any], writers: int = 1) -> Iterator[None]:
    """While inside: ``writers`` threads, each with its own sink from ``make_sink()``, keep writing whole
    sessions (session_start, one tool call, session_completed with success), each in one write."""
    from mcp_tracking.events import EventRecord

    stop = threading.Event()

    def writer(k: int) -> None:
        sink = make_sink()
        i = 0
        while not stop.is_set():
            sid = f"w{k}-s{i}"
            sink.write([EventRecord("session_start", "u", sid, "m", {}),
                        EventRecord("tool_call_started", "u", sid, "m", {"tool_name": "t"}),
                        EventRecord("session_completed", "u", sid, "m", {"success": True})])
            i += 1
        sink.close()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()


def assert_whole_sessions_agree(totals: Any) -> None:
    """Every counted session (of ``writing_whole_sessions``) is started, completed, successful and one step:
    true only when every count comes from the same rows."""
    assert totals.sessions == totals.started_sessions == totals.completed_sessions == totals.successful_sessions \
        == totals.steps_in_successful == totals.tool_calls, totals
