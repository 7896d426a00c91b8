"""mcp 2.x: ``TrackingMiddleware`` for ``MCPServer`` (the official SDK's ``ServerMiddleware``).

    mcp = MCPServer("drea")
    mcp.middleware.append(TrackingMiddleware(client, server=mcp))

The middleware sees every ``tools/call`` before the SDK validates or looks it up; ``call_next``
returns the serialised wire dict, which it reads (and, for an unknown name or refused arguments, adds
our corrective text to). The one answer it gives itself (enforce mode) is serialised exactly as the SDK
serialises its own, in both protocol eras.
"""

from __future__ import annotations

import dataclasses
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
from mcp_tracking.core.recorder import CallInfo, Recorder, TrackingOptions
from mcp_tracking.core.results import WireResult, text_of

try:  # mcp >= 2
    from mcp_types import SERVER_INFO_META_KEY, CallToolResult, TextContent
    from mcp_types.methods import serialize_server_result
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS
except ImportError as exc:  # pragma: no cover - mcp 1.x environment
    raise ImportError("TrackingMiddleware needs mcp>=2 (MCPServer). For mcp 1.x FastMCP use "
                      "mcp_tracking.instrument(server) or mcp_tracking.adapters.mcp_v1.") from exc

try:
    from mcp.server.auth.middleware.auth_context import get_access_token
except ImportError:  # pragma: no cover
    def get_access_token() -> Any:  # type: ignore[misc]
        return None


def error_result(ctx: Any, server: Any, text: str) -> dict[str, Any]:
    """A ``tools/call`` error result, serialised the way the SDK serialises its own for this protocol era."""
    dumped = CallToolResult(content=[TextContent(type="text", text=text)], is_error=True).model_dump(
        by_alias=True, mode="json", exclude_none=True)
    version = ctx.protocol_version
    try:
        wire = serialize_server_result("tools/call", version, dumped)
    except Exception:
        wire = {"content": dumped["content"], "isError": True}
    if version in MODERN_PROTOCOL_VERSIONS and server is not None:
        wire["_meta"] = {SERVER_INFO_META_KEY: {"name": server.name, "version": server.version}}
    return wire


def call_info(ctx: Any, name: str, args: Any, *, mcp_name: str | None, recorder: Recorder) -> CallInfo:
    """The facts of a ``tools/call`` from an SDK 2.x ``ServerRequestContext`` (also used under fastmcp).

    What stays the same on one client connection (client name and version, transport, the hook that ends the
    session when the connection closes) is worked out on its first call and kept in ``recorder.peers``."""
    session = ctx.session
    connection = getattr(session, "_connection", None)
    params = ctx.params
    meta = params.get("_meta") if type(params) is dict else None
    if type(meta) is not dict:
        meta = None
    request = ctx.request
    transport_session = getattr(connection, "session_id", None)
    if transport_session is None and request is not None:
        transport_session = request.headers.get("mcp-session-id")
    outbound = getattr(session, "_request_outbound", None)
    transport_ctx = getattr(getattr(outbound, "_inner", outbound), "transport", None)
    kind = getattr(transport_ctx, "kind", None)
    version = ctx.protocol_version
    modern = version in MODERN_PROTOCOL_VERSIONS
    conn_key: Any = None
    if not modern:
        conn_key = connection  # handshake era: one Connection per client connection
    elif kind == "direct":
        conn_key = transport_ctx  # 2026-07-28 in-process: one transport context per client dispatcher
    elif connection is not None and getattr(connection, "has_standalone_channel", False):
        conn_key = connection.outbound  # 2026-07-28 over a duplex pipe (stdio): one outbound per pipe
    elif request is not None and getattr(request, "client", None) is not None:
        # 2026-07-28 over HTTP has no session and no connection object: the TCP connection is the
        # only connection there is (keep-alive). Never merges two clients; a client that opens several
        # TCP connections is split unless it sends a session key in _meta or authenticates.
        peer = request.client
        conn_key = f"tcp:{peer.host}:{peer.port}"
    cacheable = conn_key is not None and type(conn_key) is not str
    facts = recorder.peers.get(conn_key) if cacheable else None
    if facts is None:
        facts = _peer_facts(connection, meta, request, kind, modern, transport_session, recorder)
        if cacheable and facts[0] is not None:
            facts = recorder.peers.setdefault(conn_key, facts)
    token = get_access_token()
    if token is not None:
        subject = str_or_none(getattr(token, "subject", None))
        client_id = str_or_none(getattr(token, "client_id", None))
    else:
        subject = client_id = None
    return CallInfo(name, args, meta, None, None, str_or_none(transport_session), conn_key, subject, client_id,
                    facts[0], facts[1], version, facts[2], ctx.request_id, mcp_name, facts[3], True)


def _peer_facts(connection: Any, meta: dict[str, Any] | None, request: Any, kind: Any, modern: bool,
                transport_session: Any, recorder: Recorder) -> tuple[str | None, str | None, str | None, Any]:
    """(client name, client version, transport, hook for a new connection's session): a connection's facts."""
    client_params = getattr(connection, "client_params", None)
    client_info = getattr(client_params, "client_info", None)
    if client_info is not None:
        client_name, client_version = client_info.name, client_info.version
    elif meta is not None and type(raw := meta.get("io.modelcontextprotocol/clientInfo")) is dict:
        client_name, client_version = raw.get("name"), raw.get("version")
    else:
        client_name = client_version = None
    if request is not None:
        transport = "streamable-http"
    elif kind == "direct":
        transport = "in-process"
    else:
        transport = "stdio" if kind == "jsonrpc" else kind
    on_new = None
    if not modern and connection is not None and transport_session is None:
        stack = getattr(connection, "exit_stack", None)
        if stack is not None:
            def on_new(sid: str, _stack: Any = stack) -> None:
                _stack.callback(recorder.end_connection, sid)
    return str_or_none(client_name), str_or_none(client_version), transport, on_new


