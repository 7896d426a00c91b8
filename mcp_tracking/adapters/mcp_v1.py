"""mcp 1.x ``FastMCP`` (``from mcp.server.fastmcp import FastMCP``): it has no middleware API.

The hook wraps the low-level ``tools/call`` request handler (``server._mcp_server.request_handlers``),
which runs after params validation and inside the request context. A connection's session ends when the
connection closes (its ``ServerSession`` exit stack). It is installed by
:func:`install_v1` (or ``instrument(server)``) and re-installed if something replaces the handler
through the SDK's own ``call_tool()`` decorator later: call ``instrument`` again after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_tracking._logging import warn_limited
from mcp_tracking.adapters._common import (
    alias_target,
    ask_sdk,
    default_client,
    recorder_for,
    run_call,
    sdk_refusal,
    str_or_none,
    with_text,
)
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.recorder import CallInfo, TrackingOptions
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
    """The wrapped ``tools/call`` handler of an mcp 1.x server: the SDK dispatches and validates; the hook
    reads its answer (adding "Did you mean ...?" to ``Unknown tool: x`` and our corrective lines to a refusal
    of the arguments) and ends a connection's session when the connection closes."""

    def __init__(self, server: Any, lowlevel: Any, original: Any, client: AnalyticsClient,
                 options: TrackingOptions) -> None:
        self.server = server
        self.lowlevel = lowlevel
        self.original = original
        self.client = client
        self.recorder = recorder_for(client, options)
        self.mcp_name = getattr(server, "name", None)

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
        connection = session if transport_session is None else None
        return CallInfo(
            tool_name=name, arguments=args, meta=meta if isinstance(meta, Mapping) else None,
            transport_session=str_or_none(transport_session),
            connection=connection,
            auth_subject=str_or_none(getattr(token, "subject", None)),
            auth_client_id=str_or_none(getattr(token, "client_id", None)),
            client_name=str_or_none(getattr(ci, "name", None)),
            client_version=str_or_none(getattr(ci, "version", None)),
            protocol_version=str_or_none(getattr(cp, "protocolVersion", None)),
            transport="streamable-http" if http is not None else "stdio",
            request_id=getattr(rc, "request_id", None), mcp_name=self.client.mcp_name or self.mcp_name,
            on_new_connection=self._watch(connection),
        )

    def _watch(self, session: Any) -> Any:
        """A hook that ends the connection's session when the connection closes: the session's exit stack
        (``ServerSession`` is an async context manager that the SDK leaves when the connection ends)."""
        stack = getattr(session, "_exit_stack", None)
        if stack is None or not hasattr(stack, "callback"):
            return None
        recorder = self.recorder

        def on_new(sid: str) -> None:
            stack.callback(recorder.end_connection, sid)

        return on_new

    async def __call__(self, req: Any) -> Any:
        name = getattr(req.params, "name", None)
        args = getattr(req.params, "arguments", None) or {}
        if not isinstance(name, str):
            return await self.original(req)  # malformed: the SDK answers it
        try:
            manager = getattr(self.server, "_tool_manager", None)
            tool = manager.get_tool(name) if manager is not None else None
            called_as = None
            routed = None
            if tool is None and manager is not None:
                routed = alias_target(self.recorder, name, manager.get_tool)
            if routed is not None:
                # an opt-in alias: the SDK's handler reads the name from the request it is given
                req = req.model_copy(update={"params": req.params.model_copy(update={"name": routed[0]})})
                called_as, (name, tool) = name, routed
            info = self._info(req, name, args)
            info.called_as = called_as
        except Exception:
            warn_limited("v1-begin", "mcp_tracking: could not track a tools/call; it proceeds untracked", exc_info=True)
            return await self.original(req)
        if tool is None:
            return await self._unsure(req, info, manager)
        handle = self.recorder.begin(info, schema=getattr(tool, "parameters", None))
        if handle is not None and handle.reject is not None:
            return _error(handle.reject)
        result = await run_call(self.recorder, handle, name, lambda: self.original(req), timeout_answer=_error)
        return self._finish(handle, name, result) if handle is not None else result

    async def _unsure(self, req: Any, info: CallInfo, manager: Any) -> Any:
        """A name our lookup does not know: the SDK dispatches or answers "Unknown tool" itself."""
        name = info.tool_name

        def says_unknown(result: Any) -> bool:
            root = getattr(result, "root", result)
            return bool(getattr(root, "isError", False)) and text_of(root.content) == f"Unknown tool: {name}"

        return await ask_sdk(self.recorder, info, lambda: self.original(req), says_unknown=says_unknown,
                             add_text=lambda result, text: _with_text(result, text, " "),
                             names=lambda: [t.name for t in manager.list_tools()] if manager is not None else [],
                             finish=lambda handle, result: self._finish(handle, name, result))

    def _finish(self, handle: Any, name: str, result: Any) -> Any:
        try:
            root = getattr(result, "root", result)
            if not getattr(root, "isError", False):
                self.recorder.finish(handle, result=WireResult(getattr(root, "structuredContent", None),
                                                               getattr(root, "content", None)))
                return result
            text = text_of(root.content)
            refused, lines = sdk_refusal(self.recorder, handle, name, text)
            if refused:
                return _with_text(result, lines, "\n\n") if lines else result
            self.recorder.finish(handle, error_type="tool_error", error_message=text)
        except Exception:
            warn_limited("v1-finish", "mcp_tracking: could not read a tool result", exc_info=True)
            self.recorder.finish(handle)
        return result


def _with_text(result: Any, text: str, sep: str) -> Any:
    """The SDK's ``ServerResult(CallToolResult)`` with ``text`` added to its first text part (a copy)."""
    root = getattr(result, "root", result)
    new_root = with_text(root, text, sep)
    return _types().ServerResult(new_root) if root is not result else new_root


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
    hook = V1Hook(server, lowlevel, current, client if client is not None else default_client(),
                  options or TrackingOptions())
    handlers[types.CallToolRequest] = hook
    return hook
