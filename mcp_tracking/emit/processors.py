"""Processors: small callables applied to each event on the worker, before it is stored.

A processor takes an :class:`~mcp_tracking.events.EventRecord` and returns it (changed or not), or
``None`` to drop it. The default chain is :func:`default_processors`: make JSON-safe, (your processors),
redact secret-looking keys, (keys only), cap sizes. They run on the emitter's worker thread, never on
the tool's request path.

The built-ins keep ``event.metadata_json`` (the stored bytes) in step with ``event.metadata`` and take a
fast path over those bytes: redaction walks the metadata only when a secret-looking key appears in them,
capping only when they are longer than the smallest cap. A processor of yours that changes ``metadata``
needs to do nothing: the emitter clears the cached bytes after every processor that is not a built-in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from mcp_tracking._json import MAX_DEPTH, cap_strings, clean_text, cut_text, dumps, to_jsonable
from mcp_tracking._secrets import REDACTED, SECRET_KEY_PATTERN, all_values, is_secret_key, normalise_key, scrub_text
from mcp_tracking._secrets import secret_values as _secret_values
from mcp_tracking.events import KNOWN_EVENT_NAMES, MAX_PAYLOAD_BYTES, MAX_STRING_CHARS, EventRecord

Processor = Callable[[EventRecord], "EventRecord | None"]

#: Keys whose values are replaced by ``[REDACTED]``, at any depth, matched on the normalised key (case,
#: ``-``, ``_``, ``.`` and spaces do not matter: see :mod:`mcp_tracking._secrets`).
DEFAULT_SECRET_PATTERN = SECRET_KEY_PATTERN

#: Free-text fields of our events, scrubbed of token-shaped secrets and of the values of secret keys.
TEXT_FIELDS = ("error_message",)

#: Metadata fields that carry the agent's arguments rather than our own bookkeeping.
PAYLOAD_FIELDS = ("tool_params", "first_tool_params", "second_tool_params")

_OPTS = orjson.OPT_NON_STR_KEYS


def ensure_json(event: EventRecord) -> bytes:
    """The event's metadata as stored JSON bytes (computed once, JSON-safe)."""
    data = event.metadata_json
    if data is None:
        try:
            try:
                data = orjson.dumps(event.metadata)  # str keys: the fast form
            except TypeError:
                data = orjson.dumps(event.metadata, option=_OPTS)
        except TypeError:
            event.metadata = to_jsonable(event.metadata)
            data = dumps(event.metadata)
        event.metadata_json = data
    return data


class MakeJsonSafe:
    """Turn non-JSON values (bytes, sets, datetimes, NaN, objects, cycles) into JSON."""

    __slots__ = ()
    builtin = True

    def __call__(self, event: EventRecord) -> EventRecord:
        if not isinstance(event.metadata, dict):
            event.metadata = {"value": event.metadata} if event.metadata is not None else {}
            event.metadata_json = None
        ensure_json(event)
        return event


