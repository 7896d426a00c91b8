"""PostgreSQL: the production store (psycopg 3, ``pip install 'mcp-tracking[postgres]'``).

Table ``raw_analytics(id uuid primary key, user_id text, session_id text, mcp_name text, event_name text,
metadata jsonb, created_at timestamptz)``, the design's table, so its SQL runs unchanged, plus the
extracted columns the metrics read (``tool_name``, ``params_hash``, ``execution_time_ms``, ``success``,
``schema_version``). The schema is created idempotently (under an advisory lock, so several processes can
start at once) and its version recorded in ``mcp_tracking_meta``.

Each batch is one transaction: a ``COPY`` straight into the table; if any of its ids is already stored
(a replayed batch), that transaction is rolled back and the batch goes through a temporary staging table and
``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING``, so a replay stores nothing twice. A dropped connection (a server
restart) raises from ``write``; the emitter keeps the batch and retries with backoff, and the next write
reconnects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from mcp_tracking._json import dumps_str, loads
from mcp_tracking.events import EventRecord, format_us
from mcp_tracking.sinks.base import StoreError
from mcp_tracking.sinks.rows import COLUMNS, iter_rows
from mcp_tracking.sinks.sql import where_clause

try:
    import psycopg
    from psycopg.types.json import Jsonb  # noqa: F401  (psycopg with JSON support)
except ImportError as exc:  # pragma: no cover - optional extra
    raise ImportError("PostgreSQL support needs psycopg 3: pip install 'mcp-tracking[postgres]'") from exc

STORE_SCHEMA_VERSION = 1

DDL = (
    """CREATE TABLE IF NOT EXISTS raw_analytics (
        id uuid PRIMARY KEY,
        user_id text,
        session_id text,
        mcp_name text,
        event_name text NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL,
        tool_name text,
        params_hash text,
        execution_time_ms double precision,
        success boolean,
        schema_version integer NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX IF NOT EXISTS raw_analytics_session ON raw_analytics (session_id, event_name, success)",
    "CREATE INDEX IF NOT EXISTS raw_analytics_user ON raw_analytics (user_id)",
    "CREATE INDEX IF NOT EXISTS raw_analytics_event ON raw_analytics (event_name, tool_name, execution_time_ms)",
    "CREATE INDEX IF NOT EXISTS raw_analytics_created ON raw_analytics (created_at)",
    "CREATE TABLE IF NOT EXISTS mcp_tracking_meta (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mcp_tracking_health (process text PRIMARY KEY, updated_at timestamptz NOT NULL, "
    "stats jsonb NOT NULL)",
)
_COPY_DIRECT = f"COPY raw_analytics ({', '.join(COLUMNS)}) FROM STDIN"
_COPY_STAGE = f"COPY raw_analytics_stage ({', '.join(COLUMNS)}) FROM STDIN"
_MERGE = (f"INSERT INTO raw_analytics ({', '.join(COLUMNS)}) "
          f"SELECT {', '.join(COLUMNS)} FROM raw_analytics_stage ON CONFLICT (id) DO NOTHING")
_LOCK_KEY = 0x6D6370747261636B  # "mcptrack": serialises schema creation across processes


class PostgresStoreError(StoreError):
    """The database is unreachable, not ours, or newer than this package."""


def _rows(batch: Sequence[EventRecord]) -> Iterator[tuple[Any, ...]]:
    """The batch's rows, with NUL characters (which PostgreSQL text and jsonb cannot hold) dropped. A
    generator: ``write`` sends each row as it is built, while the server stores the ones before it."""
    for row in iter_rows(batch):
        if ("\\u0000" in row[5] or "\x00" in row[1] or "\x00" in row[4]
                or (row[2] is not None and "\x00" in row[2]) or (row[3] is not None and "\x00" in row[3])):
            md_json = row[5]
            if "\\u0000" in md_json:  # jsonb cannot hold NUL characters: drop them from every string
                md_json = dumps_str(_strip_nul(loads(md_json)))
            row = (row[0], _clean(row[1]), _clean(row[2]), _clean(row[3]), _clean(row[4]), md_json, row[6],
                   _clean(row[7]), _clean(row[8]), *row[9:])
        yield row


