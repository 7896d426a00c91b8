"""The live tool manifest, and "did you mean" suggestions for names that are not in it.

Suggestions use rapidfuzz on *normalised* names: camelCase and kebab-case become snake_case words,
so ``getBenchmarkResults`` and ``get-benchmark-results`` both match ``get_benchmark_results``. The
score is the mean of a character ratio and a word-set ratio over those words (0-100); a name is
suggested when it scores at least :data:`SUGGESTION_CUTOFF`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process

#: Minimum score (0-100) for a suggestion. 60 keeps "get_benchmark_results_advanced" ->
#: "get_benchmark_results_by_filters" and rejects unrelated names such as "send_email" -> "list_models".
SUGGESTION_CUTOFF = 60.0
MAX_SUGGESTIONS = 3

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEP = re.compile(r"[^0-9a-zA-Z]+")


def normalise(name: str) -> str:
    """``getBenchmark-Results.v2`` -> ``get benchmark results v2``."""
    spaced = _CAMEL.sub(" ", name[:256])
    return " ".join(_SEP.sub(" ", spaced).lower().split())


def _score(a: str, b: str, **_: object) -> float:
    return (fuzz.ratio(a, b) + fuzz.token_set_ratio(a, b)) / 2.0


@dataclass(frozen=True, slots=True)
class Suggestion:
    name: str
    score: float


def suggest(name: str, available: Iterable[str], *, cutoff: float = SUGGESTION_CUTOFF,
            limit: int = MAX_SUGGESTIONS) -> list[Suggestion]:
    """Close names from ``available``, best first (empty when nothing is close)."""
    names = list(available)
    if not names or not isinstance(name, str):
        return []
    query = normalise(name)
    if not query:
        return []
    choices = {n: normalise(n) for n in names}
    found = process.extract(query, choices, scorer=_score, limit=limit, score_cutoff=cutoff)
    # ties: prefer the shorter, then alphabetical, so answers are stable
    found.sort(key=lambda m: (-m[1], len(m[2]), m[2]))
    return [Suggestion(m[2], round(float(m[1]), 1)) for m in found]


def unknown_tool_message(name: str, suggestions: list[Suggestion], available: list[str], *,
                         max_listed: int = 30) -> str:
    """The corrective answer an agent gets for a name that is not a tool."""
    shown = name if len(name) <= 120 else name[:117] + "..."
    text = f"Unknown tool {shown!r}."
    if suggestions:
        quoted = [repr(s.name) for s in suggestions]
        text += " Did you mean " + (quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1])
        text += "?"
    listed = sorted(available)
    if listed:
        more = f" (and {len(listed) - max_listed} more)" if len(listed) > max_listed else ""
        text += " Available tools: " + ", ".join(listed[:max_listed]) + more + "."
    else:
        text += " This server has no tools."
    return text
