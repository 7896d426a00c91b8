"""Shared fixtures: real clients and stores, flushed before asserting (never sleep-and-hope)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tracking import AnalyticsClient
from mcp_tracking.sinks import MemorySink, SQLiteSink

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path_factory, monkeypatch) -> None:
    """Spools of the tests' failing stores go to a temporary directory, never the user's."""
    monkeypatch.setenv("MCP_TRACKING_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="memory")
def _memory() -> Iterator[tuple[AnalyticsClient, MemorySink]]:
    sink = MemorySink()
    client = AnalyticsClient(sink, mcp_name="drea", flush_interval=0.05)
    yield client, sink
    client.close(end_sessions=False)


@pytest.fixture(name="sqlite_path")
def _sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture(name="sqlite_client")
def _sqlite_client(sqlite_path: Path) -> Iterator[tuple[AnalyticsClient, SQLiteSink]]:
    sink = SQLiteSink(sqlite_path)
    client = AnalyticsClient(sink, mcp_name="drea", flush_interval=0.05)
    yield client, sink
    client.close(end_sessions=False)


PG_URL = os.environ.get("MCP_TRACKING_TEST_PG_URL")


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(name="pg_url")
def _pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (MCP_TRACKING_TEST_PG_URL; required in CI)."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("MCP_TRACKING_TEST_PG_URL is not set: CI must run the PostgreSQL tests")
        pytest.skip("MCP_TRACKING_TEST_PG_URL not set (a PostgreSQL server for the tests)")
    import psycopg

    name = "mt_" + os.urandom(6).hex()
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_URL, name)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


REDIS_URL = os.environ.get("MCP_TRACKING_TEST_REDIS_URL")


@pytest.fixture(name="redis_url")
def _redis_url() -> str:
    """A Redis server for the shared-state tests (MCP_TRACKING_TEST_REDIS_URL; required in CI)."""
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("MCP_TRACKING_TEST_REDIS_URL is not set: CI must run the Redis tests")
        pytest.skip("MCP_TRACKING_TEST_REDIS_URL not set (a Redis server for the tests)")
    return REDIS_URL


def names(events: list[dict], session_id: str | None = None) -> list[str]:
    return [e["event_name"] for e in events if session_id is None or e["session_id"] == session_id]


def python() -> str:
    return sys.executable
