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
  for a ratio of sums (the same interval to within resampling noise at that size). The delta method needs only
  five sums per window and metric (k, Σn, Σd, Σn², Σd², Σnd): the SQL stores make them in the database in one
  pass over the per-session counts (SQLite as two halves of the sessions on two connections at once), so the
  per-session rows never reach Python; each metric's share of a session is written once (:class:`Share`) and
  read both as Python and as SQL. Small windows (a bound, the session starts in their time ranges, says at
  most :data:`BOOTSTRAP_MAX_SESSIONS`) skip that pass: only their sessions are read, through the session index.
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

from mcp_tracking.metrics import dialect_of, open_source, session_index
from mcp_tracking.metrics.model import SessionStart, Totals, run_halves
from mcp_tracking.sinks.base import Sink, SQLStore

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


@dataclass(frozen=True)
class Share:
    """How one session takes part in a metric: a numerator and a denominator, each a sum of its counts
    (:class:`Totals` field names, ``""`` for the constant 1) times a coefficient; ``gate`` (a 0/1 field)
    multiplies the numerator. Written once, read twice: in Python over :class:`Totals`, and as SQL over the
    dialects' per-session rows, so the two paths compare the same thing."""

    num: tuple[tuple[str, int], ...]
    den: tuple[tuple[str, int], ...]
    gate: str = ""

    def of(self, t: Totals) -> Pair:
        def value(terms: tuple[tuple[str, int], ...]) -> int:
            return sum(c * (getattr(t, f) if f else 1) for f, c in terms)
        n = value(self.num) * (getattr(t, self.gate) if self.gate else 1)
        return n, value(self.den)

    def sql(self) -> tuple[str, str]:
        def expr(terms: tuple[tuple[str, int], ...]) -> str:
            return "(" + " + ".join(f"{c} * {SQL_FIELDS[f] if f else 1}" for f, c in terms) + ")"
        n = expr(self.num) + (f" * {SQL_FIELDS[self.gate]}" if self.gate else "")
        return n, expr(self.den)


#: the session-level Totals fields as the dialects' per-session columns (PER_SESSION) give them
SQL_FIELDS = {**{f: f for f in ("tool_calls", "retries", "schema_errors", "wrong_tool_errors", "hallucinations",
                                "answers_complete", "answers_incomplete")},
              "started_sessions": "has_start", "completed_sessions": "(has_start * has_completed)",
              "successful_sessions": "ok", "sessions_with_errors": "has_error",
              "recovered_sessions": "(has_error * ok)"}

#: metric -> (its share per session, higher is better). Proportions of sessions (0/1 shares) get Newcomb's
#: interval; ratios of sums, the bootstrap or the delta method.
PROPORTIONS: dict[str, tuple[Share, bool]] = {
    "task_completion_rate": (Share((("completed_sessions", 1),), (("started_sessions", 1),)), True),
    "recovery_rate": (Share((("recovered_sessions", 1),), (("sessions_with_errors", 1),)), True),
}
RATIOS: dict[str, tuple[Share, bool]] = {
    "semantic_clarity_score": (Share((("tool_calls", 1), ("schema_errors", -1), ("wrong_tool_errors", -1),
                                      ("retries", -1)), (("tool_calls", 1),)), True),
    "retry_rate": (Share((("retries", 1),), (("tool_calls", 1),)), False),
    "schema_violation_rate": (Share((("schema_errors", 1),), (("tool_calls", 1),)), False),
    "hallucination_rate": (Share((("hallucinations", 1),), (("", 1),)), False),
    "answer_completeness_rate": (Share((("answers_complete", 1),), (("answers_complete", 1),
                                                                     ("answers_incomplete", 1))), True),
    "steps_to_goal": (Share((("tool_calls", 1),), (("successful_sessions", 1),), gate="successful_sessions"), False),
}
ORDER = ["task_completion_rate", "steps_to_goal", "semantic_clarity_score", "retry_rate", "hallucination_rate",
         "schema_violation_rate", "recovery_rate", "answer_completeness_rate"]


