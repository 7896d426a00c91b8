"""fastmcp: ``FastMCPTrackingMiddleware`` for ``FastMCP.add_middleware(...)`` (the supported seam).

    server = FastMCP("drea")
    server.add_middleware(FastMCPTrackingMiddleware(client))

fastmcp reports failures as exceptions from ``call_next`` (``NotFoundError``, ``ValidationError``,
``ToolError``); they are recorded and re-raised (the first two with our corrective text added to their
message), so fastmcp answers the agent as it always does.
"""

from __future__ import annotations

import contextvars
from typing import Any

from mcp_tracking._logging import warn_limited
from mcp_tracking.adapters._common import (
    append_to_exception,
    default_client,
    error_type_of,
    pydantic_errors,
    recorder_for,
    run_call,
    since_now,
    str_or_none,
    suggestion,
    with_text,
)
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.recorder import CallInfo, TrackingOptions
from mcp_tracking.core.results import WireResult, text_of

try:
    from fastmcp.exceptions import NotFoundError
    from fastmcp.exceptions import ValidationError as FastMCPValidationError
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


#: set by :class:`UnknownToolAnswers` around a client's ``tools/call``: the middleware puts the "Did you mean"
#: sentence for an unknown name here, for the wire answer
_suggestion: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("mcp_tracking_suggestion",
                                                                               default=None)


class UnknownToolAnswers:
    """An mcp SDK ``ServerMiddleware`` on a fastmcp server's low-level server.

    fastmcp answers a client's call to an unknown tool with a fixed ``Unknown tool: 'x'`` result, whatever
    the ``NotFoundError`` said. This adds the "Did you mean ...?" sentence the tracking middleware found to
    that wire answer, so the agent gets it while ``server.call_tool()`` keeps raising fastmcp's own
    ``NotFoundError`` untouched."""

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        holder: list[str] = []
        token = _suggestion.set(holder)
        try:
            result = await call_next(ctx)
        finally:
            _suggestion.reset(token)
        if holder:
            try:
                return with_text(result, holder[0], " ")
            except Exception:
                warn_limited("fastmcp-wire", "mcp_tracking: could not add the suggestion to the answer", exc_info=True)
        return result


def _install_wire_answers(server: Any) -> None:
    """Put :class:`UnknownToolAnswers` on the server's low-level middleware list, once."""
    low = getattr(server, "_mcp_server", None)
    chain = getattr(low, "middleware", None)
    if isinstance(chain, list) and not any(isinstance(m, UnknownToolAnswers) for m in chain):
        chain.append(UnknownToolAnswers())


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
    """Tracks every tool call on a fastmcp server: identity, retries, validation, timing.

    fastmcp decides dispatch (providers, transforms, mounts, hashed app names, visibility, auth) and
    validation; the middleware observes its answer: a ``NotFoundError`` becomes a ``hallucinated_tool_call``
    and its message gains "Did you mean ...?"; a ``ValidationError`` ends the call at its
    ``schema_validation_error`` and its message gains our corrective lines. Both are re-raised as they are
    (type, attributes, traceback), so fastmcp answers the agent as it always does.

    Args:
        client: the :class:`~mcp_tracking.AnalyticsClient` (the process's shared default one if omitted).
        server: the ``FastMCP`` server (``instrument()`` passes it). fastmcp answers an unknown tool with a
            fixed text; with the server known up front, the "Did you mean" sentence is added to that answer
            from the first call on (else from the server's second request on).
        options: a :class:`~mcp_tracking.TrackingOptions`, or its fields as keyword arguments.

    Example:
        server = FastMCP("drea")
        server.add_middleware(FastMCPTrackingMiddleware(AnalyticsClient(mcp_name="drea"), server=server))
    """

    def __init__(self, client: AnalyticsClient | None = None, *, server: Any = None,
                 options: TrackingOptions | None = None, **option_fields: Any) -> None:
        if options is not None and option_fields:
            raise TypeError("pass either options= or option keyword arguments, not both")
        self.client = client if client is not None else default_client()
        self.recorder = recorder_for(self.client, options or TrackingOptions(**option_fields))
        if server is not None:
            _install_wire_answers(server)

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
        if not isinstance(name, str):
            return await call_next(context)
        try:
            server = fc.fastmcp if fc is not None else None
            _install_wire_answers(server)
            with _quiet():
                tool = await server.get_tool(name) if server is not None else None
                target = self.recorder.options.aliases.get(name) if tool is None else None
                aliased = await server.get_tool(target) if target is not None and server is not None else None
            called_as = None
            if aliased is not None and target is not None:  # an opt-in alias: fastmcp dispatches the tool it names
                context = context.copy(message=message.model_copy(update={"name": target}))
                called_as, name, tool = name, target, aliased
            info = self._info(fc, server, name, args)
            info.called_as = called_as
        except Exception:
            warn_limited("fastmcp-begin", "mcp_tracking: could not track a tool call; it proceeds untracked",
                      exc_info=True)
            return await call_next(context)
        if tool is None:  # fastmcp resolves it (hashed app names, late-bound tools) or says NotFoundError
            return await self._unsure(context, call_next, info, server)
        handle = self.recorder.begin(info, schema=getattr(tool, "parameters", None))
        if handle is not None and handle.reject is not None:
            raise FastMCPValidationError(handle.reject)  # enforce: fastmcp's own error for bad arguments
        return await self._run(context, call_next, handle, name)

    async def _run(self, context: Any, call_next: Any, handle: Any, name: str) -> Any:
        async def call() -> Any:
            try:
                return await call_next(context)
            except FastMCPValidationError as exc:  # fastmcp refused the arguments
                lines = self.recorder.refused(handle, pydantic_errors(exc))
                if lines:
                    append_to_exception(exc, lines, "\n\n")
                raise

        result = await run_call(self.recorder, handle, name, call,
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

    async def _unsure(self, context: Any, call_next: Any, info: CallInfo, server: Any) -> Any:
        """A name ``get_tool`` does not know: fastmcp dispatches it (hashed names, providers) or raises
        ``NotFoundError``; only then is it a hallucination."""
        since = since_now()
        try:
            result = await call_next(context)
        except NotFoundError:
            try:
                with _quiet():
                    names = [t.name for t in await server.list_tools()] if server is not None else []
            except Exception:
                names = []
            text = suggestion(self.recorder, info, names)
            holder = _suggestion.get()
            if text and holder is not None:
                holder.append(text)  # for fastmcp's wire answer; the exception itself stays fastmcp's
            raise
        except BaseException as exc:
            self.recorder.late(info, since, error_type=_error_type(exc), exception=exc)
            raise
        handle = self.recorder.late(info, since)
        if handle is not None:
            if getattr(result, "is_error", False):
                self.recorder.finish(handle, error_type="tool_error", error_message=text_of(result.content))
            else:
                self.recorder.finish(handle, result=WireResult(getattr(result, "structured_content", None),
                                                               getattr(result, "content", None)))
        return result
