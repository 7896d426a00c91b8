"""The spool: where batches go when the store is down, so nothing is lost, in order.

When a batch cannot be written within ``spool_after`` seconds, the emitter appends it (processed, ready to
store) to an append-only segment file in the spool directory, and keeps spooling later batches so their
order is kept. The worker replays the segments, oldest first, as soon as the store accepts writes again, and
a new process replays what an earlier one left (the directory is keyed by the store). Event ids make a
replay idempotent in SQLite and PostgreSQL: a segment replayed twice (a crash mid-replay) stores nothing
twice. A torn last line (a crash mid-append) is skipped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mcp_tracking._json import dumps, loads
from mcp_tracking.events import EventRecord

SEGMENT_MAX_BYTES = 8 << 20


def default_spool_dir(sink_key: str) -> Path:
    """``$MCP_TRACKING_SPOOL_DIR/<store key>``, else a per-user directory under the system temp dir."""
    base = os.environ.get("MCP_TRACKING_SPOOL_DIR")
    root = Path(base) if base else Path(tempfile.gettempdir()) / f"mcp-tracking-spool-{os.getuid()}"
    return root / hashlib.sha256(sink_key.encode()).hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _encode(r: EventRecord) -> bytes:
    md = r.metadata_json if r.metadata_json is not None else dumps(r.metadata)
    head = dumps({"id": r.event_id, "n": r.event_name, "u": r.user_id, "s": r.session_id, "m": r.mcp_name,
                  "t": r.ts_us, "v": r.schema_version})
    return head[:-1] + b',"md":' + md + b"}\n"


def _decode(line: bytes) -> EventRecord:
    d = loads(line)
    r = EventRecord(d["n"], d["u"], d["s"], d["m"], d["md"], event_id=d["id"], schema_version=d["v"])
    r.ts_us = d["t"]
    r.metadata_json = dumps(d["md"])
    return r


class Spool:
    """Append-only segment files in one directory; thread-safe; survives restarts."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()
        self._current: Path | None = None
        self._seq = int.from_bytes(os.urandom(3), "big") << 20  # later segments of a pid sort later

    def _segments(self) -> list[Path]:
        """Segments this process may replay: its own, and those of processes that are gone (oldest first).

        Names are ``segment-<pid>-<sequence>.jsonl``: a live process's segments are its own business.
        """
        if not self.dir.exists():
            return []
        mine = os.getpid()
        out = []
        for seg in self.dir.glob("segment-*.jsonl"):
            try:
                pid = int(seg.stem.split("-")[1])
            except (IndexError, ValueError):
                continue
            if pid == mine or not _alive(pid):
                out.append(seg)
        return sorted(out, key=lambda p: (p.stat().st_mtime if p.exists() else 0, p.name))

    def pending(self) -> bool:
        """Whether anything waits to be replayed."""
        return bool(self._segments())

    def append(self, batch: list[EventRecord]) -> None:
        """Append a processed batch; fsynced, so it survives a crash of this process."""
        data = b"".join(_encode(r) for r in batch)
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            seg = self._current
            if seg is None or not seg.exists() or seg.stat().st_size > SEGMENT_MAX_BYTES:
                self._seq += 1
                seg = self._current = self.dir / f"segment-{os.getpid()}-{self._seq:012d}.jsonl"
            with open(seg, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

    def oldest(self) -> tuple[Path, Iterator[EventRecord]] | None:
        """The oldest segment and its events (a torn last line is skipped)."""
        with self._lock:
            segments = self._segments()
            if not segments:
                return None
            seg = segments[0]
            if seg == self._current:
                self._current = None  # new appends go to a new segment while this one is replayed
        return seg, self._read(seg)

    @staticmethod
    def _read(seg: Path) -> Iterator[EventRecord]:
        with open(seg, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    return
                try:
                    yield _decode(line)
                except (ValueError, KeyError):
                    continue

    def done(self, seg: Path) -> None:
        """A segment was fully written to the store."""
        with self._lock:
            try:
                seg.unlink()
            except FileNotFoundError:
                pass
