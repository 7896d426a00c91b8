"""``instrument(server)``: one line, whatever the server is.

Detects the server's kind (``isinstance``: subclasses too) and installs the right hook: mcp 2.x
``MCPServer`` or low-level ``Server`` (``TrackingMiddleware`` in its ``middleware`` list), fastmcp
``FastMCP`` (``add_middleware``), mcp 1.x ``FastMCP`` or low-level ``Server`` (the wrapped ``tools/call``
handler). Idempotent: instrumenting
twice returns the hook already installed.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp_tracking.adapters._common import default_client
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.recorder import TrackingOptions, current_call
from mcp_tracking.events import OUTCOME_TOOL_NAME


def outcome_tool(client: AnalyticsClient) -> Any:
    """The opt-in tool an agent calls to say whether it accomplished its task (emits ``task_completed``)."""

    def report_task_outcome(success: bool, summary: str = "") -> str:
        """Report whether you accomplished the user's task. Call it once, when you are done.

        Args:
            success: true if the task was accomplished, false if you are giving up.
            summary: one sentence on what was achieved or what went wrong.
        """
        handle = current_call.get()
        if handle is not None:
            session_id, user_id, mcp_name = handle.state.session_id, handle.user_id, handle.mcp_name
        else:
            session_id, user_id, mcp_name = client.get_current_session_id(), None, None
        client.track_task_completed(user_id, session_id, success=bool(success),
                                    completion_reason="agent_reported_success" if success else "agent_gave_up",
                                    mcp_name=mcp_name, source="agent_tool", summary=str(summary)[:500])
        return "Outcome recorded. Thank you."

    return report_task_outcome


def _add_tool(server: Any, fn: Any) -> None:
    if _kind(server) == "fastmcp":
        server.tool(fn)
    elif hasattr(server, "add_tool"):
        server.add_tool(fn)
    else:
        raise TypeError(f"{type(server).__name__} has no add_tool(); cannot add {OUTCOME_TOOL_NAME}")


#: (kind, module, class): the server classes this package instruments; subclasses included (``isinstance``)
_SERVER_CLASSES = (
    ("fastmcp", "fastmcp.server.server", "FastMCP"),
    ("mcpserver", "mcp.server.mcpserver.server", "MCPServer"),
    ("v1", "mcp.server.fastmcp.server", "FastMCP"),
    ("lowlevel", "mcp.server.lowlevel.server", "Server"),
)


def _kind(server: Any) -> str | None:
    """Which framework ``server`` belongs to, by ``isinstance`` against the classes of the frameworks already
    imported (a server object's own framework always is: nothing is imported here)."""
    for kind, module_name, class_name in _SERVER_CLASSES:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(server, cls):
            if kind == "lowlevel":  # mcp 2.x low-level servers have a middleware list; 1.x ones do not
                return "lowlevel2" if isinstance(getattr(server, "middleware", None), list) else "v1"
            return kind
    return None


def instrument(server: Any, client: AnalyticsClient | None = None, *, options: TrackingOptions | None = None,
               add_outcome_tool: bool = False, release: str | None = None, **option_fields: Any) -> Any:
    """Track every tool call of ``server``. Returns the installed middleware or hook.

    Args:
        server: an ``MCPServer`` (mcp 2.x), a ``FastMCP`` from fastmcp, an mcp 1.x ``FastMCP``, or a low-level
            ``Server`` of either SDK.
        client: the :class:`~mcp_tracking.AnalyticsClient`; the process's shared default one if omitted (events
            carry the server's name as ``mcp_name`` unless the client sets one).
        options: a :class:`~mcp_tracking.TrackingOptions`, or its fields as keyword arguments.
        add_outcome_tool: also register ``report_task_outcome(success, summary)``, a tool the agent calls
            to report its outcome (``task_completed``). Off by default: the tool list is never changed
            unless you ask.
        release: the server's version or release tag, stamped on every ``session_start`` (sets the client's;
            default ``MCP_TRACKING_RELEASE``), for ``mcp-tracking compare --before-release/--after-release``.

    Raises:
        TypeError: for anything that is not an MCP server this package can instrument.
    """
    if options is not None and option_fields:
        raise TypeError("pass either options= or option keyword arguments, not both")
    opts = options or TrackingOptions(**option_fields)
    hook = _install(server, client, opts)
    if release is not None:
        hook.client.tracker.release = str(release)
    if add_outcome_tool and not getattr(hook, "outcome_tool_added", False):
        _add_tool(server, outcome_tool(hook.client))
        hook.outcome_tool_added = True
    return hook


def _install(server: Any, client: AnalyticsClient | None, opts: TrackingOptions) -> Any:
    kind = _kind(server)

    def make_client() -> AnalyticsClient:
        return client if client is not None else default_client()

    if kind == "fastmcp":
        from mcp_tracking.adapters.fastmcp import FastMCPTrackingMiddleware

        for mw in getattr(server, "middleware", []) or []:
            if isinstance(mw, FastMCPTrackingMiddleware):
                return mw
        fmw = FastMCPTrackingMiddleware(make_client(), server=server, options=opts)
        server.add_middleware(fmw)
        return fmw
    if kind in ("mcpserver", "lowlevel2"):
        from mcp_tracking.adapters.mcpserver import TrackingMiddleware

        for mw in server.middleware:
            if isinstance(mw, TrackingMiddleware):
                return mw
        tmw = TrackingMiddleware(make_client(), server=server if hasattr(server, "_tool_manager") else None,
                                 options=opts)
        server.middleware.append(tmw)
        return tmw
    if kind == "v1":
        from mcp_tracking.adapters.mcp_v1 import install_v1

        return install_v1(server, make_client(), opts)
    raise TypeError(
        f"cannot instrument {type(server).__module__}.{type(server).__qualname__}: expected an MCPServer (mcp 2.x), "
        "a fastmcp FastMCP, an mcp 1.x FastMCP or a low-level mcp Server; for a plain function use @track_tool"
    )