@dataclass(frozen=True)
class Sums:
    """One window's sums for one metric over its sessions whose denominator is not 0: how many (``k``), and
    the sums of n, d, n², d², n·d (what the ratio and the delta method's variance need)."""

    k: int = 0
    n: float = 0
    d: float = 0
    nn: float = 0
    dd: float = 0
    nd: float = 0

    @classmethod
    def of(cls, pairs: Sequence[Pair]) -> Sums:
        return cls(len(pairs), sum(n for n, _ in pairs), sum(d for _, d in pairs), sum(n * n for n, _ in pairs),
                   sum(d * d for _, d in pairs), sum(n * d for n, d in pairs))

    @property
    def ratio(self) -> float | None:
        return self.n / self.d if self.d else None

    def delta_variance(self) -> float | None:
        """The delta-method variance of the ratio of sums over independent sessions."""
        r = self.ratio
        if r is None or self.k < 2:
            return None
        s2 = max(0.0, self.nn - 2 * r * self.nd + r * r * self.dd) / (self.k - 1)
        mean_den = self.d / self.k
        return s2 / (self.k * mean_den * mean_den)


def bootstrap(group: Sequence[tuple[Sequence[Pair], Sequence[Pair]]], *, seed: int = 0,
              resamples: int = BOOTSTRAP_RESAMPLES) -> list[tuple[float | None, float | None]]:
    """The percentile bootstrap's 95% interval of after minus before, ``(low, high)``, for each metric of
    ``group`` (its ``(before, after)`` session pairs), all of whose windows hold the same numbers of sessions.

    Each resample draws the sessions once for the whole group: the very indices each metric would draw alone
    from ``seed`` (``rng.choices(pairs, k=len(pairs))``, before then after), so grouping the metrics that take
    part in the same sessions (clarity, retries and schema errors all count over the sessions with calls)
    changes no interval, only the cost. The sums run in C over the drawn indices: with integer counts (the
    stores' case), all the group's numerators and denominators of a session are packed into one integer, so a
    side of a resample is one ``sum`` (exact: integers, each field in a slot wide enough for its total).
    ``(None, None)`` when fewer than half the resamples had a denominator on both sides."""
    size_b, size_a = len(group[0][0]), len(group[0][1])
    rand, floor = random.Random(seed).random, math.floor
    scale_b, scale_a = float(size_b), float(size_a)
    diffs: list[list[float]] = [[] for _ in group]
    totals = _packed_totals(group)
    for _ in range(resamples):
        picks_b = [floor(rand() * scale_b) for _ in range(size_b)]
        picks_a = [floor(rand() * scale_a) for _ in range(size_a)]
        for (n_b, d_b, n_a, d_a), out in zip(totals(picks_b, picks_a), diffs, strict=True):
            if d_b and d_a:
                out.append(n_a / d_a - n_b / d_b)
    intervals: list[tuple[float | None, float | None]] = []
    for out in diffs:
        if len(out) < resamples // 2:
            intervals.append((None, None))
            continue
        out.sort()
        intervals.append((out[int(0.025 * (len(out) - 1))], out[math.ceil(0.975 * (len(out) - 1))]))
    return intervals


Totaller = Callable[[list[int], list[int]], list[tuple[float, float, float, float]]]


