"""mcp 1.x ``FastMCP`` (``from mcp.server.fastmcp import FastMCP``): it has no middleware API.

The hook wraps the low-level ``tools/call`` request handler (``server._mcp_server.request_handlers``),
which runs after params validation and inside the request context. It is installed by
:func:`install_v1` (or ``instrument(server)``) and re-installed if something replaces the handler
through the SDK's own ``call_tool()`` decorator later: call ``instrument`` again after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_tracking._logging import warn_once
from mcp_tracking.adapters._common import run_call, str_or_none, tool_manager_lookup
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.recorder import CallInfo, Recorder, TrackingOptions
from mcp_tracking.core.results import WireResult, text_of

MARK = "__mcp_tracking_hook__"


def _types() -> Any:
    from mcp import types

    return types


def _error(text: str) -> Any:
    types = _types()
    return types.ServerResult(types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True))


def _access_token() -> Any:
    try:
        from mcp.server.auth.middleware.auth_context import get_access_token

        return get_access_token()
    except Exception:
        return None


class V1Hook:
    """The wrapped ``tools/call`` handler of an mcp 1.x server."""

    def __init__(self, server: Any, lowlevel: Any, original: Any, client: AnalyticsClient,
                 options: TrackingOptions) -> None:
        self.server = server
        self.lowlevel = lowlevel
        self.original = original
        self.client = client
        self.recorder = Recorder(client, options)
        if client.mcp_name is None:
            client.mcp_name = getattr(server, "name", None)

    def _info(self, req: Any, name: str, args: Any) -> CallInfo:
        try:
            rc = self.lowlevel.request_context
        except LookupError:
            rc = None
        session = getattr(rc, "session", None)
        http = getattr(rc, "request", None)
        meta_model = getattr(req.params, "meta", None)
        meta = meta_model.model_dump() if meta_model is not None and hasattr(meta_model, "model_dump") else None
        cp = getattr(session, "client_params", None)
        ci = getattr(cp, "clientInfo", None)
        token = _access_token()
        transport_session = http.headers.get("mcp-session-id") if http is not None else None
        return CallInfo(
            tool_name=name, arguments=args, meta=meta if isinstance(meta, Mapping) else None,
            transport_session=str_or_none(transport_session),
            connection=session if transport_session is None else None,
            auth_subject=str_or_none(getattr(token, "subject", None)),
            auth_client_id=str_or_none(getattr(token, "client_id", None)),
            client_name=str_or_none(getattr(ci, "name", None)),
            client_version=str_or_none(getattr(ci, "version", None)),
            protocol_version=str_or_none(getattr(cp, "protocolVersion", None)),
            transport="streamable-http" if http is not None else "stdio",
            request_id=getattr(rc, "request_id", None), mcp_name=self.client.mcp_name,
        )

    async def __call__(self, req: Any) -> Any:
        name = getattr(req.params, "name", None)
        args = getattr(req.params, "arguments", None) or {}
        if not isinstance(name, str):
            return await self.original(req)  # malformed: the SDK answers it
        handle = None
        try:
            known, schema, names = tool_manager_lookup(self.server, name)
            handle = self.recorder.begin(self._info(req, name, args), known=known, schema=schema, available=names)
        except Exception:
            warn_once("v1-begin", "mcp_tracking: could not track a tools/call; it proceeds untracked", exc_info=True)
        if handle is not None and handle.reject is not None:
            return _error(handle.reject)
        result = await run_call(self.recorder, handle, name, lambda: self.original(req), timeout_answer=_error)
        if handle is not None:
            try:
                root = getattr(result, "root", result)
                if getattr(root, "isError", False):
                    self.recorder.finish(handle, error_type="tool_error", error_message=text_of(root.content))
                else:
                    self.recorder.finish(handle, result=WireResult(getattr(root, "structuredContent", None),
                                                                   getattr(root, "content", None)))
            except Exception:
                self.recorder.finish(handle)
        return result


def install_v1(server: Any, client: AnalyticsClient | None = None, options: TrackingOptions | None = None) -> V1Hook:
    """Wrap the ``tools/call`` handler of an mcp 1.x ``FastMCP`` (or low-level ``Server``); idempotent."""
    lowlevel = getattr(server, "_mcp_server", server)
    types = _types()
    handlers = getattr(lowlevel, "request_handlers", None)
    if not isinstance(handlers, dict) or types.CallToolRequest not in handlers:
        raise TypeError(f"{type(server).__name__} has no tools/call handler to instrument (register a tool first)")
    current = handlers[types.CallToolRequest]
    if isinstance(current, V1Hook):
        return current
    hook = V1Hook(server, lowlevel, current, client if client is not None else AnalyticsClient(),
                  options or TrackingOptions())
    handlers[types.CallToolRequest] = hook
    return hook
