"""Helpers the framework adapters share: reading results, classifying failures, the shared client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from mcp_tracking._json import loads

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
