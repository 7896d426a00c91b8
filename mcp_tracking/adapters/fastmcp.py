"""fastmcp: ``FastMCPTrackingMiddleware`` for ``FastMCP.add_middleware(...)`` (the supported seam).

    server = FastMCP("drea")
    server.add_middleware(FastMCPTrackingMiddleware(client))

fastmcp reports failures as exceptions from ``call_next`` (``NotFoundError``, ``ValidationError``,
``ToolError``); they are recorded and re-raised untouched, so fastmcp answers the agent as it always
does. Answers this middleware gives itself (unknown tool, invalid arguments) are ``ToolResult`` error
results, which fastmcp serialises per protocol era.
"""

from __future__ import annotations

from typing import Any

from mcp_tracking._logging import warn_once
from mcp_tracking.adapters._common import error_type_of, run_call, str_or_none
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.recorder import CallInfo, Recorder, TrackingOptions
from mcp_tracking.core.results import WireResult, text_of

try:
    from fastmcp.server.middleware import Middleware
    from fastmcp.tools.base import ToolResult
except ImportError as exc:  # pragma: no cover - optional extra
    raise ImportError("FastMCPTrackingMiddleware needs fastmcp: pip install 'mcp-tracking[fastmcp]'") from exc

try:
    from fastmcp.server.dependencies import get_access_token as _fastmcp_token
except ImportError:  # pragma: no cover
    _fastmcp_token = None  # type: ignore[assignment]

try:  # our manifest lookups must not open (or rename) fastmcp's spans: the request's span is the call's
    from fastmcp.telemetry import suppress_fastmcp_telemetry as _quiet
except ImportError:  # pragma: no cover - older fastmcp
    from contextlib import nullcontext as _quiet  # type: ignore[assignment]


def _error_type(exc: BaseException) -> str:
    """fastmcp reports failures as exceptions: unknown tool, invalid arguments, the tool's own error."""
    name = type(exc).__name__
    if name == "NotFoundError":
        return "unknown_tool"
    if name == "ValidationError":
        return "validation_error"
    kind = error_type_of(exc)
    return "tool_error" if name == "ToolError" and kind == "execution_error" else kind


class FastMCPTrackingMiddleware(Middleware):  # type: ignore[misc]
    """Tracks every tool call on a fastmcp server: identity, manifest, retries, validation, timing.

    Args:
        client: the :class:`~mcp_tracking.AnalyticsClient` (a default one on the embedded SQLite store if omitted).
        options: a :class:`~mcp_tracking.TrackingOptions`, or its fields as keyword arguments.

    Example:
        server = FastMCP("drea")
        server.add_middleware(FastMCPTrackingMiddleware(AnalyticsClient(mcp_name="drea")))
    """

    def __init__(self, client: AnalyticsClient | None = None, *, options: TrackingOptions | None = None,
                 **option_fields: Any) -> None:
        if options is not None and option_fields:
            raise TypeError("pass either options= or option keyword arguments, not both")
        self.client = client if client is not None else AnalyticsClient()
        self.recorder = Recorder(self.client, options or TrackingOptions(**option_fields))

    def _info(self, fc: Any, server: Any, name: str, args: Any) -> CallInfo:
        mcp_name = self.client.mcp_name or getattr(server, "name", None)
        rc = getattr(fc, "request_context", None) if fc is not None else None
        srctx = getattr(rc, "_srctx", None)
        if srctx is not None:
            from mcp_tracking.adapters.mcpserver import call_info

            info = call_info(srctx, name, args, mcp_name=mcp_name, recorder=self.recorder)
        else:  # a programmatic server.call_tool(), or an older fastmcp
            info = CallInfo(tool_name=name, arguments=args, mcp_name=mcp_name,
                            meta=getattr(rc, "meta", None) if rc is not None else None)
            version = getattr(rc, "protocol_version", None)
            if rc is not None and version != "2026-07-28":
                info.transport_session = str_or_none(getattr(fc, "session_id", None))
        if _fastmcp_token is not None:
            try:
                token = _fastmcp_token()
            except Exception:
                token = None
            if token is not None:
                claims = getattr(token, "claims", None) or {}
                info.auth_subject = str_or_none(getattr(token, "subject", None) or claims.get("sub"))
                info.auth_client_id = str_or_none(getattr(token, "client_id", None))
        if info.transport is None and fc is not None:
            try:
                info.transport = fc.transport or ("in-process" if rc is not None else "direct-call")
            except Exception:
                pass
        return info

    async def on_call_tool(self, context: Any, call_next: Any) -> Any:
        message = context.message
        name = getattr(message, "name", None)
        args = getattr(message, "arguments", None) or {}
        fc = context.fastmcp_context
        handle = None
        if isinstance(name, str):
            try:
                server = fc.fastmcp if fc is not None else None
                names: list[str] = []
                with _quiet():
                    tool = await server.get_tool(name) if server is not None else None
                    known = tool is not None or server is None
                    if not known and server is not None:
                        names = [t.name for t in await server.list_tools()]
                handle = self.recorder.begin(
                    self._info(fc, server, name, args), known=known,
                    schema=getattr(tool, "parameters", None), available=lambda: names)
            except Exception:
                warn_once("fastmcp-begin", "mcp_tracking: could not track a tool call; it proceeds untracked",
                          exc_info=True)
        if handle is not None and handle.reject is not None:
            return ToolResult(content=handle.reject, is_error=True)
        result = await run_call(self.recorder, handle, str(name), lambda: call_next(context),
                                timeout_answer=lambda text: ToolResult(content=text, is_error=True),
                                classify=_error_type)
        if handle is not None:
            try:
                if getattr(result, "is_error", False):
                    self.recorder.finish(handle, error_type="tool_error", error_message=text_of(result.content))
                else:
                    self.recorder.finish(handle, result=WireResult(getattr(result, "structured_content", None),
                                                                   getattr(result, "content", None)))
            except Exception:
                self.recorder.finish(handle)
        return result
