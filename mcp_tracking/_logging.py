"""Logging that never floods: a broken sink must not turn into a log storm. Never prints to stdout."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("mcp_tracking")


class RateLimitedLog:
    """Logs each distinct key at most once per ``interval`` seconds, reporting how many were suppressed."""

    def __init__(self, log: logging.Logger = logger, interval: float = 30.0) -> None:
        self.log = log
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, msg: str, *args: object, level: int = logging.WARNING, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < self.interval:
                self._last[key] = (last, suppressed + 1)
                return
            if len(self._last) > 1000:
                self._last.clear()
            self._last[key] = (now, 0)
        if suppressed:
            msg = f"{msg} ({suppressed} similar messages suppressed)"
        self.log.log(level, msg, *args, exc_info=exc_info)


#: the package's warnings: each kind (key) at most once per 30 s, with a count of the ones suppressed meanwhile
warn_limited = RateLimitedLog()
