"""Drain on the way out: interpreter exit (``atexit``) and SIGTERM.

SIGTERM's default action kills the process without running ``atexit``, so a server stopped by its
supervisor (or by an MCP client closing a stdio server) would lose what is still queued. The first
client created in the main thread installs a SIGTERM handler that drains every live client within
``MCP_TRACKING_EXIT_TIMEOUT`` seconds (default 5), then hands the signal on: to the handler that was
there before, or to the default action (the process still terminates by SIGTERM). A host that installs
its own SIGTERM handler later replaces ours; its graceful shutdown then ends in ``atexit``, which drains
too. SIGINT raises ``KeyboardInterrupt`` and ends in ``atexit`` as well. SIGKILL cannot be caught:
what was queued and not yet written is lost (at most one flush interval of events, 0.5 s by default).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

_drainers: list[Callable[[float], None]] = []
_installed = False
_lock = threading.Lock()


def exit_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("MCP_TRACKING_EXIT_TIMEOUT", "5")))
    except ValueError:
        return 5.0


def register_drainer(fn: Callable[[float], None]) -> None:
    """Run ``fn(timeout)`` at exit and on SIGTERM (registration order)."""
    with _lock:
        _drainers.append(fn)


def drain_all() -> None:
    timeout = exit_timeout()
    for fn in list(_drainers):
        try:
            fn(timeout)
        except Exception:
            pass


atexit.register(drain_all)


def install_sigterm_handler() -> bool:
    """Install the draining SIGTERM handler once, from the main thread. ``True`` if installed now."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return False
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):  # pragma: no cover - no signals on this platform
        return False

    def on_sigterm(signum: int, frame: Any) -> None:
        drain_all()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):  # pragma: no cover
        return False
    _installed = True
    return True
