"""Acquisition cohorts and retention: the format of the counters streams/retention.py keeps and the
API reads (serving/routes/retention.py), and their pure math. Not the demographic cohorts of
aura/state/cohorts.py (age band, gender, country), which serve the cold start.

A user's *cohort* is the week (Monday 00:00 UTC) or calendar month (UTC) of their first-seen time:
the event time of the first of their events the stream folds. Per grain and cohort, per *period*
``k`` (0 = the acquisition week or month, 1 = the next, ...):

* ``n:<cohort ms>``: users acquired (once per user);
* ``a:<cohort ms>:<k>``: users active in period ``k`` (once per user and period);
* ``o:<cohort ms>:<k>`` / ``r:<cohort ms>:<k>``: orders and revenue of the cohort's users in it.

Behavior events are keyed by user, so each user lives in one source partition and the counters are
kept per partition under its own hash tag (``retention_counts``), fenced by offset like the
analytics counters; readers sum the partitions. The per-user state of a partition: the first-seen
time (hash ``retention_first``) and, per period, the set of users already counted active in it
(``retention_seen``, kept ``AURA_ANALYTICS_COHORT_SEEN_DAYS`` after the period ends; an event of an
older period is counted in orders and revenue only, since its user may already have been counted).
An event earlier than its user's first-seen time (a late one) counts in period 0.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MONDAY_OFFSET_MS = 3 * DAY_MS  # 1970-01-01 was a Thursday: weeks start on Mondays, 3 days before a multiple of 7
GRAINS = ("week", "month")
MAX_PERIODS = 104  # periods reported per cohort at most


@lru_cache(maxsize=65_536)
def _month_of_day(day: int) -> tuple[int, int, int]:
    """(start ms, year, month) of the UTC calendar month holding epoch day ``day``. Cached: the
    stream asks for the months of every event (several times, both grains), and a ``datetime``
    round trip costs microseconds where a cached day costs a dict look-up."""
    d = datetime.fromtimestamp(day * 86_400, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000), d.year, d.month


def period_start(ms: int, grain: str) -> int:
    """Start (epoch ms, UTC) of the week (Monday) or month holding ``ms``."""
    if grain == "week":
        return (ms + MONDAY_OFFSET_MS) // WEEK_MS * WEEK_MS - MONDAY_OFFSET_MS
    if grain == "month":
        return _month_of_day(ms // DAY_MS)[0]
    raise ValueError(f"unknown grain {grain!r}")


def period_end(start: int, grain: str) -> int:
    """Start of the period after the one starting at ``start``."""
    if grain == "week":
        return start + WEEK_MS
    _, year, month = _month_of_day(start // DAY_MS)
    return start + calendar.monthrange(year, month)[1] * DAY_MS


def period_index(cohort: int, ms: int, grain: str) -> int:
    """Periods between the cohort's start and the period of ``ms`` (0 for the acquisition period;
    an event before the cohort counts as 0)."""
    p = period_start(ms, grain)
    if p <= cohort:
        return 0
    if grain == "week":
        return (p - cohort) // WEEK_MS
    _, ya, ma = _month_of_day(cohort // DAY_MS)
    _, yb, mb = _month_of_day(p // DAY_MS)
    return (yb - ya) * 12 + mb - ma


def _num(v: Any) -> float:
    return float(v.decode() if isinstance(v, bytes) else v)


def merge(shares: list[dict[Any, Any]]) -> dict[str, float]:
    """The counters of a grain summed over the partitions' hashes (as read: bytes or str)."""
    out: dict[str, float] = {}
    for h in shares:
        for k, v in h.items():
            key = k.decode() if isinstance(k, bytes) else str(k)
            out[key] = out.get(key, 0.0) + _num(v)
    return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def table(counts: dict[str, float], grain: str, lo: int, hi: int, periods: int,
          now_ms: int) -> list[dict[str, Any]]:
    """The cohorts acquired in [lo, hi) (epoch ms), oldest first: size and, per period up to
    ``periods`` (and not past ``now_ms``), active users, retention, orders, revenue and cumulative
    revenue per acquired user."""
    sizes: dict[int, float] = {}
    cells: dict[tuple[int, int], dict[str, float]] = {}
    for key, v in counts.items():
        parts = key.split(":")
        try:
            if parts[0] == "n" and len(parts) == 2:
                sizes[int(parts[1])] = v
            elif parts[0] in ("a", "o", "r") and len(parts) == 3:
                cells.setdefault((int(parts[1]), int(parts[2])), {})[parts[0]] = v
        except ValueError:
            continue  # not a counter of this format
    out: list[dict[str, Any]] = []
    for cohort in sorted(c for c in sizes if lo <= c < hi):
        size = sizes[cohort]
        rows: list[dict[str, Any]] = []
        start, cum = cohort, 0.0
        for k in range(min(periods, MAX_PERIODS)):
            if start > now_ms:
                break
            c = cells.get((cohort, k), {})
            active, rev = c.get("a", 0.0), c.get("r", 0.0)
            cum += rev
            rows.append({"period": k, "start": iso(start), "active": int(active),
                         "retention": round(active / size, 4) if size else 0.0, "orders": int(c.get("o", 0.0)),
                         "revenue": round(rev, 2),
                         "cumulative_revenue_per_user": round(cum / size, 4) if size else 0.0})
            start = period_end(start, grain)
        out.append({"cohort": iso(cohort), "cohort_start": cohort, "users": int(size), "periods": rows})
    return out


# events that say the user came (an impression or an e-mail open can happen without a visit)
PASSIVE = frozenset({"impression", "message_open"})


# ---------------------------------------------------------------------------------------------
# The durable copy (Cassandra ``retention_counts``, written behind by streams/retention.py)
#
# Per source topic, grain, cohort and partition, each counter's absolute value as Redis held it,
# read atomically with the partition's fence; the cell is written with ``USING TIMESTAMP`` = fence +
# 1, so a copy taken at a lower fence (a refold after a Redis loss still catching up) never overwrites
# a newer one. The partition's fence is the row of cohort ``FENCE_COHORT``, counter ``FENCE_COUNTER``.

FENCE_COHORT = -1
FENCE_COUNTER = "_fence"


def cohort_of(counter: str) -> int | None:
    """The cohort (epoch ms) a counter name belongs to (None: not a counter of this format)."""
    parts = counter.split(":")
    if parts[0] not in ("n", "a", "o", "r") or len(parts) not in (2, 3):
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


def cohort_starts(lo: int, hi: int, grain: str) -> list[int]:
    """The cohort starts (period starts) in [lo, hi)."""
    out: list[int] = []
    p = period_start(lo, grain)
    if p < lo:
        p = period_end(p, grain)
    while p < hi:
        out.append(p)
        p = period_end(p, grain)
    return out


def pick_sources(redis_fences: dict[int, int], durable_fences: dict[int, int]) -> dict[int, str]:
    """Per partition, where its counters are read: ``redis`` (the hot state, the source of truth
    while it holds the partition's fence and is not behind the durable copy) or ``durable`` (the
    Cassandra copy, when Redis lost the partition or is refolding it and has not caught up)."""
    out: dict[int, str] = {}
    for p in set(redis_fences) | set(durable_fences):
        r, d = redis_fences.get(p), durable_fences.get(p)
        out[p] = "durable" if d is not None and (r is None or r < d) else "redis"
    return out
