"""An in-memory sink: for tests (yours and ours) and short-lived scripts."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from mcp_tracking._json import loads
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks.base import matches


class MemorySink:
    """Keeps stored events in a list, in write order; idempotent on ``event_id``.

    Example:
        sink = MemorySink()
        client = AnalyticsClient(sink=sink)
        ...
        client.flush()
        assert [e["event_name"] for e in sink.events] == ["session_start", "tool_call_started", ...]
    """

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False

    def write(self, batch: Sequence[EventRecord]) -> None:
        with self._lock:
            for record in batch:
                if record.event_id in self._ids:
                    continue
                self._ids.add(record.event_id)
                event = record.to_dict()
                if record.metadata_json is not None:  # the stored form, as a database would return it
                    event["metadata"] = loads(record.metadata_json)
                self._events.append(event)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    @property
    def events(self) -> list[dict[str, Any]]:
        """A snapshot of every stored event (dicts), oldest first."""
        with self._lock:
            return list(self._events)

    def names(self, session_id: str | None = None) -> list[str]:
        """Event names in order, optionally for one session."""
        return [e["event_name"] for e in self.events if session_id is None or e["session_id"] == session_id]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._ids.clear()

    def iter_events(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        mcp_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        for event in self.events:
            if matches(event, session_id=session_id, user_id=user_id, mcp_name=mcp_name, since=since, until=until):
                yield event

    def __len__(self) -> int:
        return len(self._events)
