"""The writer process: the worker's processing and the store, off the server's interpreter.

With a SQLite or PostgreSQL store, the emitter's worker thread does not process and write the events itself:
it hands each batch, as JSON, to a child process that runs the processors (JSON-safe, redact, cap) and
writes to the store with the usual retry, backoff and spool. The server's interpreter keeps only the
queue and one ``orjson.dumps`` per batch, so the worker no longer takes the interpreter lock from the
server's threads for the processing and the store's driver (that was most of the latency tail).

**Lifecycle.** Started lazily, by the worker, on the first batch: :func:`main` run by the same interpreter
with this process's import path, its standard input and output as the two ends of the channel (never the
server's: a stdio server's stdout is its JSON-RPC stream), its standard error the server's, in a session of
its own (a terminal's Ctrl+C reaches the server, which then drains through it). It ends when its input
ends: when the server closes the emitter, exits, or dies, even by SIGKILL (the kernel closes the pipe):
it writes what it has received, then exits. No orphan outlives its work.

**Protocol.** Frames of ``>IB`` (payload length, kind) then the payload: ``C`` the configuration (JSON),
``E`` a batch of events (a JSON array whose items are the queue's argument tuples as they are, ``[event_name,
user_id, session_id, mcp_name, metadata, ts_us, queued_bytes]``, or a record's ``[event_name, user_id,
session_id, mcp_name, metadata, ts_us, event_id, schema_version]``), ``S`` sync (the writer answers ``A``
with its counters once everything sent before is written or spooled), ``Q`` quit (drain, answer ``A``,
exit). The writer answers ``A`` once too when it is ready.

**What can be lost.** The same as with the thread: events still in the server's queue when the server is
killed. Everything the server has handed over is written, even if the server dies right after. If the
writer dies, the worker notices on the next hand-over (a broken pipe, or no answer to a sync), counts the
events it had handed over since the last answer as ``failed_events`` (the worker asks for an answer at
least once a second and whenever 4,000 events are unconfirmed, and a flush always waits for one), and
goes on in the thread.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

FRAME = struct.Struct(">IB")
#: how long the worker waits for a new writer to say it is ready (imports, opening the store)
START_TIMEOUT = 120.0


@dataclass
class WriterSpec:
    """Everything the writer needs to rebuild the pipeline: the store (``kind`` and its constructor's
    arguments, see ``writer_spec()`` on the SQL sinks), the processors' settings, the emitter's options."""

    sink_kind: str
    sink_options: dict[str, Any]
    redact: bool = True
    keys_only: bool = False
    emitter: dict[str, Any] = field(default_factory=dict)


class WriterGone(OSError):
    """The writer process is not there (it could not start, or it died)."""


class WriterProcess:
    """The worker's end of the channel. Used by the emitter's worker thread only."""

    def __init__(self, spec: WriterSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending = 0  # events handed over since the last answer
        self.answered_at = time.monotonic()  # when the writer last answered (or was started)
        self.counters: dict[str, int] = {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        # the same imports as here: this copy of the package first (mcp_tracking/emit/writer.py -> the directory
        # holding mcp_tracking), then this process's path (a store class of yours is imported from it)
        paths = [str(Path(__file__).resolve().parents[2])]
        paths += [p for p in sys.path if p and os.path.isdir(p) and p not in paths]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from mcp_tracking.emit.writer import main; sys.exit(main())"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env, close_fds=True,
                start_new_session=True)
        except (OSError, ValueError) as exc:  # no interpreter to run (an embedded Python), no processes left
            raise WriterGone(f"the writer process could not start ({exc})") from exc
        _widen(self.proc.stdin)
        self._send(b"C", orjson.dumps(asdict(self.spec)))
        self._answer(START_TIMEOUT)

    def send(self, items: list[Any]) -> None:
        """Hand over a batch (see :func:`encode`)."""
        if self.proc is None:
            self.start()
        self._send(b"E", encode(items))
        self.pending += len(items)

    def sync(self, timeout: float | None = None) -> dict[str, int]:
        """Wait until everything handed over is written (or spooled, or given up); the writer's counters."""
        self._send(b"S", b"")
        return self._answer(timeout)

    def quit(self, timeout: float | None = None) -> dict[str, int]:
        """Drain, stop the writer and wait for it to exit."""
        proc = self.proc
        if proc is None:
            return self.counters
        try:
            self._send(b"Q", b"")
            return self._answer(timeout)
        finally:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout if timeout is not None else None)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.proc = None

    def abandon(self) -> None:
        """In a forked child: let go of the parent's writer without a word. Both pipe ends are pointed at
        /dev/null here (``dup2``), so the parent's writer still sees the end of its input when the parent goes,
        nothing this process's copies of the buffers may hold ever reaches the parent's stream, and the file
        objects, when collected, close descriptors that are still theirs."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            null = os.open(os.devnull, os.O_RDWR)
        except OSError:
            return
        try:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    if pipe is not None:
                        os.dup2(null, pipe.fileno())
                except (OSError, ValueError):
                    pass
        finally:
            os.close(null)
        proc.returncode = 0  # never waited for here: it is not this process's child

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.kill()
                proc.wait(5)
            except Exception:
                pass

    def _send(self, kind: bytes, payload: bytes) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise WriterGone("no writer process")
        try:
            proc.stdin.write(FRAME.pack(len(payload), kind[0]) + payload)
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise WriterGone(f"the writer process is gone ({exc})") from exc

    def _answer(self, timeout: float | None) -> dict[str, int]:
        proc = self.proc
        if proc is None or proc.stdout is None:
            raise WriterGone("no writer process")
        got: list[Any] = []

        def read() -> None:
            try:
                got.append(read_frame(proc.stdout))  # type: ignore[arg-type]
            except Exception as exc:
                got.append(exc)

        if timeout is None:
            read()
        else:  # a bounded wait: the read goes on a helper thread (a pipe read cannot time out by itself)
            reader = threading.Thread(target=read, name="mcp-tracking-writer-answer", daemon=True)
            reader.start()
            reader.join(timeout)
            if not got:
                raise WriterGone(f"the writer process did not answer within {timeout} s")
        answer = got[0]
        if isinstance(answer, BaseException) or answer is None or answer[0] != b"A":
            raise WriterGone(f"the writer process is gone ({answer!r})")
        self.counters = orjson.loads(answer[1])
        self.pending = 0
        self.answered_at = time.monotonic()
        return self.counters


#: the channel's pipe size where Linux lets us set it: a whole batch (~300 KB for 1,000 events) fits, so the
#: worker hands it over in one write while the writer is still busy with the one before
PIPE_SIZE = 1 << 20


def _widen(pipe: Any) -> None:
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ValueError, AttributeError, ImportError):  # not Linux, or over /proc/sys/fs/pipe-max-size
        pass


def encode(items: list[Any]) -> bytes:
    """A batch as JSON. An event whose metadata JSON cannot carry (non-str keys, objects) is made JSON-safe
    here first, as the processors would make it (rare: the request path queues JSON-shaped metadata)."""
    try:
        return orjson.dumps(items)
    except TypeError:
        from mcp_tracking.emit.processors import MakeJsonSafe
        from mcp_tracking.events import EventRecord

        safe = MakeJsonSafe()
        out = []
        for item in items:
            try:
                orjson.dumps(item)
            except TypeError:
                record = EventRecord(str(item[0]), item[1], item[2], item[3], item[4], ts_us=item[5])
                safe(record)
                item = [record.event_name, record.user_id, record.session_id, record.mcp_name,
                        orjson.loads(record.metadata_json or b"{}"), *list(item)[5:]]
                try:
                    orjson.dumps(item)
                except TypeError:  # an id that is not JSON either
                    item = [str(x) if x is not None and not isinstance(x, (str, int)) else x for x in item[:4]] \
                        + list(item)[4:]
            out.append(item)
        return orjson.dumps(out)


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes] | None:
    """The next frame ``(kind, payload)``; ``None`` at the end of the stream."""
    head = _read_exactly(stream, FRAME.size)
    if head is None:
        return None
    size, kind = FRAME.unpack(head)
    payload = _read_exactly(stream, size) if size else b""
    if payload is None:
        return None
    return bytes([kind]), payload


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# --- the writer process itself ----------------------------------------------------------------------------


def main() -> int:
    """The writer: read frames from stdin until it ends, answer on stdout, log to stderr.

    One thread: each batch is processed and written as it arrives (the emitter's own write step, with its
    retry, backoff and spool), so nothing in here contends for the interpreter; while no batch comes, the
    spool is replayed and the health row written on the emitter's schedule."""
    import io
    import select
    import signal

    channel_in = io.FileIO(sys.stdin.fileno(), "rb", closefd=False)  # unbuffered: select() sees all there is
    channel_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers may reach the channel
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server drains through us on Ctrl+C
    except (ValueError, OSError):
        pass

    def answer(counters: dict[str, int]) -> None:
        payload = orjson.dumps(counters)
        channel_out.write(FRAME.pack(len(payload), ord("A")) + payload)
        channel_out.flush()

    first = read_frame(channel_in)
    if first is None or first[0] != b"C":
        return 2
    from mcp_tracking.emit.emitter import Emitter
    from mcp_tracking.emit.processors import default_processors
    from mcp_tracking.events import EventRecord
    from mcp_tracking.sinks import sink_from_spec

    spec = WriterSpec(**orjson.loads(first[1]))
    emitter = Emitter(sink_from_spec(spec.sink_kind, spec.sink_options),
                      processors=default_processors(redact=spec.redact, keys_only=spec.keys_only),
                      **spec.emitter)
    idle = emitter.flush_interval

    def counters() -> dict[str, int]:
        return emitter.stats.as_dict()

    # The data is acyclic (JSON, records): reference counting frees it. The collector would only rescan the
    # thousands of objects each batch makes; it runs when idle instead, and every 200 batches.
    import gc

    gc.freeze()
    gc.disable()
    batches = 0
    answer({"ready": 1, "pid": os.getpid()})
    fd = channel_in.fileno()
    while True:
        if not select.select([fd], [], [], idle)[0]:
            emitter.upkeep()  # nothing came for a while: replay what is spooled, report health, collect
            gc.collect()
            continue
        frame = read_frame(channel_in)
        if frame is None or frame[0] == b"Q":  # the server closed us, exited or died: finish and go
            emitter.upkeep(health=True)
            emitter.close(timeout=None)
            if frame is not None:
                answer(counters())
            return 0
        kind, payload = frame
        if kind == b"E":
            batch: list[Any] = []
            for item in orjson.loads(payload):
                if len(item) == 7:  # the queue's argument tuple: (name, user, session, mcp, metadata, ts_us, bytes)
                    batch.append(item)
                else:
                    name, user, session, mcp, md, ts_us, event_id, version = item
                    batch.append(EventRecord(name, user, session, mcp, md, event_id=event_id, ts_us=ts_us,
                                             schema_version=version))
            emitter.write_now(batch)
            batches += 1
            if batches % 200 == 0:
                gc.collect()
        elif kind == b"S":
            emitter.upkeep()
            answer(counters())


if __name__ == "__main__":
    sys.exit(main())
