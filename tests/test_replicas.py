"""Three server processes behind a round-robin dispatcher, one Redis, one PostgreSQL.

20 agents x 30 calls over streamable HTTP (2026-07-28: no protocol session; each agent names its
conversation in ``_meta``), with scripted failures, identical retries, schema errors, repeats and tool
switches. Consecutive calls of one agent land on different replicas. Every session's events must be what
one single process records for the same script, every event stored once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import Counter

import anyio
import pytest
import uvicorn
from helpers import free_port, server_process
from mcp import Client

from mcp_tracking import AnalyticsClient, MemorySink

pytestmark = pytest.mark.anyio

AGENTS, CALLS, REPLICAS = 20, 30, 3
SESSION_KEY = "io.mcp-tracking/session_id"


def script(agent: int) -> list[tuple[str, dict]]:
    """30 calls: per round of 6, a success, a failure and its retry, a switch, a schema error and its retry."""
    calls: list[tuple[str, dict]] = []
    for k in range(CALLS // 6):
        calls += [
            ("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "limit": 1 + (k + agent) % 4}),
            ("get_benchmark_results_by_filters", {"model_name": f"nope-{agent}"}),
            ("get_benchmark_results_by_filters", {"model_name": f"nope-{agent}"}),
            ("list_models", {}),
            ("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "limit": "two"}),
            ("get_benchmark_results_by_filters", {"model_name": "gpt-4.1", "limit": "two"}),
        ]
    return calls


PHASE = {"tool_call_retry": 0, "wrong_tool_error": 1, "tool_call_started": 2, "hallucinated_tool_call": 3,
         "schema_validation_error": 4, "tool_call_failed": 5, "tool_call_completed": 5, "answer_complete": 6,
         "answer_incomplete": 6}


def shape(events: list[dict]) -> list[tuple]:
    """A session's tool-call events in a canonical order, with what detection decided."""
    out = []
    for e in events:
        name, md = e["event_name"], e["metadata"]
        if name not in PHASE:
            continue
        seq = md.get("call_sequence")
        key = seq[-1] if isinstance(seq, list) else seq
        detail: tuple = ()
        if name == "tool_call_retry":
            detail = (md["retry_attempt"], md["retry_reason"], md["original_call_sequence"])
        elif name == "wrong_tool_error":
            detail = (md["first_tool_name"], md["second_tool_name"], tuple(seq))
        elif name == "tool_call_started":
            detail = (md["tool_name"], md["is_retry"], md["retry_attempt"], md["previous_tool_name"])
        elif name == "tool_call_failed":
            detail = (md["error_type"],)
        out.append((key, PHASE[name], name, detail))
    return sorted(out)


class RoundRobin:
    """An HTTP dispatcher: each request to the next backend in turn (what a load balancer does to
    2026-07-28 traffic, which carries no session to stick to)."""

    def __init__(self, backends: list[int]) -> None:
        import httpx2

        self.backends = backends
        self.turn = itertools.count()
        self.hits: Counter[int] = Counter()
        self.http = httpx2.AsyncClient(timeout=30)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        port = self.backends[next(self.turn) % len(self.backends)]
        self.hits[port] += 1
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.lower() not in (b"host",
                                                                                                b"content-length")]
        url = f"http://127.0.0.1:{port}{scope['path']}" + (f"?{scope['query_string'].decode()}"
                                                            if scope["query_string"] else "")
        request = self.http.build_request(scope["method"], url, headers=headers, content=body)
        response = await self.http.send(request, stream=True)
        try:
            out_headers = [(k.encode(), v.encode()) for k, v in response.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection")]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


def start_dispatcher(app: RoundRobin, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("dispatcher did not start")
        time.sleep(0.02)
    return server, thread


async def run_agents(url_or_server, sessions: list[str]) -> None:
    async def agent(i: int) -> None:
        async with Client(url_or_server) as c:
            for name, args in script(i):
                await c.call_tool(name, args, meta={SESSION_KEY: sessions[i]})

    async with anyio.create_task_group() as tg:
        for i in range(AGENTS):
            tg.start_soon(agent, i)


async def reference() -> dict[int, list[tuple]]:
    """The same script against one in-process server with the default (local) state."""
    from replica_server import build

    sink = MemorySink()
    client = AnalyticsClient(sink, flush_interval=0.02, mcp_name="replicated")
    sessions = [f"ref-{i}" for i in range(AGENTS)]
    await run_agents(build(client), sessions)
    client.close()
    return {i: shape([e for e in sink.events if e["session_id"] == sessions[i]]) for i in range(AGENTS)}


@pytest.mark.timeout(240)
async def test_three_replicas_round_robin_match_one_process(pg_url, redis_url):
    import psycopg

    ports = [free_port() for _ in range(REPLICAS)]
    run_id = os.urandom(4).hex()
    env = {"MCP_TRACKING_URL": pg_url, "MCP_TRACKING_SHARED_STATE": redis_url}
    sessions = [f"conv-{run_id}-{i}" for i in range(AGENTS)]
    with contextlib.ExitStack() as stack:  # leaving it SIGTERMs each replica: each drains its queue
        for port in ports:
            stack.enter_context(server_process(["tests/replica_server.py", str(port)], port=port, env=env))
        app = RoundRobin(ports)
        dport = free_port()
        dispatcher, thread = start_dispatcher(app, dport)
        try:
            await run_agents(f"http://127.0.0.1:{dport}/mcp", sessions)
        finally:
            dispatcher.should_exit = True
            thread.join(10)
    calls = AGENTS * CALLS
    assert all(app.hits[p] >= calls / REPLICAS * 0.9 for p in ports), app.hits  # spread over every replica

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id, event_name, session_id, metadata FROM raw_analytics "
                            "WHERE session_id LIKE %s", (f"conv-{run_id}-%",)).fetchall()
    by_session: dict[str, list[dict]] = {}
    for _, name, sid, md in rows:
        by_session.setdefault(sid, []).append({"event_name": name, "metadata": md})
    ref = await reference()
    for i, sid in enumerate(sessions):
        evs = by_session[sid]
        seqs = sorted(e["metadata"]["call_sequence"] for e in evs if e["event_name"] == "tool_call_started")
        assert seqs == list(range(1, CALLS + 1)), sid  # gapless across replicas
        assert sum(e["event_name"] == "session_start" for e in evs) == 1
        # every call event once, and retries, switches and failures decided exactly as in one process
        assert shape(evs) == ref[i], sid
    total_retries = sum(1 for evs in by_session.values() for e in evs if e["event_name"] == "tool_call_retry")
    total_wrong = sum(1 for evs in by_session.values() for e in evs if e["event_name"] == "wrong_tool_error")
    assert total_retries == sum(1 for s in ref.values() for x in s if x[2] == "tool_call_retry") > AGENTS * 5
    assert total_wrong == sum(1 for s in ref.values() for x in s if x[2] == "wrong_tool_error") >= AGENTS * 5
