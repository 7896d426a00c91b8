"""instrument(server): one line for whatever server you run (MCPServer, fastmcp FastMCP, mcp 1.x FastMCP).

    python examples/instrument_example.py
"""

from __future__ import annotations

import os

import anyio

from mcp_tracking import compute_metrics, instrument
from mcp_tracking.demo.agents import run_sessions
from mcp_tracking.demo.server import build_server

os.environ.setdefault("MCP_TRACKING_URL", "sqlite:///instrument_example.db")  # its own store, not the demo's
server = build_server("drea")
hook = instrument(server)  # events go to MCP_TRACKING_URL (else ./mcp_tracking.db)

if __name__ == "__main__":
    anyio.run(lambda: run_sessions(server, sessions=12))
    hook.client.close()
    print(compute_metrics(hook.client.sink, mcp_name="drea").to_dict()["task_completion_rate"])