class TrackingMiddleware:
    """Tracks every ``tools/call`` on an ``MCPServer``: identity, retries, validation, timing.

    The SDK decides dispatch and validation; the middleware observes its answer, classifies it and adds to
    it: a name the SDK answers ``Unknown tool: x`` becomes a ``hallucinated_tool_call`` and the answer gains
    "Did you mean ...?"; arguments the SDK refuses end the call at its ``schema_validation_error`` and the
    answer gains our corrective lines. In ``validation="enforce"`` mode, arguments our JSON Schema check
    refuses are answered by us and the tool does not run.

    Args:
        client: the :class:`~mcp_tracking.AnalyticsClient` (the process's shared default one if omitted).
        server: the ``MCPServer`` whose live tool list gives the schemas and the suggestions. Without it,
            unknown names are still recorded (from the SDK's own answer) but get no suggestion, and
            arguments are checked only by the SDK.
        options: a :class:`~mcp_tracking.TrackingOptions`, or its fields as keyword arguments.

    Example:
        mcp = MCPServer("drea")
        mcp.middleware.append(TrackingMiddleware(AnalyticsClient(mcp_name="drea"), server=mcp))
    """

    def __init__(self, client: AnalyticsClient | None = None, server: Any = None, *,
                 options: TrackingOptions | None = None, **option_fields: Any) -> None:
        if options is not None and option_fields:
            raise TypeError("pass either options= or option keyword arguments, not both")
        self.client = client if client is not None else default_client()
        self.server = server
        self.recorder = recorder_for(self.client, options or TrackingOptions(**option_fields))
        self.mcp_name = getattr(server, "name", None) if server is not None else None

    # -- the middleware --------------------------------------------------------------------------

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        params = ctx.params
        is_map = type(params) is dict or isinstance(params, Mapping)
        name = params.get("name") if is_map else None
        args = params.get("arguments") if is_map else None
        if type(name) is not str or not (args is None or type(args) is dict or isinstance(args, Mapping)):
            return await call_next(ctx)  # malformed: the SDK answers -32602 itself
        try:
            manager = getattr(self.server, "_tool_manager", None)
            tool = manager.get_tool(name) if manager is not None else None
            called_as = None
            routed = None
            if tool is None and manager is not None:
                routed = alias_target(self.recorder, name, manager.get_tool)
            if routed is not None:
                # an opt-in alias: the SDK dispatches the tool it names (it reads the rewritten params)
                ctx = dataclasses.replace(ctx, params={**params, "name": routed[0]})
                called_as, (name, tool) = name, routed
            info = call_info(ctx, name, args or {}, recorder=self.recorder,
                             mcp_name=self.client.mcp_name or self.mcp_name)
            info.called_as = called_as
        except Exception:
            warn_limited("mcpserver-begin", "mcp_tracking: could not track a tools/call; it proceeds untracked",
                      exc_info=True)
            return await call_next(ctx)
        if tool is None:  # the SDK will say whether it knows the name
            return await self._unsure(ctx, call_next, info, manager)
        handle = self.recorder.begin(info, schema=tool.parameters)
        if handle is not None and handle.reject is not None:
            try:
                return error_result(ctx, self.server, handle.reject)
            except Exception:
                warn_limited("mcpserver-reject", "mcp_tracking: could not build the corrective answer", exc_info=True)
        result = await run_call(self.recorder, handle, name, lambda: call_next(ctx),
                                timeout_answer=lambda text: error_result(ctx, self.server, text))
        return self._finish(handle, name, result) if handle is not None else result

    async def _unsure(self, ctx: Any, call_next: Any, info: CallInfo, manager: Any) -> Any:
        """A name our lookup does not know: the SDK dispatches or answers "Unknown tool" itself."""
        name = info.tool_name
        return await ask_sdk(self.recorder, info, lambda: call_next(ctx),
                             says_unknown=lambda result: _says_unknown(result, name),
                             add_text=lambda result, text: with_text(result, text, " "),
                             names=lambda: [t.name for t in manager.list_tools()] if manager is not None else [],
                             finish=lambda handle, result: self._finish(handle, name, result))

    def _finish(self, handle: Any, name: str, result: Any) -> Any:
        """Record the outcome from the wire result; the SDK's refusal of the arguments gains our corrective
        lines. Contained like every other stage: on any failure the SDK's result is returned as it is."""
        try:
            if type(result) is dict or isinstance(result, Mapping):
                is_error = bool(result.get("isError"))
                structured, content = result.get("structuredContent"), result.get("content")
            else:
                is_error = bool(getattr(result, "is_error", False))
                structured, content = getattr(result, "structured_content", None), getattr(result, "content", None)
            if not is_error:
                self.recorder.finish(handle, result=WireResult(structured, content))
                return result
            text = text_of(content)
            refused, lines = sdk_refusal(self.recorder, handle, name, text)
            if refused:
                return with_text(result, lines, "\n\n") if lines else result
            self.recorder.finish(handle, error_type="tool_error", error_message=text)
        except Exception:
            warn_limited("mcpserver-finish", "mcp_tracking: could not read a tool result", exc_info=True)
            self.recorder.finish(handle)
        return result


def _says_unknown(result: Any, name: str) -> bool:
    """The SDK's own answer for a name it does not know."""
    if type(result) is dict or isinstance(result, Mapping):
        return bool(result.get("isError")) and text_of(result.get("content")) == f"Unknown tool: {name}"
    return bool(getattr(result, "is_error", False)) and text_of(getattr(result, "content", None)) \
        == f"Unknown tool: {name}"
