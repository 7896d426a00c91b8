"""One client, several stores: ``FanoutSink(SQLiteSink(...), OTelSink())``.

Each batch goes to every sink. When one of them fails, the batch is raised back to the emitter (which
retries or spools it) but the sinks that already took it are remembered by the batch's first and last
event ids, so the retry reaches only the sinks that missed it: nothing is lost, and a sink that cannot
deduplicate (OpenTelemetry) never sees an event twice.

The first sink is the *primary*: reading back (``iter_events``), metrics and health go to it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from mcp_tracking._logging import warn_limited
from mcp_tracking.events import EventRecord
from mcp_tracking.sinks.base import LiveSpans, Sink

MAX_REMEMBERED_BATCHES = 1024

#: what the primary sink answers for the whole fan-out (reading back, metrics, health)
_DELEGATED = frozenset({"iter_events", "dialect", "read_snapshot", "time_span", "write_health", "read_health"})


class FanoutError(RuntimeError):
    """Some sinks of a fan-out failed to take a batch (the others have it)."""


class FanoutSink:
    """Write every batch to several sinks; the first is the primary (read back, metrics, health)."""

    def __init__(self, *sinks: Sink) -> None:
        if not sinks:
            raise ValueError("FanoutSink needs at least one sink")
        for s in sinks:
            if not isinstance(s, Sink):
                raise TypeError(f"{s!r} is not a sink (it needs write, flush and close)")
        self.sinks: tuple[Sink, ...] = sinks
        # batch key -> indexes of the sinks that already took it (only for batches that partly failed)
        self._delivered: OrderedDict[tuple[str, str, int], set[int]] = OrderedDict()

    @property
    def primary(self) -> Sink:
        return self.sinks[0]

    def live_spans(self) -> Any:
        """The sink among these that wants per-call context (the OpenTelemetry sink), if any."""
        for s in self.sinks:
            if isinstance(s, LiveSpans):
                consumer = s.live_spans()
                if consumer is not None:
                    return consumer
        return None

    def __getattr__(self, name: str) -> Any:
        if name in _DELEGATED:
            return getattr(self.sinks[0], name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"FanoutSink({', '.join(repr(s) for s in self.sinks)})"

    def write(self, batch: Sequence[EventRecord]) -> None:
        key = (batch[0].event_id, batch[-1].event_id, len(batch))
        done = self._delivered.pop(key, set())
        failed: list[tuple[Sink, BaseException]] = []
        for i, sink in enumerate(self.sinks):
            if i in done:
                continue
            try:
                sink.write(batch)
                done.add(i)
            except Exception as exc:
                failed.append((sink, exc))
        if failed:
            self._delivered[key] = done
            while len(self._delivered) > MAX_REMEMBERED_BATCHES:
                self._delivered.popitem(last=False)
            names = ", ".join(f"{s!r}: {type(e).__name__}: {e}" for s, e in failed)
            raise FanoutError(f"{len(failed)} of {len(self.sinks)} sinks failed ({names})") from failed[0][1]

    def flush(self) -> None:
        self._each("flush")

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str) -> None:
        errors: list[BaseException] = []
        for sink in self.sinks:
            try:
                getattr(sink, method)()
            except Exception as exc:
                warn_limited(f"fanout-{method}", "mcp_tracking: %r failed to %s", sink, method, exc_info=True)
                errors.append(exc)
        if errors:
            raise FanoutError(f"{len(errors)} sinks failed to {method}") from errors[0]
