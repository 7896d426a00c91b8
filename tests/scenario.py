"""One scripted agent session, every kind of event, for every door (the event contract's test).

The same four tools are registered on each framework; :data:`STEPS` is what the agent calls, each step with
the events it must produce. :func:`expected` turns the steps a door can take into the exact
``(event_name, call_sequence)`` list, numbering the tool calls as the contract does (a hallucinated name
takes no number).
"""

from __future__ import annotations

from typing import Any

ROWS = [{"item": f"row-{i}", "score": 0.5 + i / 100} for i in range(20)]
_ticks = {"n": 0}


def search(query: str, limit: int = 5) -> list[dict[str, Any]]:
    """Search the rows."""
    return ROWS[: int(limit)]


def lookup(item_id: str) -> dict[str, Any]:
    """One row by id."""
    if item_id == "nope":
        raise ValueError(f"no item {item_id!r}")
    return {"item": item_id}


def list_items() -> list[str]:
    """The ids of every row (always the same answer)."""
    return [r["item"] for r in ROWS[:3]]


def status() -> dict[str, int]:
    """A job's progress (a new answer on every call: polling it is not a retry)."""
    _ticks["n"] += 1
    return {"done": _ticks["n"]}


TOOLS = [search, lookup, list_items, status]


def mcpserver(client: Any, **options: Any) -> Any:
    """An ``MCPServer`` with the four tools, instrumented with ``client``."""
    from mcp.server.mcpserver import MCPServer

    from mcp_tracking import instrument

    server = MCPServer("scenario")
    for tool in TOOLS:
        server.add_tool(tool)
    instrument(server, client, completeness=completeness(), **options)
    return server


async def run_on_server(server: Any, mode: str = "auto") -> list[tuple[bool, str]]:
    """The scripted session's calls through a real in-process client: ``(is_error, text)`` per call."""
    from mcp import Client

    answers = []
    async with Client(server, mode=mode) as c:
        for _, tool, args, _ in steps(SERVER_STEPS):
            r = await c.call_tool(tool, args)
            answers.append((r.is_error, r.content[0].text if r.content else ""))
    return answers


def completeness() -> dict[str, list[Any]]:
    from mcp_tracking import has_multiple_results, has_result_data

    return {"search": [has_result_data, has_multiple_results]}


# (label, tool, arguments, events of this call; "*" marks the call's own sequence number)
STEPS: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("unknown", "serach", {"query": "x"}, ["hallucinated_tool_call"]),
    ("refused", "search", {"query": "a", "limit": "ten"}, ["tool_call_started", "schema_validation_error"]),
    ("refused-retry", "search", {"query": "a", "limit": "ten"},
     ["tool_call_started", "tool_call_retry", "schema_validation_error"]),
    ("observe", "search", {"query": "a", "limit": "3"},
     ["tool_call_started", "schema_validation_error", "tool_call_completed", "answer_complete"]),
    ("raises", "lookup", {"item_id": "nope"}, ["tool_call_started", "tool_call_failed"]),
    ("retry", "lookup", {"item_id": "nope"}, ["tool_call_started", "tool_call_retry", "tool_call_failed"]),
    ("switch", "list_items", {}, ["wrong_tool_error", "tool_call_started", "tool_call_completed"]),
    ("same-result", "list_items", {}, ["tool_call_started", "tool_call_retry", "tool_call_completed"]),
    ("poll-1", "status", {}, ["tool_call_started", "tool_call_completed"]),
    ("poll-2", "status", {}, ["tool_call_started", "tool_call_completed"]),
    ("success", "search", {"query": "b"}, ["tool_call_started", "tool_call_completed", "answer_complete"]),
]

SERVER_STEPS = [s[0] for s in STEPS]


def steps(labels: list[str]) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    by = {s[0]: s for s in STEPS}
    return [by[label] for label in labels]


def expected(labels: list[str], *, start: bool = True, end: str | None = "session_completed") -> list[tuple]:
    """``(event_name, call_sequence)`` of a session that takes the ``labels`` steps."""
    out: list[tuple] = [("session_start", None)] if start else []
    seq = 0
    for _, _, _, names in steps(labels):
        if "tool_call_started" in names:
            seq += 1
        for name in names:
            if name == "hallucinated_tool_call":
                out.append((name, None))
            elif name == "wrong_tool_error":
                out.append((name, [seq - 1, seq]))
            else:
                out.append((name, seq))
    if end is not None:
        out += [(end, None), ("session_end", None)]
    return out


def shape(events: list[dict]) -> list[tuple]:
    return [(e["event_name"], e["metadata"].get("call_sequence")) for e in events]


def comparable(events: list[dict]) -> list[tuple[str, dict[str, Any]]]:
    """Events with what differs between two runs of the same calls taken out (ids, times, durations,
    result sizes, the session-start facts of the transport)."""
    out = []
    for e in events:
        md = dict(e["metadata"])
        for key in ("execution_time_ms", "total_duration_ms", "result_size", "params_hash"):
            md.pop(key, None)
        if e["event_name"] == "session_start":
            md = {}
        out.append((e["event_name"], md))
    return out
