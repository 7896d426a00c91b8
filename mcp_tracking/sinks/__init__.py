"""Where events are stored: memory, JSON lines, SQLite (the embedded default), PostgreSQL, OpenTelemetry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mcp_tracking.sinks.base import QueryableSink, Sink
from mcp_tracking.sinks.jsonl import JSONLSink
from mcp_tracking.sinks.memory import MemorySink
from mcp_tracking.sinks.sqlite import SQLiteSink

DEFAULT_URL = "sqlite:///mcp_tracking.db"

__all__ = ["DEFAULT_URL", "JSONLSink", "MemorySink", "QueryableSink", "SQLiteSink", "Sink", "default_url",
           "sink_from_spec", "sink_from_url"]


def default_url() -> str:
    """``MCP_TRACKING_URL`` if set, else SQLite at ``./mcp_tracking.db``."""
    return os.environ.get("MCP_TRACKING_URL") or DEFAULT_URL


def _path_of(url: str, scheme: str) -> Path:
    # sqlite:///relative.db, sqlite:////abs/path.db (SQLAlchemy style), sqlite:///C:/x.db
    rest = url[len(scheme) + 1:]
    if rest.startswith("///"):
        rest = rest[3:]
    elif rest.startswith("//"):
        rest = rest[2:]
    if not rest:
        raise ValueError(f"{url!r} names no file")
    return Path(unquote(rest))


def sink_from_spec(kind: str, options: dict[str, Any]) -> Sink:
    """Rebuild a store from what its ``writer_spec()`` gave (how the writer process opens the server's store,
    see :class:`~mcp_tracking.sinks.base.Respawnable`): ``sqlite``, ``postgresql``, or ``module:Class`` for a
    store class of yours, built with ``options`` as keyword arguments."""
    if kind == "sqlite":
        return SQLiteSink(**options)
    if kind == "postgresql":
        from mcp_tracking.sinks.postgres import PostgresSink

        return PostgresSink(**options)
    module, sep, name = kind.partition(":")
    if not sep:
        raise ValueError(f"no store of kind {kind!r}")
    import importlib

    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    sink = target(**options)
    if not isinstance(sink, Sink):
        raise TypeError(f"{kind} did not build a sink")
    return sink


def sink_from_url(url: str | os.PathLike[str] | None = None, *, read_only: bool = False, **options: Any) -> Sink:
    """Build a sink from a URL.

    ``sqlite:///path.db`` (relative), ``sqlite:////abs/path.db``, ``jsonl:///path.jsonl``, ``memory://``,
    ``postgresql://user@host/db``, ``otel://`` (OpenTelemetry through the global tracer provider); a plain
    path ending in ``.db``/``.sqlite``/``.jsonl`` also works. Several URLs separated by commas write to all
    of them (a :class:`~mcp_tracking.sinks.fanout.FanoutSink`; the first is read back). ``None`` means
    :func:`default_url`.
    """
    text = str(url) if url is not None else default_url()
    if "," in text and "://" in text:
        from mcp_tracking.sinks.fanout import FanoutSink

        parts = [part.strip() for part in text.split(",") if part.strip()]
        if len(parts) > 1 and all("://" in part for part in parts):  # not a comma inside one URL's options
            return FanoutSink(*(sink_from_url(part, read_only=read_only, **options) for part in parts))
    if "://" not in text:
        suffix = Path(text).suffix.lower()
        if suffix in {".jsonl", ".ndjson"}:
            return JSONLSink(text, **options)
        if suffix in {".db", ".sqlite", ".sqlite3"} or not suffix:
            return SQLiteSink(text, read_only=read_only, **options)
        raise ValueError(f"cannot tell the store of {text!r}: use sqlite:///, jsonl:///, postgresql:// or memory://")
    scheme = urlparse(text).scheme.lower()
    if scheme in {"sqlite", "sqlite3"}:
        return SQLiteSink(_path_of(text, scheme), read_only=read_only, **options)
    if scheme in {"jsonl", "ndjson"}:
        return JSONLSink(_path_of(text, scheme), **options)
    if scheme == "memory":
        return MemorySink()
    if scheme in {"postgres", "postgresql"} or scheme.startswith("postgresql+"):
        from mcp_tracking.sinks.postgres import PostgresSink  # lazy: optional extra

        return PostgresSink(text, read_only=read_only, **options)
    if scheme in {"otel", "opentelemetry"}:
        from mcp_tracking.sinks.otel import OTelSink  # lazy: optional extra

        return OTelSink(**options)
    raise ValueError(f"unknown store URL scheme {scheme!r} in {text!r}: use sqlite, jsonl, postgresql, otel or "
                     "memory")