def _clean(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters."""
    return text.replace("\x00", "") if text is not None and "\x00" in text else text


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


class PostgresSink:
    """Writes batches into ``raw_analytics`` in PostgreSQL; idempotent on event id.

    Args:
        url: a libpq URL (``postgresql://user:pass@host:5432/db``); ``postgresql+psycopg://`` also accepted.
        read_only: open read-only sessions (the CLI's mode); writes raise.
        connect_timeout: seconds to wait for a connection.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False, connect_timeout: float = 10.0) -> None:
        if url.startswith("postgresql+"):
            url = "postgresql://" + url.split("://", 1)[1]
        elif url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        self.url = url
        self.read_only = read_only
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresSink({_redact_url(self.url)!r})"

    def writer_spec(self) -> tuple[str, dict[str, Any]] | None:
        """How a writer process opens this store (``None``: a subclass, or a write of its own, stays here)."""
        if type(self) is not PostgresSink or "write" in vars(self) or self.read_only:
            return None
        return "postgresql", {"url": self.url, "connect_timeout": self.connect_timeout}

    def _connect(self, *, read_only: bool = False) -> Any:
        try:
            conn = psycopg.connect(self.url, connect_timeout=max(1, int(self.connect_timeout)), autocommit=False)
        except psycopg.OperationalError as exc:
            raise PostgresStoreError(f"cannot connect to {_redact_url(self.url)}: {str(exc).strip()}") from exc
        if read_only:
            conn.read_only = True
        return conn

    # -- write side ------------------------------------------------------------------------------

    def _writer(self) -> Any:
        if self.read_only:
            raise PostgresStoreError("this PostgreSQL sink is read-only")
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            ensure_schema(conn)
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS raw_analytics_stage "
                            "(LIKE raw_analytics INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            conn.commit()
            self._conn = conn
        return conn

    def write(self, batch: Sequence[EventRecord]) -> None:
        with self._lock:
            conn = self._writer()
            try:
                try:  # the common case: COPY straight into the table, one transaction
                    with conn.cursor() as cur, cur.copy(_COPY_DIRECT) as copy:
                        write_row = copy.write_row
                        for row in _rows(batch):
                            write_row(row)
                    conn.commit()
                    return
                except psycopg.errors.UniqueViolation:
                    conn.rollback()  # a replayed batch: store only what is new
                with conn.cursor() as cur:
                    with cur.copy(_COPY_STAGE) as copy:
                        for row in _rows(batch):
                            copy.write_row(row)
                    cur.execute(_MERGE)
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    pass
                if conn.broken or conn.closed:
                    self._conn = None  # reconnect on the next write
                raise

    def flush(self) -> None:
        return None  # each batch is committed by write()

    def write_health(self, process: str, stats: dict[str, Any]) -> None:
        """Record one process's emitter counters (``mcp-tracking status`` shows them)."""
        with self._lock:
            conn = self._writer()
            try:
                conn.execute("INSERT INTO mcp_tracking_health VALUES (%s, now(), %s) ON CONFLICT (process) "
                             "DO UPDATE SET updated_at = excluded.updated_at, stats = excluded.stats",
                             (process, dumps_str(stats)))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def read_health(self) -> list[dict[str, Any]]:
        conn = self.connect_read()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('mcp_tracking_health')")
                if cur.fetchone()[0] is None:
                    return []
                cur.execute("SELECT process, updated_at, stats FROM mcp_tracking_health ORDER BY updated_at DESC")
                return [{"process": p, "updated_at": u.isoformat(), **s} for p, u, s in cur.fetchall()]
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    # -- read side -------------------------------------------------------------------------------

    def connect_read(self) -> Any:
        conn = self._connect(read_only=self.read_only)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('raw_analytics')")
                if cur.fetchone()[0] is None:
                    raise PostgresStoreError(f"{_redact_url(self.url)} has no raw_analytics table")
        except BaseException:
            conn.close()
            raise
        return conn

    def iter_events(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        mcp_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        where, params = where_clause(session_id=session_id, user_id=user_id, mcp_name=mcp_name, since=since,
                                     until=until, placeholder="%s")
        conn = self.connect_read()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id::text, event_name, user_id, session_id, mcp_name, created_at, metadata, "
                            f"schema_version FROM raw_analytics {where} ORDER BY created_at, id", params)
                for row in cur:
                    yield {
                        "event_id": row[0], "event_name": row[1], "user_id": row[2], "session_id": row[3],
                        "mcp_name": row[4], "created_at": format_us(_us(row[5])), "metadata": row[6] or {},
                        "schema_version": row[7],
                    }
        finally:
            conn.close()

    def count(self) -> int:
        conn = self.connect_read()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM raw_analytics")
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    @contextmanager
    def read_snapshot(self) -> Iterator[tuple[Any, Any | None]]:
        """Two read connections (the metrics run the two halves of their work at once; each half is one
        statement, so each sees one snapshot); the second is ``None`` when it cannot be opened."""
        conn = self.connect_read()
        second = None
        try:
            try:
                second = self._connect(read_only=self.read_only)
            except Exception:
                second = None
            yield conn, second
        finally:
            for c in (second, conn):
                if c is not None:
                    c.close()

    def time_span(self, filters: dict[str, Any]) -> tuple[datetime, datetime] | None:
        where, params = where_clause(**filters, placeholder="%s")
        conn = self.connect_read()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT MIN(created_at), MAX(created_at) FROM raw_analytics {where}", params)
                lo, hi = cur.fetchone()
        finally:
            conn.close()
        return None if lo is None else (lo, hi)


def _us(dt: datetime) -> int:
    from mcp_tracking.events import datetime_to_us

    return datetime_to_us(dt)


def ensure_schema(conn: Any) -> None:
    """Create the table, indexes and version record if missing (idempotent, safe from many processes)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for stmt in DDL:
            cur.execute(stmt)
        cur.execute("SELECT value FROM mcp_tracking_meta WHERE key = 'store_schema_version'")
        row = cur.fetchone()
        if row is None:
            cur.execute("INSERT INTO mcp_tracking_meta VALUES ('store_schema_version', %s) ON CONFLICT DO NOTHING",
                        (str(STORE_SCHEMA_VERSION),))
        elif int(row[0]) > STORE_SCHEMA_VERSION:
            conn.rollback()
            raise PostgresStoreError(f"database schema version {row[0]} is newer than this mcp-tracking "
                                     f"({STORE_SCHEMA_VERSION}); upgrade")
    conn.commit()


def _redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
