"""A pytest plugin that switches tracking on for every server a framework's own test suite creates.

Loaded with ``-p tracking_plugin`` (``compat/`` on ``PYTHONPATH``) by ``compat/run_peer_suites.sh``.
``MCP_TRACKING_COMPAT_MODE`` picks the options: ``default`` (what ``instrument(server)`` does),
``observe`` or ``enforce``. Every ``MCPServer``, fastmcp ``FastMCP`` and mcp 1.x ``FastMCP`` gets
``instrument()`` at the end of its ``__init__``; the events go to a real SQLite store in a temporary
directory, through one shared client, as in a server process.
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Any

MODE = os.environ.get("MCP_TRACKING_COMPAT_MODE", "default")
_client: Any = None


def _shared_client() -> Any:
    global _client
    if _client is None:
        from mcp_tracking import AnalyticsClient

        path = os.path.join(tempfile.mkdtemp(prefix="mcp-tracking-compat-"), "events.db")
        _client = AnalyticsClient(f"sqlite:///{path}", handle_sigterm=False)
    return _client


def _patch(cls: Any) -> None:
    original = cls.__init__
    if getattr(original, "__mcp_tracking_patched__", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if type(self).__init__ is not __init__ and getattr(self, "__mcp_tracking_done__", False):
            return
        from mcp_tracking import instrument

        options = {} if MODE == "default" else {"validation": MODE}
        try:
            instrument(self, _shared_client(), **options)
            self.__mcp_tracking_done__ = True
        except TypeError:
            pass  # a server with nothing to instrument yet (mcp 1.x low-level without a tools/call handler)

    __init__.__mcp_tracking_patched__ = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def pytest_configure(config: Any) -> None:
    try:
        from mcp.server.mcpserver import MCPServer

        _patch(MCPServer)
    except ImportError:
        pass
    try:
        from mcp.server.fastmcp import FastMCP as V1FastMCP

        _patch(V1FastMCP)
    except ImportError:
        pass
    try:
        from fastmcp import FastMCP

        _patch(FastMCP)
    except ImportError:
        pass


def pytest_unconfigure(config: Any) -> None:
    if _client is not None:
        _client.close(timeout=10)
