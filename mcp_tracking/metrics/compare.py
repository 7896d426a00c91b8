"""Did a change help? The metrics of two windows (two time ranges, or two releases), each change with a 95%
confidence interval, and a plain verdict.

    from mcp_tracking.metrics.compare import Window, compare_windows
    result = compare_windows("sqlite:///mcp_tracking.db", Window(until=cutover), Window(since=cutover))
    for change in result.changes: print(change.metric, change.verdict)

**How.** The unit of evidence is the session: calls within one session are not independent, so every
interval is computed over sessions. A session belongs to the window its ``session_start`` falls in (and, with
a release, to that release), and counts with all its events, even those after the window's end: a session is
never split in two. Sessions without a ``session_start`` are not compared.

- Rates whose denominator is sessions (task completion: completed of started; recovery: recovered of
  sessions with errors) are proportions of sessions: the difference's interval is Newcomb's hybrid score
  interval (his method 10, from two Wilson intervals), which holds for small counts and near 0 or 1.
- Rates over calls or answers (semantic clarity, retry rate, schema violation rate, answer completeness),
  per-session means (hallucinations per session) and steps-to-goal are ratios of sums over sessions: the
  interval is a percentile bootstrap over sessions (each window resampled on its own, 2,000 times, seeded, so
  the same data give the same interval), or, past :data:`BOOTSTRAP_MAX_SESSIONS` sessions, the delta method
  for a ratio of sums (the same interval to within resampling noise at that size, in milliseconds).
- **Verdict.** ``better`` / ``worse`` when the interval excludes 0 (in the metric's good direction or not);
  ``no significant change`` when it includes 0; ``too little data`` when either window has fewer than
  ``min_sessions`` sessions (default :data:`MIN_SESSIONS`) in the metric's denominator: no interval is claimed.
- Latency per step is not compared here (it is a per-call measure across tools: compare the per-tool
  percentiles of ``mcp-tracking report`` for each window).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from mcp_tracking.metrics import open_source, session_index
from mcp_tracking.metrics.model import SessionStart, Totals
from mcp_tracking.sinks.base import Sink

MIN_SESSIONS = 10
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_MAX_SESSIONS = 4000
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Window:
    """One side of a comparison: a time range (``since <= created_at < until``), a release, or both."""

    since: datetime | None = None
    until: datetime | None = None
    release: str | None = None

    def label(self) -> str:
        parts = []
        if self.release is not None:
            parts.append(f"release {self.release}")
        if self.since is not None or self.until is not None:
            a = self.since.isoformat(timespec="seconds") if self.since else "…"
            b = self.until.isoformat(timespec="seconds") if self.until else "…"
            parts.append(f"{a} to {b}")
        return ", ".join(parts) or "all events"


@dataclass
class Change:
    metric: str
    before: float | None
    after: float | None
    difference: float | None  # after - before
    low: float | None  # the 95% interval of the difference
    high: float | None
    method: str  # "newcomb", "bootstrap", "delta" or "none"
    verdict: str  # "better", "worse", "no significant change", "too little data"
    n_before: int  # the metric's denominator (sessions) in each window
    n_after: int


@dataclass
class Comparison:
    before: Window
    after: Window
    sessions_before: int
    sessions_after: int
    changes: list[Change] = field(default_factory=list)

    def change(self, metric: str) -> Change:
        return next(c for c in self.changes if c.metric == metric)

    def to_dict(self) -> dict[str, Any]:
        return {"before": {"window": self.before.label(), "sessions": self.sessions_before},
                "after": {"window": self.after.label(), "sessions": self.sessions_after},
                "changes": [asdict(c) for c in self.changes]}


# --- intervals ------------------------------------------------------------------------------------


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for the proportion ``x / n``."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcomb(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``(p2 - p1, low, high)``: Newcomb's hybrid score interval (method 10) for a difference of proportions."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p2 - p1
    return d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


Pair = tuple[float, float]  # (numerator, denominator) of one session


def _ratio(pairs: Sequence[Pair]) -> float | None:
    den = sum(d for _, d in pairs)
    return None if den == 0 else sum(n for n, _ in pairs) / den


def _delta_variance(pairs: Sequence[Pair]) -> float | None:
    """The delta-method variance of a ratio of sums over independent sessions."""
    k = len(pairs)
    mean_den = sum(d for _, d in pairs) / k
    r = _ratio(pairs)
    if r is None or k < 2 or mean_den == 0:
        return None
    resid = [n - r * d for n, d in pairs]
    s2 = sum(e * e for e in resid) / (k - 1)
    return s2 / (k * mean_den * mean_den)


def ratio_difference(before: Sequence[Pair], after: Sequence[Pair], *, seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float | None, float | None, float | None, str]:
    """``(difference, low, high, method)`` for a ratio of sums over sessions, after minus before."""
    r1, r2 = _ratio(before), _ratio(after)
    if r1 is None or r2 is None:
        return None, None, None, "none"
    d = r2 - r1
    if len(before) + len(after) > BOOTSTRAP_MAX_SESSIONS:
        v1, v2 = _delta_variance(before), _delta_variance(after)
        if v1 is None or v2 is None:
            return d, None, None, "none"
        half = Z95 * math.sqrt(v1 + v2)
        return d, d - half, d + half, "delta"
    rng = random.Random(seed)
    diffs: list[float] = []
    for _ in range(resamples):
        b = _ratio(rng.choices(before, k=len(before)))
        a = _ratio(rng.choices(after, k=len(after)))
        if a is not None and b is not None:
            diffs.append(a - b)
    if len(diffs) < resamples // 2:
        return d, None, None, "none"
    diffs.sort()
    lo = diffs[int(0.025 * (len(diffs) - 1))]
    hi = diffs[math.ceil(0.975 * (len(diffs) - 1))]
    return d, lo, hi, "bootstrap"


# --- the metrics compared ---------------------------------------------------------------------------

#: metric -> (how a session contributes (numerator, denominator) to a ratio of sums, higher is better)
RATIOS: dict[str, tuple[Callable[[Totals], Pair], bool]] = {
    "semantic_clarity_score": (lambda t: (t.tool_calls - t.schema_errors - t.wrong_tool_errors - t.retries,
                                          t.tool_calls), True),
    "retry_rate": (lambda t: (t.retries, t.tool_calls), False),
    "schema_violation_rate": (lambda t: (t.schema_errors, t.tool_calls), False),
    "hallucination_rate": (lambda t: (t.hallucinations, 1), False),
    "answer_completeness_rate": (lambda t: (t.answers_complete, t.answers_complete + t.answers_incomplete), True),
    "steps_to_goal": (lambda t: (t.tool_calls, 1) if t.successful_sessions else (0, 0), False),
}
#: metric -> (numerator, denominator) in sessions, higher is better
PROPORTIONS: dict[str, tuple[Callable[[Totals], tuple[int, int]], bool]] = {
    "task_completion_rate": (lambda t: (t.completed_sessions, t.started_sessions), True),
    "recovery_rate": (lambda t: (t.recovered_sessions, t.sessions_with_errors), True),
}


def _verdict(d: float | None, low: float | None, high: float | None, higher_is_better: bool) -> str:
    if d is None or low is None or high is None:
        return "too little data"
    if low <= 0 <= high:
        return "no significant change"
    improved = (low > 0) == higher_is_better
    return "better" if improved else "worse"


def compare_sessions(before: Sequence[Totals], after: Sequence[Totals], *, min_sessions: int = MIN_SESSIONS,
                     seed: int = 0) -> list[Change]:
    """Each compared metric's change between two lists of per-session counts."""
    changes: list[Change] = []
    for metric, (of, higher) in PROPORTIONS.items():
        x1, n1 = map(sum, zip(*(of(t) for t in before), strict=True)) if before else (0, 0)
        x2, n2 = map(sum, zip(*(of(t) for t in after), strict=True)) if after else (0, 0)
        p1 = x1 / n1 if n1 else None
        p2 = x2 / n2 if n2 else None
        if min(n1, n2) < min_sessions:
            thin = None if p1 is None or p2 is None else p2 - p1
            changes.append(Change(metric, p1, p2, thin, None, None, "none", "too little data", n1, n2))
            continue
        diff, low, high = newcomb(x1, n1, x2, n2)
        changes.append(Change(metric, p1, p2, diff, low, high, "newcomb", _verdict(diff, low, high, higher), n1, n2))
    for metric, (of_pair, higher) in RATIOS.items():
        b = [of_pair(t) for t in before]
        a = [of_pair(t) for t in after]
        b = [p for p in b if p[1]]  # sessions that take part in this metric
        a = [p for p in a if p[1]]
        r1, r2 = _ratio(b), _ratio(a)
        if min(len(b), len(a)) < min_sessions:
            thin = None if r1 is None or r2 is None else r2 - r1
            changes.append(Change(metric, r1, r2, thin, None, None, "none", "too little data", len(b), len(a)))
            continue
        rd, rlow, rhigh, method = ratio_difference(b, a, seed=seed)
        changes.append(Change(metric, r1, r2, rd, rlow, rhigh, method, _verdict(rd, rlow, rhigh, higher),
                              len(b), len(a)))
    order = ["task_completion_rate", "steps_to_goal", "semantic_clarity_score", "retry_rate", "hallucination_rate",
             "schema_violation_rate", "recovery_rate", "answer_completeness_rate"]
    return sorted(changes, key=lambda c: order.index(c.metric))


def _utc(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _aware(window: Window) -> Window:
    """Naive datetimes are UTC (as everywhere in the package)."""
    return Window(_utc(window.since), _utc(window.until), window.release)


def in_window(start: SessionStart, window: Window) -> bool:
    """Whether a session (its ``session_start`` time and release) belongs to ``window``."""
    at, release = start.at, start.release
    return ((window.since is None or at >= window.since) and (window.until is None or at < window.until)
            and (window.release is None or release == window.release))


def compare_windows(source: Sink | str | os.PathLike[str], before: Window, after: Window, *,
                    mcp_name: str | None = None, min_sessions: int = MIN_SESSIONS, seed: int = 0) -> Comparison:
    """The metrics of ``before`` and ``after`` and each change with its 95% interval (see the module docs)."""
    before, after = _aware(before), _aware(after)
    starts, totals = session_index(open_source(source), mcp_name=mcp_name)
    b = [totals[sid] for sid, start in starts.items() if sid in totals and in_window(start, before)]
    a = [totals[sid] for sid, start in starts.items() if sid in totals and in_window(start, after)]
    return Comparison(before, after, len(b), len(a), compare_sessions(b, a, min_sessions=min_sessions, seed=seed))
