"""The spool: where batches go when the store is down, so nothing is lost, in order.

When a batch cannot be written within ``spool_after`` seconds, the emitter appends it (processed, ready to
store) to an append-only segment file in the spool directory, and keeps spooling later batches so their
order is kept. The worker replays the segments, oldest first, as soon as the store accepts writes again, and
a new process replays what an earlier one left (the directory is keyed by the store). Event ids make a
replay idempotent in SQLite and PostgreSQL: a segment replayed twice (a crash mid-replay) stores nothing
twice. A torn last line (a crash mid-append) is skipped.

**Private by default.** The spool holds events as they will be stored, so it is the user's alone:

- the default location is the user's state directory (``$XDG_STATE_HOME/mcp-tracking/spool``, else
  ``~/.local/state/mcp-tracking/spool``), or ``$MCP_TRACKING_SPOOL_DIR``; a per-store subdirectory. When the
  state directory cannot be created, ``<tmp>/mcp-tracking-<uid>/spool`` (checked the same way);
- directories are created 0700 and files 0600; a directory owned by another user, or open to others, is
  refused (the emitter then runs without a spool, and says so in the log);
- every line carries a keyed mark (BLAKE2b, 16 bytes, with a 0600 key file beside the segments), and only
  lines with a valid mark, in segments that are the current user's private files, are replayed: a segment
  planted by someone else is set aside (renamed ``rejected-...``) and a line without its mark skipped, both
  counted as ``forged``, never written to the store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from mcp_tracking._json import dumps, loads
from mcp_tracking._logging import warn_limited
from mcp_tracking.events import EventRecord

SEGMENT_MAX_BYTES = 8 << 20
_MARK_BYTES = 16


class SpoolError(OSError):
    """The spool directory cannot be used safely (another user's, or open to others)."""


def spool_root() -> Path:
    """``$MCP_TRACKING_SPOOL_DIR``, else the user's state directory."""
    base = os.environ.get("MCP_TRACKING_SPOOL_DIR")
    if base:
        return Path(base)
    state = os.environ.get("XDG_STATE_HOME")
    root = Path(state) if state else Path.home() / ".local" / "state"
    return root / "mcp-tracking" / "spool"


def default_spool_dir(sink_key: str) -> Path:
    """The spool for one store: ``<spool_root()>/<store key>``."""
    return spool_root() / hashlib.sha256(sink_key.encode()).hexdigest()[:16]


def fallback_spool_dir(sink_key: str) -> Path:
    """Where the spool goes when the user's state directory cannot be created (a service user without a
    writable home): ``<tmp>/mcp-tracking-<uid>/spool/<store key>``, private like the default (a directory of
    that name created by someone else is refused, never used)."""
    import tempfile

    return (Path(tempfile.gettempdir()) / f"mcp-tracking-{os.getuid()}" / "spool"
            / hashlib.sha256(sink_key.encode()).hexdigest()[:16])


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its missing parents) 0700 and check it is ours and closed to others."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            pass
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SpoolError(f"spool directory {path} is not a plain directory")
    if info.st_uid != os.getuid():
        raise SpoolError(f"spool directory {path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: close it
    return path


def _key(directory: Path) -> bytes:
    """The spool's mark key: 32 random bytes in ``<dir>/.key`` (0600), created once."""
    path = directory / ".key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SpoolError(f"spool key {path} is not the current user's private file")
    key = path.read_bytes()
    if len(key) != 32:
        raise SpoolError(f"spool key {path} is damaged")
    return key


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
    return head[:-1] + b',"md":' + md + b"}"


def _decode(line: bytes) -> EventRecord:
    d = loads(line)
    r = EventRecord(d["n"], d["u"], d["s"], d["m"], d["md"], event_id=d["id"], schema_version=d["v"])
    r.ts_us = d["t"]
    r.metadata_json = dumps(d["md"])
    return r


class Spool:
    """Append-only segment files in one private directory; thread-safe; survives restarts.

    Raises :class:`SpoolError` when the directory cannot be made private (see the module's docs)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = private_dir(Path(directory))
        self._mac_key = _key(self.dir)
        self._lock = threading.Lock()
        self._current: Path | None = None
        self._seq = int.from_bytes(os.urandom(3), "big") << 20  # later segments of a pid sort later
        self.forged = 0  # lines refused on replay: no valid mark, or a segment not ours

    def _mark(self, line: bytes) -> bytes:
        return hmac.new(self._mac_key, line, hashlib.blake2b).digest()[:_MARK_BYTES].hex().encode()

    def _segments(self) -> list[Path]:
        """Segments this process may replay: its own, and those of processes that are gone (oldest first),
        owned by the current user.

        Names are ``segment-<pid>-<sequence>.jsonl``: a live process's segments are its own business.
        """
        if not self.dir.exists():
            return []
        mine, uid = os.getpid(), os.getuid()
        out = []
        for seg in self.dir.glob("segment-*.jsonl"):
            try:
                pid = int(seg.stem.split("-")[1])
                info = seg.lstat()
            except (IndexError, ValueError, OSError):
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
                self.forged += 1
                warn_limited("spool-foreign", "mcp_tracking: spool segment %s is not the current user's private "
                             "file; set aside as rejected-%s, never replayed", seg, seg.name)
                try:
                    seg.rename(seg.with_name(f"rejected-{seg.name}"))
                except OSError:
                    pass
                continue
            if pid == mine or not _alive(pid):
                out.append(seg)
        return sorted(out, key=lambda p: (p.stat().st_mtime if p.exists() else 0, p.name))

    def pending(self) -> bool:
        """Whether anything waits to be replayed."""
        return bool(self._segments())

    def append(self, batch: list[EventRecord]) -> None:
        """Append a processed batch; fsynced, so it survives a crash of this process. All or nothing: on a
        failure (a full disk) the segment is cut back to where it was, and removed if that leaves it empty."""
        lines = [_encode(r) for r in batch]
        data = b"".join(self._mark(line) + b" " + line + b"\n" for line in lines)
        with self._lock:
            seg = self._current
            if seg is None or not seg.exists() or seg.stat().st_size > SEGMENT_MAX_BYTES:
                self._seq += 1
                seg = self._current = self.dir / f"segment-{os.getpid()}-{self._seq:012d}.jsonl"
            fd = os.open(seg, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                before = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except BaseException:
                    try:
                        os.ftruncate(fd, before)
                        if before == 0:
                            seg.unlink()
                            self._current = None
                    except OSError:
                        pass
                    raise
            finally:
                os.close(fd)

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

    def _read(self, seg: Path) -> Iterator[EventRecord]:
        with open(seg, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    return
                mark, _, body = line[:-1].partition(b" ")
                if len(mark) != 2 * _MARK_BYTES or not hmac.compare_digest(mark, self._mark(body)):
                    self.forged += 1
                    warn_limited("spool-forged", "mcp_tracking: a spooled line in %s has no valid mark; not replayed",
                                 seg)
                    continue
                try:
                    yield _decode(body)
                except (ValueError, KeyError):
                    continue

    def done(self, seg: Path) -> None:
        """A segment was fully written to the store."""
        with self._lock:
            try:
                seg.unlink()
            except FileNotFoundError:
                pass
