"""What should a tool author change? Ranked recommendations derived from the stored events, each with its
evidence (counts, example sessions) and never without it.

    from mcp_tracking.metrics.advice import advise
    for item in advise("sqlite:///mcp_tracking.db"): print(item.title)

Every rule needs :data:`MIN_EVIDENCE` occurrences (3) before it says anything; a store with less evidence gets
no advice, and says so. The rules and their thresholds:

==================  ===========================================================================================
``alias``           a name that is not a tool, asked for 3+ times, after which the agents called one tool in at
                    least half of the cases (the outcome tool aside: that is giving up): alias
                    (``instrument(..., aliases={"asked": "meant"})``) or rename
``unknown_name``    the same without one tool the agents turned to: say in the descriptions what exists
``parameter``       a field of a tool refused 3+ times for the same reason (a type, a missing field, a value
                    out of range, a field the schema does not have): accept that shape, or describe the field
``confusion``       3+ switches from one failed tool to the same other tool: their descriptions do not tell
                    them apart
``retry_loop``      one tool called 3+ times identically in a session, in 3+ sessions: its error does not tell
                    the agent what to change
``polling``         3+ identical repeats of a success that returned a new answer (not retries): declare the
                    tool in ``polling_tools``
``timeout``         3+ calls of a tool that timed out
``failing_tool``    a tool that failed in at least half of 5+ finished calls
``incomplete``      3+ incomplete answers of a tool, at least a quarter of its checked answers
``never_called``    a tool of the server's list (as the newest ``hallucinated_tool_call`` recorded it) that no
                    agent called in 10+ sessions: its name or description does not say what it is for
==================  ===========================================================================================
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from mcp_tracking.events import OUTCOME_TOOL_NAME
from mcp_tracking.metrics import compute_metrics, open_source, tool_facts
from mcp_tracking.sinks.base import Sink

MIN_EVIDENCE = 3
MIN_SHARE = 0.5
MIN_FAILING_CALLS = 5
MIN_SESSIONS_NEVER_CALLED = 10
MIN_INCOMPLETE_SHARE = 0.25


@dataclass
class Advice:
    kind: str
    subject: str  # the tool (or tool.field, or the unknown name) it is about
    title: str  # one line: what to change
    detail: str  # why: the evidence in words
    evidence: dict[str, Any] = field(default_factory=dict)
    sessions: list[str] = field(default_factory=list)  # example session ids, to look at
    score: int = 0  # how many occurrences back it (the ranking)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def advise(source: Sink | str | os.PathLike[str], *, mcp_name: str | None = None, since: datetime | None = None,
           until: datetime | None = None) -> list[Advice]:
    """The recommendations for the events in scope, most evidence first (see the module docs for the rules)."""
    sink = open_source(source)
    result = compute_metrics(sink, mcp_name=mcp_name, since=since, until=until).to_dict()
    filters: dict[str, Any] = {"session_id": None, "user_id": None, "mcp_name": mcp_name, "since": since,
                               "until": until}
    rows, available = tool_facts(sink, filters)
    out: list[Advice] = []
    out += _unknown_names(result)
    out += _parameters(result)
    out += _confusion(result)
    out += _retry_loops(result)
    out += _from_facts(rows)
    out += _failing(result)
    out += _never_called(result, available)
    return sorted(out, key=lambda a: (-a.score, a.kind, a.subject))


def _unknown_names(result: dict[str, Any]) -> list[Advice]:
    out = []
    for u in result["unknown_tools"]:
        n, name = u["count"], u["requested_tool_name"]
        if n < MIN_EVIDENCE:
            continue
        nxt = {tool: k for tool, k in u["called_next"].items() if tool != OUTCOME_TOOL_NAME}  # giving up
        meant, times = next(iter(nxt.items()), (None, 0))
        evidence = {"asked": n, "called_next": nxt, "suggested": u["suggested"]}
        if meant is not None and times >= MIN_SHARE * n:
            out.append(Advice(
                "alias", name, f"Alias {name!r} to {meant!r}, or rename {meant!r}",
                f"Agents asked for {name!r} {n} times; right after the error they called {meant!r} in {times} of "
                f"them. Route the name with instrument(..., aliases={{{name!r}: {meant!r}}}), or rename the tool "
                f"to what agents expect.", evidence, score=n))
        else:
            out.append(Advice(
                "unknown_name", name, f"Agents keep asking for {name!r}, which is not a tool",
                f"{n} calls to {name!r} and no tool the agents turned to afterwards"
                + (f" (we suggested {u['suggested']!r})" if u["suggested"] else "")
                + ": say in your tools' descriptions what they cover, or add the tool agents look for.",
                evidence, score=n))
    return out


_FIELD_WORDS = {
    "type": ("is sent with the wrong type", "accept that shape (coerce it) or state the type in the field's "
             "description"),
    "required": ("is missing", "give it a default, or say in the description that it is required and what to "
                 "put in it"),
    "unexpectedProperty": ("is sent but is not in the schema", "add the field, or rename the one agents mean"),
    "additionalProperties": ("is sent but the schema forbids it", "add the field, or rename the one agents mean"),
    "enum": ("gets a value outside its choices", "list the choices in the description, or accept the value"),
}


def _parameters(result: dict[str, Any]) -> list[Advice]:
    out = []
    for h in result["schema_hotspots"]:
        n = h["count"]
        if n < MIN_EVIDENCE:
            continue
        subject = f"{h['tool_name']}.{h['field'] or '(arguments)'}"
        what, fix = _FIELD_WORDS.get(h["kind"], (f"breaks '{h['kind']}'", "describe the constraint in the field's "
                                                  "description, or loosen it"))
        out.append(Advice("parameter", subject, f"{subject} {what} ({n} times)",
                          f"{n} refusals, e.g. {h['example_error']!r}: {fix}.",
                          {"count": n, "kind": h["kind"], "example": h["example_error"]}, score=n))
    return out


def _confusion(result: dict[str, Any]) -> list[Advice]:
    out = []
    for c in result["tool_confusion_pairs"]:
        if c["kind"] != "wrong_tool" or c["count"] < MIN_EVIDENCE:
            continue
        a, b, n = c["from_tool"], c["to_tool"], c["count"]
        out.append(Advice("confusion", f"{a} / {b}", f"Tell {a!r} and {b!r} apart in their descriptions",
                          f"{n} times an agent's call to {a!r} failed and it switched to {b!r}: the descriptions do "
                          f"not say which one fits which request.", {"switches": n}, score=n))
    return out


def _retry_loops(result: dict[str, Any]) -> list[Advice]:
    by_tool: dict[str, list[str]] = defaultdict(list)
    for loop in result["retry_loops"]:
        by_tool[str(loop["tool_name"])].append(str(loop["session_id"]))
    out = []
    for tool, sessions in by_tool.items():
        if len(sessions) < MIN_EVIDENCE:
            continue
        out.append(Advice("retry_loop", tool, f"Make {tool!r}'s errors say what to change",
                          f"In {len(sessions)} sessions an agent called {tool!r} 3 or more times with the same "
                          f"arguments: its answer did not tell it what to do differently.",
                          {"sessions": len(sessions)}, sorted(sessions)[:5], score=len(sessions)))
    return out


def _from_facts(rows: list[tuple[Any, ...]]) -> list[Advice]:
    polling: dict[str, tuple[int, str | None]] = {}
    timeouts: dict[str, tuple[int, str | None]] = {}
    answers: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # tool -> [incomplete, checked]
    example: dict[str, str | None] = {}
    for name, tool, detail, n, sid in rows:
        if tool is None:
            continue
        tool = str(tool)
        if name == "tool_call_retry" and detail == "repeated_after_success":
            polling[tool] = (polling.get(tool, (0, None))[0] + int(n), sid)
        elif name == "tool_call_failed" and detail == "timeout":
            timeouts[tool] = (timeouts.get(tool, (0, None))[0] + int(n), sid)
        elif name in ("answer_incomplete", "answer_complete"):
            answers[tool][1] += int(n)
            if name == "answer_incomplete":
                answers[tool][0] += int(n)
                example[tool] = sid
    out = []
    for tool, (n, sid) in polling.items():
        if n >= MIN_EVIDENCE:
            out.append(Advice("polling", tool, f"Declare {tool!r} a polling tool",
                              f"{n} identical repeats of a successful {tool!r} call returned a new answer: it is "
                              f"polled, and counts as retries until declared (polling_tools=[{tool!r}]).",
                              {"repeats": n}, [sid] if sid else [], score=n))
    for tool, (n, sid) in timeouts.items():
        if n >= MIN_EVIDENCE:
            out.append(Advice("timeout", tool, f"{tool!r} times out ({n} calls)",
                              f"{n} calls of {tool!r} ran past their timeout: make it faster, return partial "
                              f"results, or raise the timeout.", {"timeouts": n}, [sid] if sid else [], score=n))
    for tool, (bad, checked) in answers.items():
        if bad >= MIN_EVIDENCE and bad >= MIN_INCOMPLETE_SHARE * checked:
            sid = example.get(tool)
            out.append(Advice("incomplete", tool, f"{tool!r} often answers incompletely ({bad} of {checked})",
                              f"{bad} of {checked} checked answers of {tool!r} failed its completeness checks: "
                              f"return the data the agent asked for, or an error that says why not.",
                              {"incomplete": bad, "checked": checked}, [sid] if sid else [], score=bad))
    return out


def _failing(result: dict[str, Any]) -> list[Advice]:
    out = []
    for r in result["tool_failure_rate"]:
        if r["calls"] >= MIN_FAILING_CALLS and r["failed"] >= MIN_EVIDENCE and (r["value"] or 0) >= 0.5:
            tool = r["tool_name"]
            out.append(Advice("failing_tool", tool, f"{tool!r} fails in {r['failed']} of {r['calls']} calls",
                              f"{tool!r} failed in {round(100 * r['value'])}% of its finished calls: say its "
                              "preconditions in the description, or make its errors say what to fix.",
                              {"failed": r["failed"], "calls": r["calls"]}, score=r["failed"]))
    return out


def _never_called(result: dict[str, Any], available: list[str] | None) -> list[Advice]:
    sessions = result["totals"]["sessions"]
    if not available or sessions < MIN_SESSIONS_NEVER_CALLED:
        return []
    called = {t["tool_name"] for t in result["tool_popularity"]["tools"]} | {OUTCOME_TOOL_NAME}
    return [Advice("never_called", tool, f"No agent called {tool!r}",
                   f"{tool!r} is on the server's tool list but none of {sessions} sessions called it: its name or "
                   "description does not say what it is for (or it is not needed).",
                   {"sessions": sessions}, score=MIN_EVIDENCE)
            for tool in sorted(set(available) - called)]