def _packed_totals(group: Sequence[tuple[Sequence[Pair], Sequence[Pair]]]) -> Totaller:
    """``totals(picks_b, picks_a)``: each metric's (Σn before, Σd before, Σn after, Σd after) over the drawn
    sessions. Integer counts are packed, a session's fields side by side in one integer (each shifted up by
    ``bias`` so none is negative, in slots of ``width`` bits that hold a side's whole sum), and unpacked from
    the two sums; other numbers are summed field by field."""
    columns = [([n for n, _ in b], [d for _, d in b], [n for n, _ in a], [d for _, d in a]) for b, a in group]
    if not all(type(v) is int for cols in columns for col in cols for v in col):
        def by_field(picks_b: list[int], picks_a: list[int]) -> list[tuple[float, float, float, float]]:
            return [(sum(map(nb.__getitem__, picks_b)), sum(map(db.__getitem__, picks_b)),
                     sum(map(na.__getitem__, picks_a)), sum(map(da.__getitem__, picks_a)))
                    for nb, db, na, da in columns]
        return by_field
    ints = [[[int(v) for v in col] for col in cols] for cols in columns]
    values = [v for cols in ints for col in cols for v in col]
    bias = max(0, -min(values, default=0))
    size = max(len(group[0][0]), len(group[0][1]), 1)
    width = ((max(values, default=0) + bias) * size).bit_length() + 1
    mask = (1 << width) - 1
    fields = 2 * len(group)

    def pack(side: int) -> list[int]:
        packed = []
        for i in range(len(ints[0][2 * side])):
            word = 0
            for j, cols in enumerate(ints):
                word |= (cols[2 * side][i] + bias) << (2 * j * width)
                word |= (cols[2 * side + 1][i] + bias) << ((2 * j + 1) * width)
            packed.append(word)
        return packed

    before, after = pack(0), pack(1)
    off_b, off_a = bias * len(before), bias * len(after)

    def unpack(total: int, offset: int) -> list[int]:
        return [((total >> (f * width)) & mask) - offset for f in range(fields)]

    def packed_totals(picks_b: list[int], picks_a: list[int]) -> list[tuple[float, float, float, float]]:
        b = unpack(sum(map(before.__getitem__, picks_b)), off_b)
        a = unpack(sum(map(after.__getitem__, picks_a)), off_a)
        return [(b[2 * j], b[2 * j + 1], a[2 * j], a[2 * j + 1]) for j in range(len(group))]
    return packed_totals


def ratio_difference(before: Sums, after: Sums, pairs: tuple[Sequence[Pair], Sequence[Pair]] | None = None, *,
                     seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
                     ) -> tuple[float | None, float | None, float | None, str]:
    """``(difference, low, high, method)`` for a ratio of sums over sessions, after minus before: a percentile
    bootstrap over the sessions' ``pairs`` when given (small windows), else the delta method from the sums."""
    r1, r2 = before.ratio, after.ratio
    if r1 is None or r2 is None:
        return None, None, None, "none"
    d = r2 - r1
    if pairs is None:
        v1, v2 = before.delta_variance(), after.delta_variance()
        if v1 is None or v2 is None:
            return d, None, None, "none"
        half = Z95 * math.sqrt(v1 + v2)
        return d, d - half, d + half, "delta"
    low, high = bootstrap([pairs], seed=seed, resamples=resamples)[0]
    return (d, None, None, "none") if low is None else (d, low, high, "bootstrap")


def _verdict(d: float | None, low: float | None, high: float | None, higher_is_better: bool) -> str:
    if d is None or low is None or high is None:
        return "too little data"
    if low <= 0 <= high:
        return "no significant change"
    improved = (low > 0) == higher_is_better
    return "better" if improved else "worse"


