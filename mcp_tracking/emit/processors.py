"""Processors: small callables applied to each event on the worker, before it is stored.

A processor takes an :class:`~mcp_tracking.events.EventRecord` and returns it (changed or not), or
``None`` to drop it. The default chain is :func:`default_processors`: make JSON-safe, redact
secret-looking keys, cap sizes. Processors run on the emitter's worker thread, never on the tool's
request path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from mcp_tracking._json import MAX_DEPTH, dumps, to_jsonable
from mcp_tracking.events import EventRecord

Processor = Callable[[EventRecord], "EventRecord | None"]

REDACTED = "[REDACTED]"

#: Keys whose values are replaced by ``[REDACTED]``, at any depth, case-insensitive, ignoring ``-``/``_``.
DEFAULT_SECRET_PATTERN = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api_?key|apikey|auth(orization)?|cookie|session_?key|private_?key|"
    r"credential|bearer|jwt|signature|access_?key|client_?secret|refresh)",
    re.IGNORECASE,
)

#: Metadata fields that carry the agent's arguments (or a result) rather than our own bookkeeping.
PAYLOAD_FIELDS = ("tool_params", "first_tool_params", "second_tool_params")


class MakeJsonSafe:
    """Turn non-JSON values (bytes, sets, datetimes, NaN, objects, cycles) into JSON."""

    __slots__ = ()

    def __call__(self, event: EventRecord) -> EventRecord:
        event.metadata = to_jsonable(event.metadata) if event.metadata is not None else {}
        if not isinstance(event.metadata, dict):
            event.metadata = {"value": event.metadata}
        return event


class RedactSecrets:
    """Replace values under secret-looking keys with ``[REDACTED]`` at any depth."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: re.Pattern[str] | str = DEFAULT_SECRET_PATTERN) -> None:
        self.pattern = re.compile(pattern, re.IGNORECASE) if isinstance(pattern, str) else pattern

    def _redact(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return {
                k: (REDACTED if isinstance(k, str) and self.pattern.search(k) and v is not None
                    else self._redact(v, depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._redact(v, depth + 1) for v in value]
        return value

    def __call__(self, event: EventRecord) -> EventRecord:
        md = event.metadata
        for key in PAYLOAD_FIELDS:
            if key in md:
                md[key] = self._redact(md[key])
        # custom events and host-supplied metadata may carry secrets anywhere
        if event.event_name not in _OWN_EVENTS:
            event.metadata = self._redact(md)
        return event


class KeysOnly:
    """Store no parameter values at all: keep the keys and the JSON type of each value."""

    __slots__ = ()

    @staticmethod
    def _shape(value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict) and depth < MAX_DEPTH:
            return {k: KeysOnly._shape(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return f"<array[{len(value)}]>"
        return f"<{_json_type(value)}>"

    def __call__(self, event: EventRecord) -> EventRecord:
        for key in PAYLOAD_FIELDS:
            if key in event.metadata:
                event.metadata[key] = self._shape(event.metadata[key])
        return event


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


class CapSizes:
    """Cap strings, the serialised size of payload fields, and error messages.

    A payload over ``max_payload_bytes`` is replaced by ``{"$truncated": true, "bytes": N, "preview": ...}``.
    """

    __slots__ = ("max_error_chars", "max_payload_bytes", "max_string_chars")

    def __init__(self, max_string_chars: int = 4096, max_payload_bytes: int = 16_384, max_error_chars: int = 2000):
        if min(max_string_chars, max_payload_bytes, max_error_chars) <= 0:
            raise ValueError("size caps must be positive")
        self.max_string_chars = max_string_chars
        self.max_payload_bytes = max_payload_bytes
        self.max_error_chars = max_error_chars

    def _cap_strings(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            if len(value) > self.max_string_chars:
                return value[: self.max_string_chars] + f"...[{len(value) - self.max_string_chars} more chars]"
            return value
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return {self._cap_strings(k, depth + 1) if isinstance(k, str) else k: self._cap_strings(v, depth + 1)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self._cap_strings(v, depth + 1) for v in value]
        return value

    def __call__(self, event: EventRecord) -> EventRecord:
        md = event.metadata
        msg = md.get("error_message")
        if isinstance(msg, str) and len(msg) > self.max_error_chars:
            md["error_message"] = msg[: self.max_error_chars] + f"...[{len(msg) - self.max_error_chars} more chars]"
        for key in PAYLOAD_FIELDS:
            if key in md and md[key] is not None:
                value = self._cap_strings(md[key])
                size = len(dumps(value))
                if size > self.max_payload_bytes:
                    preview = dumps(value)[: min(512, self.max_string_chars)].decode("utf-8", "replace")
                    value = {"$truncated": True, "bytes": size, "preview": preview}
                md[key] = value
        if event.event_name not in _OWN_EVENTS:
            event.metadata = self._cap_strings(event.metadata)
        for attr in ("user_id", "session_id", "mcp_name", "event_name"):
            v = getattr(event, attr)
            if isinstance(v, str) and len(v) > 512:
                setattr(event, attr, v[:512])
        for key in ("tool_name", "requested_tool_name", "first_tool_name", "second_tool_name"):
            v = md.get(key)
            if isinstance(v, str) and len(v) > 512:
                md[key] = v[:512]
        return event


def _own_events() -> frozenset[str]:
    from mcp_tracking.events import KNOWN_EVENT_NAMES

    return KNOWN_EVENT_NAMES


_OWN_EVENTS = _own_events()


def default_processors(*, redact: bool = True, keys_only: bool = False,
                       extra: Iterable[Processor] = ()) -> list[Processor]:
    """JSON-safe → (user processors) → redact → keys-only (opt-in) → cap sizes."""
    chain: list[Processor] = [MakeJsonSafe(), *extra]
    if redact:
        chain.append(RedactSecrets())
    if keys_only:
        chain.append(KeysOnly())
    chain.append(CapSizes())
    return chain
