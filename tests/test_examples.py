"""Every example runs as documented."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT

EXAMPLES = {
    "mcpserver_example.py": "task completion rate: 1.0",
    "decorator_example.py": "recovery rate: 1.0",
    "instrument_example.py": "'total_sessions': 12",
    "fastmcp_example.py": "hallucination rate: 1.0",
    "otel_example.py": "span 'tools/call list_models' session=otel-demo seq=3 error=None events=['wrong_tool_error']",
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    """Run the example with its events in a temporary store and check what it prints."""
    if name.startswith("fastmcp"):
        pytest.importorskip("fastmcp")
    if name.startswith("otel"):
        pytest.importorskip("opentelemetry.sdk")
    env = {**os.environ, "MCP_TRACKING_URL": f"sqlite:///{tmp_path}/ex.db"}
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True,
                              timeout=100, cwd=tmp_path, env=env)
    except subprocess.TimeoutExpired as exc:  # say where it was stuck
        pytest.fail(f"{name} did not finish in 100 s; stderr: {(exc.stderr or b'')[-3000:]!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXAMPLES[name] in proc.stdout


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_keep_to_their_own_store(name, tmp_path):
    """Run where the demo already wrote ./mcp_tracking.db, without MCP_TRACKING_URL: the example prints its own
    figures and leaves the demo's store as it was."""
    if name.startswith("fastmcp"):
        pytest.importorskip("fastmcp")
    if name.startswith("otel"):
        pytest.importorskip("opentelemetry.sdk")
    import sqlite3

    from mcp_tracking import AnalyticsClient

    demo = AnalyticsClient(f"sqlite:///{tmp_path}/mcp_tracking.db", handle_sigterm=False)
    for i in range(5):
        demo.track("someone", "session_start", {}, session_id=f"demo-{i}")
    demo.close()
    count = sqlite3.connect(tmp_path / "mcp_tracking.db").execute("SELECT COUNT(*) FROM raw_analytics").fetchone()
    env = {k: v for k, v in os.environ.items() if k != "MCP_TRACKING_URL"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True,
                          timeout=100, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXAMPLES[name] in proc.stdout
    after = sqlite3.connect(tmp_path / "mcp_tracking.db").execute("SELECT COUNT(*) FROM raw_analytics").fetchone()
    assert after == count
