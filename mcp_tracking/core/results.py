"""A tool's result as the tracker reads it: its stored size, its fingerprint, and (only when asked) its payload.

Adapters hand the recorder a :class:`WireResult` (the ``structuredContent`` and ``content`` of a
``CallToolResult``, as the framework produced them) instead of a parsed payload. Every call needs only the
result's bytes, for ``result_size`` and for the fingerprint that tells a repeated call that got the same
answer (a retry) from one that got a new one (polling). Those bytes are what the server sends: the text
parts as UTF-8, or the structured content as JSON. Parsing the text back into JSON is left to the opt-in
readers of the payload (completeness checks, results on OpenTelemetry spans), so a large result costs the
request path one encode and one hash, not a parse and a re-serialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from mcp_tracking._json import canonical_bytes, loads

MAX_TEXT_FOR_JSON = 1 << 20


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
    if not text and content:
        return items_of(content)
    return text


def items_of(content: Any) -> list[Any]:
    """The content items as plain values (wire dicts stay as they are; models are dumped)."""
    return [i if isinstance(i, Mapping) else i.model_dump() if hasattr(i, "model_dump") else repr(i)
            for i in content or ()]


def _type_of(item: Any) -> Any:
    return item.get("type") if isinstance(item, Mapping) else getattr(item, "type", None)


def value_bytes(value: Any) -> bytes:
    """A Python value's JSON bytes (key order as built: the same tool builds its results alike)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return canonical_bytes(value)


class WireResult:
    """A ``CallToolResult``'s structured content and content, read lazily."""

    __slots__ = ("_payload", "content", "structured")

    def __init__(self, structured: Any, content: Any) -> None:
        self.structured = structured
        self.content = content
        self._payload: Any = _UNSET

    @property
    def payload(self) -> Any:
        """The parsed result (:func:`payload_of`), computed on first use."""
        if self._payload is _UNSET:
            self._payload = payload_of(self.structured, self.content)
        return self._payload

    def wire_bytes(self) -> bytes:
        """The bytes the result is sent as: the structured content's JSON, else the text in UTF-8 when every
        content item is text, else the JSON of the content items (an image or a resource counts too)."""
        if self.structured is not None:
            return value_bytes(self.structured)
        content = self.content
        if not content or all(_type_of(item) == "text" for item in content):
            return text_of(content).encode("utf-8", "surrogatepass")
        return value_bytes(items_of(content))


class _Unset:
    __slots__ = ()


_UNSET: Any = _Unset()
