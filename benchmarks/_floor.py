"""The floor under any tracker on this machine: two reference middlewares for an ``MCPServer``.

``NoopMiddleware`` only awaits ``call_next``: what the SDK's middleware hook costs by itself.
``MinimalMiddleware`` does the least a tracker that answers agents can do per call: look the tool up in the
live manifest, validate the arguments with the same compiled validators mcp-tracking uses, time the call
and queue one tuple, which a background thread throws away every half second (the emitter's interval). It
keeps no session state, detects nothing, builds no event and stores nothing. No real tracker can cost less
than it, so ``bench_overhead.py`` measures it in the same rounds as the real thing: the ratio of
mcp-tracking to it is the part of the overhead that tracking's own work adds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from mcp_tracking.core.validation import ValidatorCache, validate


class NoopMiddleware:
    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx)


class MinimalMiddleware:
    def __init__(self, server: Any) -> None:
        self.tools = server._tool_manager
        self.validators = ValidatorCache()
        self.queue: deque[tuple[Any, ...]] = deque()
        self.rejected = 0
        threading.Thread(target=self._drain, name="minimal-drain", daemon=True).start()

    def _drain(self) -> None:
        queue = self.queue
        while True:
            time.sleep(0.5)
            while queue:
                queue.popleft()

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params = ctx.params
        name, args = params.get("name"), params.get("arguments") or {}
        tool = self.tools.get_tool(name)
        if tool is not None and validate(self.validators.get(name, tool.parameters), args) is not None:
            self.rejected += 1  # (never happens here: the benchmark's arguments are valid)
        started = time.perf_counter()
        result = await call_next(ctx)
        self.queue.append((ctx.session, name, args, started, time.perf_counter(), result.get("isError")))
        return result
