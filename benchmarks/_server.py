"""The benchmark's server process: a trivial ``add`` tool on MCPServer, plain or tracked.

    python benchmarks/_server.py plain|tracked stdio
    python benchmarks/_server.py plain|tracked http PORT
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

from mcp_tracking import AnalyticsClient, instrument

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add


def main() -> None:
    kind, transport = sys.argv[1], sys.argv[2]
    server = MCPServer(kind, log_level="WARNING")
    server.add_tool(add)
    if kind == "tracked":
        instrument(server, AnalyticsClient(os.environ["BENCH_DB"]))
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))


if __name__ == "__main__":
    main()
