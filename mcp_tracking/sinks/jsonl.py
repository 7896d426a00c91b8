"""Append-only JSON lines: one event per line, easy to ship and to grep."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mcp_tracking._json import dumps, loads
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks.base import matches


class JSONLSink:
    """Appends each batch to ``path`` with one ``write`` call; ``fsync`` on flush when ``fsync=True``.

    Reading skips a torn last line (a crash mid-write) and repeated event ids (a replayed batch).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fh: Any = None
        self._lock = threading.Lock()

    def _file(self) -> Any:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        return self._fh

    def write(self, batch: Sequence[EventRecord]) -> None:
        data = b"".join(dumps(r.to_dict()) + b"\n" for r in batch)
        with self._lock:
            fh = self._file()
            fh.write(data)
            fh.flush()

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                if self.fsync:
                    os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                self._fh.close()
                self._fh = None

    def iter_events(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        mcp_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        seen: set[str] = set()
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn write at the end of the file
                try:
                    event = loads(line)
                except ValueError:
                    continue
                eid = event.get("event_id")
                if eid in seen:
                    continue
                seen.add(eid)
                if matches(event, session_id=session_id, user_id=user_id, mcp_name=mcp_name, since=since,
                           until=until):
                    yield event
