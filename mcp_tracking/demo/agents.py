"""Scripted agent sessions against the demo server: every event type, from real MCP calls.

Each session is one real client connection (in-process, alternating the 2026-07-28 and handshake
protocol eras on mcp 2.x) that follows one of the scripts below, the way agents behave in practice:
some go straight to the answer, some hallucinate a tool name and take the suggestion, some send a
string where an integer belongs and fix it, some switch tools after an exception, retry a flaky feed,
loop on the same failing call and give up.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio

Call = Callable[[str, dict[str, Any]], Coroutine[Any, Any, tuple[bool, str]]]
USER_KEY = "io.mcp-tracking/user_id"


@asynccontextmanager
async def connect(server: Any, *, mode: str, user: str) -> AsyncIterator[Call]:
    """A real in-process MCP client connection; yields ``call(name, args) -> (is_error, text)``."""
    client_cls: Any = getattr(importlib.import_module("mcp"), "Client", None)  # mcp 1.x has none
    if client_cls is not None and hasattr(client_cls, "call_tool"):
        meta: Any = {USER_KEY: user}
        async with client_cls(server, mode=mode) as client:
            async def call(name: str, args: dict[str, Any]) -> tuple[bool, str]:
                r = await client.call_tool(name, args, meta=meta)
                return bool(r.is_error), " ".join(getattr(c, "text", "") for c in r.content)

            yield call
    else:
        memory: Any = importlib.import_module("mcp.shared.memory")  # mcp 1.x only

        async with memory.create_connected_server_and_client_session(server) as session:
            async def call(name: str, args: dict[str, Any]) -> tuple[bool, str]:
                r = await session.call_tool(name, args)
                return bool(r.isError), " ".join(getattr(c, "text", "") for c in r.content)

            yield call


async def straight(call: Call, rng: random.Random) -> None:
    await call("list_benchmarks", {})
    await call("get_benchmark_results_by_filters", {"benchmark": rng.choice(["mmlu", "gsm8k", "humaneval"]),
                                                    "limit": 5})
    await call("report_task_outcome", {"success": True, "summary": "found the top models"})


async def hallucinate_then_recover(call: Call, rng: random.Random) -> None:
    await call("get_benchmark_results_advanced", {"model_name": "gpt-4.1", "benchmark": "mmlu"})
    await call("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "benchmark": "mmlu"})


async def camel_case_guess(call: Call, rng: random.Random) -> None:
    await call("getLeaderboard", {"benchmark": "gpqa"})
    await call("get_leaderboard", {"benchmark": "gpqa", "top_k": 3})


async def schema_mistake(call: Call, rng: random.Random) -> None:
    await call("get_benchmark_results_by_filters", {"benchmark": "gsm8k", "limit": "five"})
    await call("get_benchmark_results_by_filters", {"benchmark": "gsm8k", "limit": 5})


async def missing_required(call: Call, rng: random.Random) -> None:
    await call("compare_models", {"model_names": ["gpt-4.1", "claude-sonnet-4"]})
    await call("compare_models", {"model_names": ["gpt-4.1", "claude-sonnet-4"], "benchmark": "swe-bench"})


async def wrong_tool(call: Call, rng: random.Random) -> None:
    await call("get_benchmark_results", {"model_name": "GPT 4.1"})
    await call("get_benchmark_results_by_filters", {"model_name": "gpt-4.1"})


async def flaky_retry(call: Call, rng: random.Random) -> None:
    model = rng.choice(["gpt-4.1", "deepseek-v3", "qwen3-235b"])
    for _ in range(3):
        failed, _ = await call("get_live_pricing", {"model_name": model})
        if not failed:
            break


async def retry_loop_abandon(call: Call, rng: random.Random) -> None:
    for _ in range(3):
        await call("get_benchmark_results", {"model_name": "gpt-5-ultra"})


async def extra_field(call: Call, rng: random.Random) -> None:
    await call("get_leaderboard", {"benchmark": "mmlu", "top_k": 3, "include_costs": True})


async def overlapping(call: Call, rng: random.Random) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "compare_models", {"model_names": ["gpt-4.1", "gemini-2.5-pro"], "benchmark": "mmlu"})
        tg.start_soon(call, "get_leaderboard", {"benchmark": "humaneval"})
        tg.start_soon(call, "get_benchmark_results", {"model_name": "mistral-large-2"})


async def incomplete_answer(call: Call, rng: random.Random) -> None:
    await call("get_benchmark_results_by_filters", {"benchmark": "swe-bench", "min_score": 99})
    await call("get_benchmark_results_by_filters", {"benchmark": "swe-bench", "min_score": 40})


async def gives_up(call: Call, rng: random.Random) -> None:
    await call("search_benchmarks", {"query": "best coding model"})
    await call("find_model_scores", {"model": "gpt-4.1"})
    await call("report_task_outcome", {"success": False, "summary": "could not find a search tool"})


SCRIPTS: dict[str, Callable[[Call, random.Random], Awaitable[None]]] = {
    "straight": straight,
    "hallucinate_then_recover": hallucinate_then_recover,
    "camel_case_guess": camel_case_guess,
    "schema_mistake": schema_mistake,
    "missing_required": missing_required,
    "wrong_tool": wrong_tool,
    "flaky_retry": flaky_retry,
    "retry_loop_abandon": retry_loop_abandon,
    "extra_field": extra_field,
    "overlapping": overlapping,
    "incomplete_answer": incomplete_answer,
    "gives_up": gives_up,
}


async def run_sessions(server: Any, *, sessions: int = 48, seed: int = 7, concurrency: int = 4,
                       progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Run ``sessions`` scripted sessions (every script at least once), ``concurrency`` at a time."""
    rng = random.Random(seed)
    names = list(SCRIPTS)
    plan = [names[i % len(names)] for i in range(sessions)]
    rng.shuffle(plan)
    limiter = anyio.Semaphore(concurrency)
    done = 0

    async def one(i: int, script: str) -> None:
        nonlocal done
        async with limiter:
            mode = "auto" if i % 2 == 0 else "legacy"
            async with connect(server, mode=mode, user=f"user_{i % 9 + 1}") as call:
                await SCRIPTS[script](call, random.Random(seed * 1000 + i))
        done += 1
        if progress is not None:
            progress(done, sessions)

    async with anyio.create_task_group() as tg:
        for i, script in enumerate(plan):
            tg.start_soon(one, i, script)
    return plan
