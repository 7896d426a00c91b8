"""Answer completeness: opt-in checks on a tool's result.

A check is a callable ``(result) -> bool`` with a name; the built-ins are :func:`has_result_data`,
:func:`has_multiple_results` and :func:`includes_metrics`. ``result`` is the tool's value as the agent
receives it: structured content when the tool has it, else JSON parsed from its text, else the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_tracking._logging import warn_limited

Check = Callable[[Any], bool]

#: Fraction of checks that must pass for ``answer_complete`` (else ``answer_incomplete``).
DEFAULT_THRESHOLD = 0.75


def _named(name: str, fn: Check) -> Check:
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


def _items(result: Any) -> Sequence[Any] | None:
    """The list of results inside a result: itself, or the single list value of a ``{"result": [...]}`` wrapper."""
    if isinstance(result, (list, tuple)):
        return result
    if isinstance(result, Mapping):
        lists = [v for v in result.values() if isinstance(v, (list, tuple))]
        if len(lists) == 1:
            return lists[0]
    return None


def result_count(result: Any) -> int | None:
    items = _items(result)
    if items is not None:
        return len(items)
    if result is None or result == "" or result == {}:
        return 0
    return 1


def has_result_data(result: Any) -> bool:
    """The result is not empty (no ``None``, ``""``, ``[]`` or ``{}``)."""
    if result is None:
        return False
    if isinstance(result, (str, bytes, list, tuple, dict)):
        if not result:
            return False
        items = _items(result)
        return items is None or len(items) > 0
    return True


def has_multiple_results(result: Any) -> bool:
    """The result holds more than one item."""
    items = _items(result)
    return items is not None and len(items) > 1


def includes_metrics(*fields: str) -> Check:
    """Every listed field is present (in the result, or in each item of a list result)."""
    wanted = tuple(fields)

    def check(result: Any) -> bool:
        items = _items(result)
        rows = items if items is not None else [result]
        if not rows:
            return False
        return all(isinstance(r, Mapping) and all(f in r and r[f] is not None for f in wanted) for r in rows)

    return _named("includes_metrics", check)


@dataclass(frozen=True, slots=True)
class CompletenessReport:
    complete: bool
    score: float
    passed: list[str]
    failed: list[str]
    result_count: int | None


def check_name(check: Check) -> str:
    return getattr(check, "__name__", None) or type(check).__name__


def evaluate(checks: Iterable[Check], result: Any, *, threshold: float = DEFAULT_THRESHOLD) -> CompletenessReport:
    """Run each check; one that raises counts as failed (and is logged), never propagates."""
    passed: list[str] = []
    failed: list[str] = []
    for check in checks:
        name = check_name(check)
        try:
            ok = bool(check(result))
        except Exception:
            warn_limited(f"check-{name}", "mcp_tracking: completeness check %s raised; counted as failed", name,
                      exc_info=True)
            ok = False
        (passed if ok else failed).append(name)
    total = len(passed) + len(failed)
    score = round(len(passed) / total, 4) if total else 1.0
    return CompletenessReport(score >= threshold, score, passed, failed, result_count(result))
