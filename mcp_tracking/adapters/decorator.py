"""``@track_tool``: track any tool function, sync or async, with or without a server framework.

    @mcp.tool()
    @track_tool(client)
    async def get_benchmark_results(model_name: str, ctx: Context) -> dict: ...

The wrapper keeps the function's signature, name, docstring and sync/async-ness (``functools.wraps``),
so every framework derives the same input schema. When a tracking middleware already records the
call (the server is instrumented too), the decorator steps aside instead of recording it twice.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar, overload

from mcp_tracking._logging import warn_limited
from mcp_tracking.adapters._common import default_client, error_type_of, recorder_for
from mcp_tracking.client import AnalyticsClient
from mcp_tracking.core.manifest import unknown_tool_message
from mcp_tracking.core.recorder import CallHandle, CallInfo, TrackingOptions, current_call

F = TypeVar("F", bound=Callable[..., Any])

#: The design's decorator keeps these keyword arguments out of ``tool_params``.
IDENTITY_KWARGS = ("user_id", "session_id", "original_prompt")


def _is_context(value: Any) -> bool:
    """A framework ``Context`` (mcp 2.x, fastmcp, mcp 1.x) passed to the tool."""
    return hasattr(value, "request_context") and type(value).__name__ == "Context"


def _schema_of(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """The input schema a framework would derive, via pydantic (Context parameters left out)."""
    from pydantic import create_model

    try:
        sig = inspect.signature(fn, eval_str=True)
    except Exception:
        return None
    fields: dict[str, Any] = {}
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in IDENTITY_KWARGS:
            continue
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        if getattr(ann, "__name__", "") == "Context":
            continue
        fields[name] = (ann, ... if p.default is inspect.Parameter.empty else p.default)
    try:
        return create_model(f"{fn.__name__}Arguments", **fields).model_json_schema()
    except Exception:
        return None


class _Refused(Exception):
    """The call must not run: an unknown name (with a manifest) or arguments refused in enforce mode."""

    def __init__(self, text: str, answer: dict[str, Any]) -> None:
        super().__init__(text)
        self.text = text
        self.answer = answer  # the design's decorator returns this instead of raising


class _ToolTracker:
    def __init__(self, fn: Callable[..., Any], client: AnalyticsClient, name: str | None, mcp_name: str | None,
                 manifest: Collection[str] | Callable[[], Collection[str]] | None, validate: bool,
                 options: TrackingOptions) -> None:
        self.fn = fn
        self.client = client
        self.name = name or fn.__name__
        self.mcp_name = mcp_name
        self.manifest = manifest
        self.recorder = recorder_for(client, options)
        self._schema: Any = _schema_of(fn) if validate and options.validation != "off" else None
        self._sig: inspect.Signature | None
        try:
            self._sig = inspect.signature(fn)
        except (TypeError, ValueError):
            self._sig = None

    def _params(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        bound: dict[str, Any] = dict(kwargs)
        if args and self._sig is not None:
            try:
                bound = dict(self._sig.bind_partial(*args, **kwargs).arguments)
            except TypeError:
                bound = {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
        ctx = None
        params: dict[str, Any] = {}
        for k, v in bound.items():
            if _is_context(v):
                ctx = v
            elif k not in IDENTITY_KWARGS:
                params[k] = v
        return params, ctx

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CallHandle | None:
        """Record the start; raise :class:`_Refused` when the call must not run."""
        if current_call.get() is not None:
            return None
        try:
            params, ctx = self._params(args, kwargs)
            info = self._info(params, ctx, kwargs)
            if self.manifest is not None:  # a dispatcher: no framework to ask, the manifest decides
                names = [str(n) for n in (self.manifest() if callable(self.manifest) else self.manifest)]
                if self.name not in names:
                    found = self.recorder.unknown(info, names)
                    text = unknown_tool_message(self.name, found, names)
                    raise _Refused(text, {"error": "Tool not found in manifest", "message": text,
                                          "suggestions": [f.name for f in found]})
            handle = self.recorder.begin(info, schema=self._schema)
        except _Refused:
            raise
        except Exception:
            warn_limited("decorator-begin", "mcp_tracking: could not track %s; it runs untracked", self.name,
                      exc_info=True)
            return None
        if handle is not None and handle.reject is not None:
            md_errors = handle.validation[0].errors if handle.validation is not None else []
            raise _Refused(handle.reject, {"error": "Schema validation failed", "message": handle.reject,
                                           "validation_errors": list(md_errors)})
        return handle

    def enter(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[CallHandle | None, Any]:
        """Begin the call (``_Refused`` when it must not run) and mark it as tracked."""
        handle = self.begin(args, kwargs)
        return handle, (current_call.set(handle) if handle is not None else None)

    @staticmethod
    def leave(token: Any) -> None:
        if token is not None:
            current_call.reset(token)

    def _info(self, params: dict[str, Any], ctx: Any, kwargs: Mapping[str, Any]) -> CallInfo:
        info: CallInfo | None = None
        rc = None
        if ctx is not None:
            try:
                rc = ctx.request_context
            except Exception:
                rc = None
            srctx = getattr(rc, "_srctx", rc)  # fastmcp wraps the SDK context
            if srctx is not None and hasattr(srctx, "protocol_version") and hasattr(srctx, "session"):
                try:
                    from mcp_tracking.adapters.mcpserver import call_info

                    info = call_info(srctx, self.name, params, mcp_name=self.mcp_name, recorder=self.recorder)
                except ImportError:  # mcp 1.x
                    info = None
            if info is None and rc is not None:  # mcp 1.x RequestContext
                session = getattr(rc, "session", None)
                cp = getattr(session, "client_params", None)
                ci = getattr(cp, "clientInfo", None)
                info = CallInfo(self.name, params, connection=session, meta=None,
                                client_name=getattr(ci, "name", None), client_version=getattr(ci, "version", None),
                                mcp_name=self.mcp_name)
        if info is None:
            info = CallInfo(self.name, params, mcp_name=self.mcp_name)
        if info.mcp_name is None:
            info.mcp_name = self.client.mcp_name
        user = kwargs.get("user_id")
        session_id = kwargs.get("session_id")
        if isinstance(user, str) and user:
            info.explicit_user = user
        if isinstance(session_id, str) and session_id:
            info.explicit_session = session_id
        elif info.connection is None and info.transport_session is None:
            info.explicit_session = self.client.get_current_session_id()  # the design's fallback
        return info


@overload
def track_tool(client: AnalyticsClient | None = None, fn: None = None, **kw: Any) -> Callable[[F], F]: ...
@overload
def track_tool(client: AnalyticsClient | None, fn: F, **kw: Any) -> F: ...


def track_tool(
    client: AnalyticsClient | None = None,
    fn: Any = None,
    *,
    name: str | None = None,
    mcp_name: str | None = None,
    manifest: Collection[str] | Callable[[], Collection[str]] | None = None,
    validate: bool = True,
    options: TrackingOptions | None = None,
    refusal: str = "raise",
    **option_fields: Any,
) -> Any:
    """Decorate a tool function so each call is tracked.

    Args:
        client: the :class:`~mcp_tracking.AnalyticsClient` (a default one if omitted).
        name: the tool's name (default: the function's name).
        mcp_name: the server's name for the events.
        manifest: the names of the server's tools (or a callable returning them), for hallucination checks
            when the decorated function is itself a dispatcher.
        validate: check arguments against the schema derived from the signature before the call.
        options: a :class:`~mcp_tracking.TrackingOptions`, or its fields as keyword arguments.

    The function's own exceptions and results pass through unchanged. Validation defaults to *enforce* here
    (a plain function has no framework checking its arguments; under a framework the decorator sees the
    arguments the framework already validated and coerced): invalid arguments raise ``ValueError`` with the
    corrective text instead of calling the function (frameworks turn it into a tool error), and so does an
    unknown name when ``manifest`` is given. ``refusal="return"`` returns the design's error dict instead
    (``{"error": "Schema validation failed", "validation_errors": [...]}`` / ``{"error": "Tool not found in
    manifest"}``), as :func:`track_tool_call` does.
    """
    if options is not None and option_fields:
        raise TypeError("pass either options= or option keyword arguments, not both")
    if refusal not in ("raise", "return"):
        raise ValueError(f"refusal must be 'raise' or 'return', not {refusal!r}")
    if options is None:
        option_fields.setdefault("validation", "enforce")
    opts = options or TrackingOptions(**option_fields)

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"track_tool needs a function, not {type(func).__name__}")
        tracker = _ToolTracker(func, client if client is not None else default_client(), name, mcp_name, manifest,
                               validate, opts)

        def refused(exc: _Refused) -> Any:
            if refusal == "return":
                return exc.answer
            raise ValueError(exc.text) from None

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    handle, token = tracker.enter(args, kwargs)
                except _Refused as exc:
                    return refused(exc)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    tracker.recorder.finish(handle, error_type=error_type_of(exc), exception=exc)
                    raise
                finally:
                    tracker.leave(token)
                tracker.recorder.finish(handle, result=result)
                return result

            wrapper: Any = async_wrapper
        else:
            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    handle, token = tracker.enter(args, kwargs)
                except _Refused as exc:
                    return refused(exc)
                try:
                    result = func(*args, **kwargs)
                except BaseException as exc:
                    tracker.recorder.finish(handle, error_type=error_type_of(exc), exception=exc)
                    raise
                finally:
                    tracker.leave(token)
                tracker.recorder.finish(handle, result=result)
                return result

            wrapper = sync_wrapper
        wrapper.__mcp_tracking__ = tracker
        return wrapper  # type: ignore[no-any-return]

    if fn is not None:
        return decorate(fn)
    if callable(client) and not isinstance(client, AnalyticsClient):  # @track_tool without arguments
        func, client = client, None
        return decorate(func)
    return decorate


def track_tool_call(analytics_client: AnalyticsClient, tool_func: F, *,
                    manifest: Collection[str] | Callable[[], Collection[str]] | None = None, **kw: Any) -> F:
    """The design's decorator, drop-in: ``track_tool_call(analytics_client, tool_func)``.

    ``user_id`` / ``session_id`` keyword arguments name the caller and the session (else the client's
    current session), and stay out of ``tool_params``. A name missing from ``manifest`` returns
    ``{"error": "Tool not found in manifest", ...}`` and invalid arguments return ``{"error": "Schema
    validation failed", "validation_errors": [...]}``, as the design's code does; everything else is
    :func:`track_tool`.
    """
    return track_tool(analytics_client, tool_func, manifest=manifest, refusal="return", **kw)
