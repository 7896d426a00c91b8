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


def to_jsonable(obj: Any, _depth: int = 0, _seen: set[int] | None = None) -> Any:
    """A pure-JSON copy of ``obj``: cycles and depth beyond :data:`MAX_DEPTH` become markers,
    NaN/inf become strings, unknown objects become ``"<TypeName>"``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
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
                out: Any = {str(k) if not isinstance(k, str) else k: to_jsonable(v, _depth + 1, _seen)
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


def params_hash(params: Any, key: bytes | None = None) -> str:
    """Keyed hash of the canonical params (32 hex chars, like the design's md5).

    Keyed (BLAKE2b with a secret key) so a stored hash cannot be brute-forced back to a low-entropy
    secret such as a short password. The key comes from ``MCP_TRACKING_HASH_KEY`` (set the same value
    on every replica so hashes compare across them), else it is random per process.
    """
    data = canonical_bytes(params)
    keyed = _KEYED.get(key) if key else _DEFAULT_KEYED
    if keyed is None:
        keyed = _KEYED.setdefault(key, hashlib.blake2b(key=key, digest_size=16))  # type: ignore[arg-type]
    h = keyed.copy()  # the key's block is hashed once, not on every call
    h.update(data)
    return h.hexdigest()


_DEFAULT_KEYED = hashlib.blake2b(key=_HASH_KEY, digest_size=16)
_KEYED: dict[bytes, Any] = {}
