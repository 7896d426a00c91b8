"""``instrument(server)``: one line, whatever the server is.

Detects the server's kind and installs the right hook: mcp 2.x ``MCPServer`` or low-level ``Server``
(``TrackingMiddleware`` in its ``middleware`` list), fastmcp ``FastMCP`` (``add_middleware``), mcp 1.x
``FastMCP`` or low-level ``Server`` (the wrapped ``tools/call`` handler). Idempotent: instrumenting
twice returns the hook already installed.
"""

from __future__ import annotations

from typing import Any

from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.recorder import TrackingOptions


def _module_of(obj: Any) -> str:
    return type(obj).__module__ or ""


def instrument(server: Any, client: AnalyticsClient | None = None, *, options: TrackingOptions | None = None,
               **option_fields: Any) -> Any:
    """Track every tool call of ``server``. Returns the installed middleware or hook.

    Args:
        server: an ``MCPServer`` (mcp 2.x), a ``FastMCP`` from fastmcp, an mcp 1.x ``FastMCP``, or a low-level
            ``Server`` of either SDK.
        client: the :class:`~mcp_tracking.AnalyticsClient`; a default one (``mcp_name`` = the server's name) if omitted.
        options: a :class:`~mcp_tracking.TrackingOptions`, or its fields as keyword arguments.

    Raises:
        TypeError: for anything that is not an MCP server this package can instrument.
    """
    if options is not None and option_fields:
        raise TypeError("pass either options= or option keyword arguments, not both")
    opts = options or TrackingOptions(**option_fields)
    module = _module_of(server)
    name = getattr(server, "name", None)

    def make_client() -> AnalyticsClient:
        return client if client is not None else AnalyticsClient(mcp_name=name if isinstance(name, str) else None)

    if module.startswith("fastmcp") and hasattr(server, "add_middleware"):
        from mcp_tracking.adapters.fastmcp import FastMCPTrackingMiddleware

        for mw in getattr(server, "middleware", []) or []:
            if isinstance(mw, FastMCPTrackingMiddleware):
                return mw
        fmw = FastMCPTrackingMiddleware(make_client(), options=opts)
        server.add_middleware(fmw)
        return fmw
    if module.startswith("mcp.server.mcpserver") or (module.startswith("mcp.server.lowlevel")
                                                      and isinstance(getattr(server, "middleware", None), list)):
        from mcp_tracking.adapters.mcpserver import TrackingMiddleware

        for mw in server.middleware:
            if isinstance(mw, TrackingMiddleware):
                return mw
        tmw = TrackingMiddleware(make_client(), server=server if hasattr(server, "_tool_manager") else None,
                                 options=opts)
        server.middleware.append(tmw)
        return tmw
    if module.startswith("mcp.server.fastmcp") or module.startswith("mcp.server.lowlevel"):
        from mcp_tracking.adapters.mcp_v1 import install_v1

        return install_v1(server, make_client(), opts)
    raise TypeError(
        f"cannot instrument {type(server).__module__}.{type(server).__qualname__}: expected an MCPServer (mcp 2.x), "
        "a fastmcp FastMCP, an mcp 1.x FastMCP or a low-level mcp Server; for a plain function use @track_tool"
    )
