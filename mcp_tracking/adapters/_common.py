"""Helpers the framework adapters share: reading results, classifying failures, the shared client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from mcp_tracking._json import loads
from mcp_tracking.core.recorder import CallHandle, Recorder, current_call

MAX_TEXT_FOR_JSON = 1 << 20


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


def text_of(content: Any) -> str:
    """The text parts of an MCP ``content`` list (dicts or models), joined."""
    parts: list[str] = []
    for item in content or ():
        text = item.get("text") if isinstance(item, Mapping) else getattr(item, "text", None)
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)


def payload_of(structured: Any, content: Any) -> Any:
    """The result as an agent reads it: structured content (unwrapped from ``{"result": x}``), else JSON
    parsed from a single text part, else the text."""
    if structured is not None:
        if (type(structured) is dict or isinstance(structured, Mapping)) and len(structured) == 1 \
                and "result" in structured:
            return structured["result"]
        return structured
    text = text_of(content)
    if text and len(text) <= MAX_TEXT_FOR_JSON and text[:1] in "[{":
        try:
            return loads(text)
        except ValueError:
            pass
    items = list(content or ())
    if not text and items:
        return [i if isinstance(i, Mapping) else i.model_dump() if hasattr(i, "model_dump") else repr(i)
                for i in items]
    return text


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