class RedactSecrets:
    """Replace values under secret-looking keys with ``[REDACTED]`` at any depth (a subtree deeper than the
    walk goes is replaced, never kept unexamined), and keep secrets out of the free text we store: token
    formats, ``secret_key=value`` pairs, and any value the call's arguments hold under a secret key, wherever
    an error message or a validation message echoes it."""

    __slots__ = ("_clean", "_seen", "pattern")
    builtin = True

    def __init__(self, pattern: re.Pattern[str] | str = DEFAULT_SECRET_PATTERN) -> None:
        self.pattern = re.compile(pattern, re.IGNORECASE) if isinstance(pattern, str) else pattern
        self._seen: dict[Any, bool] = {}  # key -> secret-looking? (keys repeat: a bounded memo)
        self._clean: set[Any] = set()  # keys known not to look secret: most dicts pass one C-level check

    def _secret(self, key: Any) -> bool:
        hit = self._seen.get(key)
        if hit is None:
            if not isinstance(key, str):
                hit = False
            elif self.pattern is SECRET_KEY_PATTERN:
                hit = is_secret_key(key)
            else:  # a pattern of yours: on the key as given and normalised
                hit = self.pattern.search(key) is not None or self.pattern.search(normalise_key(key)) is not None
            if len(self._seen) < 10_000:
                self._seen[key] = hit
                if not hit:
                    self._clean.add(key)
        return hit

    def _has_secret(self, value: Any, depth: int = 0) -> bool:
        """Whether any key at any depth looks secret. This runs for every event: the keys of a dict are one
        subset check against the keys known to be clean, and only containers are walked into."""
        kind = type(value)
        if kind is dict or (kind is not list and isinstance(value, dict)):
            if not value.keys() <= self._clean:
                for k in value:
                    if self._secret(k):
                        return True
            values: Any = value.values()
        elif kind is list or isinstance(value, list):
            values = value
        else:
            return False
        for v in values:
            kind = type(v)
            if kind is str or kind is int or kind is float or kind is bool or v is None:
                continue
            if isinstance(v, (dict, list)) and (depth + 1 >= MAX_DEPTH or self._has_secret(v, depth + 1)):
                return True  # deeper than the walk goes: the redaction replaces it
        return False

    def _redact(self, value: Any, depth: int = 0) -> Any:
        if depth >= MAX_DEPTH:
            return "<max depth>" if isinstance(value, (dict, list)) else value
        if isinstance(value, dict):
            return {
                k: (REDACTED if v is not None and self._secret(k) else self._redact(v, depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._redact(v, depth + 1) for v in value]
        return value

    def __call__(self, event: EventRecord) -> EventRecord:
        md = event.metadata
        changed = False
        if event.event_name in KNOWN_EVENT_NAMES:  # our own events: the agent's arguments, and our texts
            hits = [key for key in PAYLOAD_FIELDS if key in md and self._has_secret(md[key])]
            values: list[str] = []
            for key in hits:
                values += _secret_values(md[key])
                md[key] = self._redact(md[key])
                changed = True
            changed = scrub_messages(md, values) or changed
        else:  # custom events and host-supplied metadata may carry secrets anywhere
            if self._has_secret(md):
                event.metadata = md = self._redact(md)
                changed = True
            changed = scrub_messages(md, []) or changed  # a host's error_message may quote a token too
        if changed:
            event.metadata_json = None
            ensure_json(event)
        return event


def scrub_messages(md: dict[str, Any], values: list[str]) -> bool:
    """Scrub the free text of an event (error message, validation messages) of token-shaped secrets and of
    ``values``; ``True`` if anything changed."""
    changed = False
    for key in TEXT_FIELDS:
        text = md.get(key)
        if isinstance(text, str):
            clean = scrub_text(text, values)
            if clean != text:
                md[key] = clean
                changed = True
    errors = md.get("validation_errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("error"), str):
                clean = scrub_text(item["error"], values)
                if clean != item["error"]:
                    item["error"] = clean
                    changed = True
    return changed


class KeysOnly:
    """Store no parameter values at all: keep the keys and the JSON type of each value."""

    __slots__ = ()
    builtin = True

    @staticmethod
    def _shape(value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict) and depth < MAX_DEPTH:
            return {k: KeysOnly._shape(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return f"<array[{len(value)}]>"
        return f"<{_json_type(value)}>"

    def __call__(self, event: EventRecord) -> EventRecord:
        changed = False
        values: list[str] = []
        for key in PAYLOAD_FIELDS:
            if key in event.metadata:
                values += all_values(event.metadata[key])
                event.metadata[key] = self._shape(event.metadata[key])
                changed = True
        if values:  # no argument value in any message either (a tool's error may quote one)
            changed = scrub_messages(event.metadata, sorted(set(values), key=len, reverse=True)) or changed
        if changed:
            event.metadata_json = None
            ensure_json(event)
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
    """Cap strings, the serialised size of payload fields, error messages and identifiers.

    A payload over ``max_payload_bytes`` is replaced by ``{"$truncated": true, "bytes": N, "preview": ...}``.
    """

    __slots__ = ("max_error_chars", "max_payload_bytes", "max_string_chars")
    builtin = True

    def __init__(self, max_string_chars: int = MAX_STRING_CHARS, max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                 max_error_chars: int = 2000):
        if min(max_string_chars, max_payload_bytes, max_error_chars) <= 0:
            raise ValueError("size caps must be positive")
        self.max_string_chars = max_string_chars
        self.max_payload_bytes = max_payload_bytes
        self.max_error_chars = max_error_chars

    def _cap_strings(self, value: Any) -> Any:
        return cap_strings(value, self.max_string_chars)

    @staticmethod
    def _cap_ids(event: EventRecord) -> None:
        """The envelope's strings: capped, and valid Unicode (a lone surrogate in a session id would make
        every store refuse the event, and with it its whole batch)."""
        event.user_id = clean_text(str(event.user_id)[:512])
        event.event_name = clean_text(str(event.event_name)[:512])
        if event.session_id is not None:
            event.session_id = clean_text(str(event.session_id)[:512])
        if event.mcp_name is not None:
            event.mcp_name = clean_text(str(event.mcp_name)[:512])

    def __call__(self, event: EventRecord) -> EventRecord:
        self._cap_ids(event)
        data = ensure_json(event)
        if len(data) <= min(self.max_string_chars, self.max_error_chars, 512):
            return event  # fast path: nothing in it can be over any cap
        md = event.metadata
        changed = False
        msg = md.get("error_message")
        if isinstance(msg, str) and len(msg) > self.max_error_chars:
            md["error_message"] = cut_text(msg, self.max_error_chars)
            changed = True
        for key in ("tool_name", "requested_tool_name", "first_tool_name", "second_tool_name"):
            v = md.get(key)
            if isinstance(v, str) and len(v) > 512:
                md[key] = v[:512]
                changed = True
        if len(data) <= self.max_string_chars:  # no string in it can be over the string cap
            if changed:
                event.metadata_json = None
                ensure_json(event)
            return event
        # over the string cap somewhere: walk the payloads and strings
        for key in PAYLOAD_FIELDS:
            if key in md and md[key] is not None:
                value = self._cap_strings(md[key])
                encoded = dumps(value)
                if len(encoded) > self.max_payload_bytes:
                    preview = encoded[: min(512, self.max_string_chars)].decode("utf-8", "replace")
                    value = {"$truncated": True, "bytes": len(encoded), "preview": preview}
                md[key] = value
        if event.event_name not in KNOWN_EVENT_NAMES:
            event.metadata = self._cap_strings(event.metadata)
        else:
            for key, v in md.items():
                if isinstance(v, (str, list, dict)) and key not in PAYLOAD_FIELDS:
                    md[key] = self._cap_strings(v)
        event.metadata_json = None
        ensure_json(event)
        return event


class FastPath:
    """The built-in chain's common case in one call per event.

    Most events are clean: they serialise at the first try, no key looks secret and nothing is near a cap.
    For the default chain (JSON-safe → redact → cap sizes, no processors of yours, no keys-only) this checks
    exactly that in one function; an event it cannot vouch for goes through the chain as before, which
    reuses the bytes computed here. ``FastPath.of(chain)`` is ``None`` for any other chain.
    """

    __slots__ = ("max_error_chars", "max_string_chars", "quick_limit", "redact")

    def __init__(self, redact: RedactSecrets | None, cap: CapSizes) -> None:
        self.redact = redact
        self.max_string_chars = cap.max_string_chars
        self.max_error_chars = cap.max_error_chars
        self.quick_limit = min(cap.max_string_chars, cap.max_error_chars, 512)

    @classmethod
    def of(cls, chain: list[Processor]) -> FastPath | None:
        kinds = [type(p) for p in chain]
        if kinds == [MakeJsonSafe, RedactSecrets, CapSizes]:
            return cls(chain[1], chain[2])  # type: ignore[arg-type]
        if kinds == [MakeJsonSafe, CapSizes]:
            return cls(None, chain[1])  # type: ignore[arg-type]
        return None

    def run(self, batch: list[EventRecord]) -> list[int]:
        """Serialise and check a batch in one loop; the positions of the events that need the full chain."""
        slow: list[int] = []
        redact = self.redact
        has_secret = redact._has_secret if redact is not None else None
        quick_limit, max_string_chars, max_error_chars = self.quick_limit, self.max_string_chars, self.max_error_chars
        known = KNOWN_EVENT_NAMES
        dumps_ = orjson.dumps
        scanned: dict[int, bool] = {}  # by id(): the batch holds every object scanned, so ids stay unique
        for i, event in enumerate(batch):
            md = event.metadata
            if type(md) is not dict:
                slow.append(i)
                continue
            data = event.metadata_json
            if data is None:
                try:
                    data = event.metadata_json = dumps_(md)
                except TypeError:  # non-str keys or values orjson cannot take: the chain makes them JSON
                    slow.append(i)
                    continue
            if not (_plain_id(event.user_id) and _plain_id(event.event_name)
                    and (event.session_id is None or _plain_id(event.session_id))
                    and (event.mcp_name is None or _plain_id(event.mcp_name))):
                slow.append(i)
                continue
            size = len(data)
            if size > quick_limit:
                if size > max_string_chars:
                    slow.append(i)
                    continue
                msg = md.get("error_message")
                if (isinstance(msg, str) and len(msg) > max_error_chars) or any(
                        isinstance(v, str) and len(v) > 512 for v in
                        (md.get("tool_name"), md.get("requested_tool_name"), md.get("first_tool_name"),
                         md.get("second_tool_name"))):
                    slow.append(i)
                    continue
            if has_secret is None:
                continue
            if "error_message" in md or "validation_errors" in md:
                slow.append(i)  # free text to scrub (failures and schema errors: the few)
                continue
            if event.event_name in known:
                params = md.get("tool_params")
                if params is not None:  # a call's events share one arguments object: scanned once per batch
                    hit = scanned.get(id(params))
                    if hit is None:
                        hit = scanned[id(params)] = has_secret(params)
                else:
                    hit = False
                if hit or (
                        ("first_tool_params" in md or "second_tool_params" in md)
                        and (has_secret(md.get("first_tool_params")) or has_secret(md.get("second_tool_params")))):
                    slow.append(i)
            elif has_secret(md):
                slow.append(i)
        return slow


def _plain_id(value: Any) -> bool:
    """An envelope string the stores take as it is: a str of at most 512 characters, valid Unicode."""
    return type(value) is str and len(value) <= 512 and (value.isascii() or clean_text(value) is value)


def default_processors(*, redact: bool = True, keys_only: bool = False,
                       extra: Iterable[Processor] = ()) -> list[Processor]:
    """JSON-safe → (your processors) → redact → keys-only (opt-in) → cap sizes."""
    chain: list[Processor] = [MakeJsonSafe(), *extra]
    if redact:
        chain.append(RedactSecrets())
    if keys_only:
        chain.append(KeysOnly())
    chain.append(CapSizes())
    return chain
