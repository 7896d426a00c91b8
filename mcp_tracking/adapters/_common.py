"""Helpers the framework adapters share: reading results, classifying failures, the shared client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from mcp_tracking.core.recorder import CallHandle, Recorder, current_call


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError))


def error_type_of(exc: BaseException) -> str:
    """``tool_call_failed.error_type`` for an exception raised through the call."""
    if is_timeout(exc):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError) or type(exc).__name__ in {"Cancelled", "CancelledError"}:
        return "cancelled"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return "execution_error"


def str_or_none(value: Any) -> str | None:
    """A non-empty string, else ``None`` (on the hot path: the exact-type test first)."""
    return value if (type(value) is str or isinstance(value, str)) and value else None


def tool_manager_lookup(server: Any, name: str) -> tuple[bool, Any, Callable[[], list[str]] | None]:
    """(known, input schema, names) from the live tool manager of an ``MCPServer`` or mcp 1.x ``FastMCP``.

    Without a server (or a manager), every name counts as known and nothing is validated.
    """
    manager = getattr(server, "_tool_manager", None)
    if manager is None:
        return True, None, None
    tool = manager.get_tool(name)
    if tool is not None:
        return True, tool.parameters, None
    return False, None, lambda: [t.name for t in manager.list_tools()]


async def run_call(recorder: Recorder, handle: CallHandle | None, tool_name: str,
                   call: Callable[[], Awaitable[Any]], *, timeout_answer: Callable[[str], Any],
                   classify: Callable[[BaseException], str] = error_type_of) -> Any:
    """Run the tool through ``call`` with the call tracked: the handle in :data:`current_call`, the
    configured timeout (answered with ``timeout_answer(text)`` and recorded as ``timeout``), and any exception
    recorded, then re-raised untouched. The caller records a normal result itself."""
    timeout = recorder.options.timeout
    token = current_call.set(handle) if handle is not None else None
    try:
        if timeout is None:
            return await call()
        with anyio.fail_after(timeout):
            return await call()
    except TimeoutError as exc:
        if timeout is None or handle is None:
            recorder.finish(handle, error_type=classify(exc), exception=exc)
            raise
        message = f"Tool {tool_name!r} timed out after {timeout:g} s."
        recorder.finish(handle, error_type="timeout", error_message=message, exception=exc)
        return timeout_answer(message)
    except BaseException as exc:
        recorder.finish(handle, error_type=classify(exc), exception=exc)
        raise
    finally:
        if token is not None:
            current_call.reset(token)