def changes_from(sums: dict[str, tuple[Sums, Sums]], pairs: dict[str, tuple[list[Pair], list[Pair]]] | None, *,
                 min_sessions: int = MIN_SESSIONS, seed: int = 0) -> list[Change]:
    """Each metric's change from its two windows' sums (and, for the bootstrap, the sessions' pairs)."""
    changes: list[Change] = []
    intervals: dict[str, tuple[float | None, float | None]] = {}
    if pairs is not None:  # the bootstrap, once per set of metrics that take part in the same sessions
        groups: dict[tuple[int, int], list[str]] = {}
        for metric in RATIOS:
            b, a = sums[metric]
            if min(b.k, a.k) >= min_sessions and b.ratio is not None and a.ratio is not None:
                groups.setdefault((len(pairs[metric][0]), len(pairs[metric][1])), []).append(metric)
        for members in groups.values():
            intervals.update(zip(members, bootstrap([pairs[m] for m in members], seed=seed), strict=True))
    for metric in ORDER:
        b, a = sums[metric]
        r1, r2 = b.ratio, a.ratio
        if min(b.k, a.k) < min_sessions:
            thin = None if r1 is None or r2 is None else r2 - r1
            changes.append(Change(metric, r1, r2, thin, None, None, "none", "too little data", b.k, a.k))
            continue
        diff: float | None
        low: float | None
        high: float | None
        if metric in PROPORTIONS:
            higher = PROPORTIONS[metric][1]
            diff, low, high = newcomb(int(b.n), int(b.d), int(a.n), int(a.d))
            method = "newcomb"
        elif metric in intervals:
            higher = RATIOS[metric][1]
            diff = None if r1 is None or r2 is None else r2 - r1
            low, high = intervals[metric]
            method = "none" if low is None else "bootstrap"
        else:
            higher = RATIOS[metric][1]
            diff, low, high, method = ratio_difference(b, a, None if pairs is None else pairs[metric], seed=seed)
        changes.append(Change(metric, r1, r2, diff, low, high, method, _verdict(diff, low, high, higher), b.k, a.k))
    return changes


SHARES = {m: share for m, (share, _) in {**PROPORTIONS, **RATIOS}.items()}


def compare_sessions(before: Sequence[Totals], after: Sequence[Totals], *, min_sessions: int = MIN_SESSIONS,
                     seed: int = 0) -> list[Change]:
    """Each compared metric's change between two lists of per-session counts."""
    pairs = {m: ([p for p in map(share.of, before) if p[1]], [p for p in map(share.of, after) if p[1]])
             for m, share in SHARES.items()}
    sums = {m: (Sums.of(b), Sums.of(a)) for m, (b, a) in pairs.items()}
    small = len(before) + len(after) <= BOOTSTRAP_MAX_SESSIONS
    return changes_from(sums, pairs if small else None, min_sessions=min_sessions, seed=seed)


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
    sink = open_source(source)
    if isinstance(sink, SQLStore):
        return _compare_in_sql(sink, before, after, mcp_name=mcp_name, min_sessions=min_sessions, seed=seed)
    starts, totals = session_index(sink, mcp_name=mcp_name)
    b = [totals[sid] for sid, start in starts.items() if sid in totals and in_window(start, before)]
    a = [totals[sid] for sid, start in starts.items() if sid in totals and in_window(start, after)]
    return Comparison(before, after, len(b), len(a), compare_sessions(b, a, min_sessions=min_sessions, seed=seed))


def _window_sums_sql() -> str:
    """Per window: its sessions, then per metric (in :data:`ORDER`) k and the sums of n, d, n², d², n·d over
    the sessions whose denominator is not 0: one pass over the per-session rows."""
    cols = []
    for side in ("in_before", "in_after"):
        cols.append(f"SUM(CASE WHEN {side} THEN 1 ELSE 0 END)")
        for metric in ORDER:
            n, d = SHARES[metric].sql()
            when = f"CASE WHEN {side} AND {d} <> 0 THEN"
            cols += [f"SUM({when} 1 ELSE 0 END)"] + [f"SUM({when} {x} ELSE 0 END)" for x in
                                                      (n, d, f"{n} * {n}", f"{d} * {d}", f"{n} * {d}")]
    return "SELECT " + ",\n    ".join(cols) + "\nFROM s WHERE in_before OR in_after"


def _session_rows_sql() -> str:
    """Per session in either window: the two flags, then each metric's (n, d) in :data:`ORDER`."""
    cols = ["CASE WHEN in_before THEN 1 ELSE 0 END", "CASE WHEN in_after THEN 1 ELSE 0 END"]
    for metric in ORDER:
        cols += list(SHARES[metric].sql())
    return "SELECT " + ", ".join(cols) + " FROM s WHERE in_before OR in_after"


