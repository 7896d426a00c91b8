"""JSON that never raises: canonical bytes for hashing, and a safe serialiser for storage.

Tool arguments arrive as whatever the framework parsed, and hosts pass anything to ``track()``:
bytes, datetimes, sets, NaN, custom objects, cycles, absurd nesting. Everything here turns those
into stable JSON instead of raising.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

MAX_DEPTH = 64
_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_CANON_OPTS = _OPTS | orjson.OPT_SORT_KEYS


def _default(obj: Any) -> Any:
    """orjson's fallback for types it does not know."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)[:4096]).decode(), "len": len(obj)}
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return sorted(repr(x) for x in obj)
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if hasattr(obj, "model_dump"):
        try:
            return obj.model_dump(mode="json")
        except Exception:
            pass
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    return f"<{type(obj).__name__}>"


_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (``'\\ud800'``, bytes decoded with ``surrogateescape``)
    become U+FFFD, the only characters no UTF-8 store, file or JSON encoder can take."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)


def to_jsonable(obj: Any, _depth: int = 0, _seen: set[int] | None = None) -> Any:
    """A pure-JSON copy of ``obj``: cycles and depth beyond :data:`MAX_DEPTH` become markers,
    NaN/inf become strings, unknown objects become ``"<TypeName>"``, text that is not valid Unicode is
    cleaned (:func:`clean_text`)."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if _depth >= MAX_DEPTH:
        return "<max depth>"
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    if _seen is None:
        _seen = set()
    if isinstance(obj, (Mapping, list, tuple, set, frozenset)):
        if id(obj) in _seen:
            return "<cycle>"
        _seen.add(id(obj))
        try:
            if isinstance(obj, Mapping):
                out: Any = {clean_text(k if isinstance(k, str) else str(k)): to_jsonable(v, _depth + 1, _seen)
                            for k, v in obj.items()}
            elif isinstance(obj, (set, frozenset)):
                items = [to_jsonable(v, _depth + 1, _seen) for v in obj]
                try:
                    out = sorted(items)
                except TypeError:
                    out = sorted(items, key=repr)
            else:
                out = [to_jsonable(v, _depth + 1, _seen) for v in obj]
        finally:
            _seen.discard(id(obj))
        return out
    converted = _default(obj)
    if isinstance(converted, str):
        return converted
    return to_jsonable(converted, _depth + 1, _seen)


def dumps(obj: Any) -> bytes:
    """Serialise for storage; never raises (falls back to :func:`to_jsonable`)."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTS)
    except Exception:
        return orjson.dumps(to_jsonable(obj), option=_OPTS)


def dumps_str(obj: Any) -> str:
    return dumps(obj).decode()


def canonical_bytes(obj: Any) -> bytes:
    """Canonical JSON: sorted keys at every depth, so the same params in any key order are equal."""
    try:
        return orjson.dumps(obj, default=_default, option=_CANON_OPTS)
    except Exception:
        return orjson.dumps(to_jsonable(obj), option=_CANON_OPTS)


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


def _load_key() -> bytes:
    env = os.environ.get("MCP_TRACKING_HASH_KEY")
    if env:
        return hashlib.blake2b(env.encode(), digest_size=32).digest()
    return os.urandom(32)


_HASH_KEY = _load_key()


#: canonical arguments larger than this are hashed in two steps: SHA-256 first (the CPU's SHA extensions run it
#: at about twice BLAKE2b's speed), then the keyed BLAKE2b over that digest (the key still guards every hash)
BIG_PARAMS_BYTES = 65_536


def params_digest(params: Any, key: bytes | None = None) -> tuple[str, int]:
    """:func:`params_hash` and the size of the canonical JSON it hashed, in bytes (one serialisation)."""
    data = canonical_bytes(params)
    size = len(data)
    if size > BIG_PARAMS_BYTES:
        data = hashlib.sha256(data).digest()
    keyed = _KEYED.get(key) if key else _DEFAULT_KEYED
    if keyed is None:
        keyed = _KEYED.setdefault(key, hashlib.blake2b(key=key, digest_size=16))  # type: ignore[arg-type]
    h = keyed.copy()
    h.update(data)
    return h.hexdigest(), size


def cut_text(text: str, max_chars: int) -> str:
    """``text`` in at most ``max_chars`` characters, the cut marked ``...[N more chars]`` (so cutting twice
    changes nothing)."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(f"...[{len(text)} more chars]"))
    return text[:keep] + f"...[{len(text) - keep} more chars]"


def cap_strings(value: Any, max_chars: int, _depth: int = 0) -> Any:
    """``value`` with every string (keys too) over ``max_chars`` cut and marked ``...[N more chars]``;
    containers deeper than :data:`MAX_DEPTH` are replaced by ``"<max depth>"`` (never kept unexamined)."""
    if isinstance(value, str):
        return cut_text(value, max_chars)
    if isinstance(value, (Mapping, list, tuple)) and _depth >= MAX_DEPTH:
        return "<max depth>"
    if isinstance(value, Mapping):
        return {cap_strings(k, max_chars, _depth + 1) if isinstance(k, str) else k:
                cap_strings(v, max_chars, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cap_strings(v, max_chars, _depth + 1) for v in value]
    return value


def stand_in(value: Any, size: int) -> dict[str, Any]:
    """What is kept of a value too large to queue: its size and, for an object, its first 50 keys (never a
    value: the stand-in is made on the request path, before redaction)."""
    out: dict[str, Any] = {"$truncated": True, "bytes": size}
    if isinstance(value, Mapping):
        out["keys"] = [clean_text(k if isinstance(k, str) else str(k))[:200] for k in list(value)[:50]]
    return out


def approx_size(value: Any) -> int:
    """The JSON size of a value a host hands to ``track()``, in bytes (orjson's; 1 KB per value it cannot
    serialise as is, which the worker makes JSON later)."""
    try:
        return len(orjson.dumps(value, option=_OPTS))
    except Exception:
        return 1024


def params_hash(params: Any, key: bytes | None = None) -> str:
    """Keyed hash of the canonical params (32 hex chars, like the design's md5).

    Keyed (BLAKE2b with a secret key) so a stored hash cannot be brute-forced back to a low-entropy
    secret such as a short password. The key comes from ``MCP_TRACKING_HASH_KEY`` (set the same value
    on every replica so hashes compare across them), else it is random per process.
    """
    return params_digest(params, key)[0]


_DEFAULT_KEYED = hashlib.blake2b(key=_HASH_KEY, digest_size=16)
_KEYED: dict[bytes, Any] = {}