def _compare_in_sql(sink: SQLStore, before: Window, after: Window, *, mcp_name: str | None, min_sessions: int,
                    seed: int) -> Comparison:
    """The same comparison with the sums made in the database: the per-session counts never reach Python,
    except for the bootstrap's few thousand sessions. When a cheap bound (the session starts in the windows'
    time ranges) says the windows hold no more than those, their sessions are read alone, through the session
    index, and summed here: the pass over every session is skipped."""
    filters: dict[str, Any] = {"session_id": None, "user_id": None, "mcp_name": mcp_name, "since": None,
                               "until": None}
    windows = tuple({"since": w.since, "until": w.until, "release": w.release} for w in (before, after))
    sql = dialect_of(sink)
    with sink.read_snapshot() as (conn, second):
        whole = None  # the pass over every session, when the bound does not rule it out
        if sql.sessions_at_most(conn, windows, BOOTSTRAP_MAX_SESSIONS + 1) > BOOTSTRAP_MAX_SESSIONS:
            whole = _window_sums(sql, conn, second, filters, windows)
        pairs: dict[str, tuple[list[Pair], list[Pair]]] | None = None
        if whole is None or sum(whole[0]) <= BOOTSTRAP_MAX_SESSIONS:  # few enough for the bootstrap
            counts, sums, pairs = _from_session_rows(sql.windowed(conn, filters, windows, _session_rows_sql(),
                                                                  narrow=True))
        else:
            counts, sums = whole
    return Comparison(before, after, counts[0], counts[1],
                      changes_from(sums, pairs, min_sessions=min_sessions, seed=seed))


def _window_sums(sql: Any, conn: Any, second: Any, filters: dict[str, Any], windows: tuple[dict[str, Any], ...]
                 ) -> tuple[list[int], dict[str, tuple[Sums, Sums]]]:
    """Each window's sessions and each metric's sums, from one pass over every session in the database."""
    select = _window_sums_sql()
    split = sql.split_point(conn) if second is not None else None
    if split is None:
        row = [int(v or 0) for v in sql.windowed(conn, filters, windows, select)[0]]
    else:  # two halves of the sessions at once, one per connection (same snapshot): the sums add up
        low, high = run_halves(lambda c: sql.windowed(c, filters, windows, select, (None, split))[0], conn,
                               lambda c: sql.windowed(c, filters, windows, select, (split, None))[0], second)
        row = [int(a or 0) + int(b or 0) for a, b in zip(low, high, strict=True)]
    width = 1 + 6 * len(ORDER)
    blocks = (row[:width], row[width:])
    sums = {m: (Sums(*blocks[0][1 + 6 * i:7 + 6 * i]), Sums(*blocks[1][1 + 6 * i:7 + 6 * i]))
            for i, m in enumerate(ORDER)}
    return [block[0] for block in blocks], sums


def _from_session_rows(rows: Sequence[Sequence[Any]]
                       ) -> tuple[list[int], dict[str, tuple[Sums, Sums]], dict[str, tuple[list[Pair], list[Pair]]]]:
    """Each window's sessions, each metric's sums and its sessions' pairs, from the per-session rows of
    :func:`_session_rows_sql` (the same sums the database makes: k and the sums over the sessions whose
    denominator is not 0)."""
    counts = [sum(1 for r in rows if r[0]), sum(1 for r in rows if r[1])]
    sums: dict[str, tuple[Sums, Sums]] = {}
    pairs: dict[str, tuple[list[Pair], list[Pair]]] = {}
    for i, metric in enumerate(ORDER):
        ps = [(r[0], r[1], int(r[2 + 2 * i] or 0), int(r[3 + 2 * i] or 0)) for r in rows]
        pairs[metric] = ([(n, d) for inb, _, n, d in ps if inb and d], [(n, d) for _, ina, n, d in ps if ina and d])
        sums[metric] = (Sums.of(pairs[metric][0]), Sums.of(pairs[metric][1]))
    return counts, sums, pairs
