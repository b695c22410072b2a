"""Trending scores: exponential time decay kept as a log-score, so no periodic decay pass is needed.

An item's trending score at time ``now`` is ``sum_k w_k * 2 ** (-(now - t_k) / half_life)``. Stored
instead (field ``tr`` of ``recs_item_state`` and the ``recs_trending`` sorted sets) is
``L = log(sum_k w_k * 2 ** (t_k / half_life))``, which only grows when events arrive;
``L - ln2 * now / half_life`` is the log of the decayed score. Every item shares the same offset at a
given ``now``, so a sorted set ordered by ``L`` is already ordered by the decayed score: the writer
(streams/itemsignals.py, whose item script repeats ``log_add`` in Lua) ZADDs the absolute ``L``
(idempotent) and the API reads the top of the set and turns ``L`` into a score with ``decayed``.
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)
NEG_INF = float("-inf")


def half_life_from_hours(hours: float) -> float:
    """The half-life setting (``recs_trending_half_life_h``) in milliseconds."""
    return hours * 3600 * 1000


def log_weight(weight: float, event_time_ms: int, half_life_ms: float) -> float:
    """``log(w * 2 ** (t / half_life))`` for one event (``w`` > 0)."""
    return math.log(weight) + LN2 * event_time_ms / half_life_ms


def log_add(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))`` without overflow."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def accumulate(log_score: float, events: list[tuple[float, int]], half_life_ms: float) -> float:
    """Fold ``(weight, event_time_ms)`` events into a log-score."""
    for weight, t in events:
        if weight > 0:
            log_score = log_add(log_score, log_weight(weight, t, half_life_ms))
    return log_score


def decayed(log_score: float, now_ms: int, half_life_ms: float) -> float:
    """The decayed score at ``now_ms`` (what a human reads: weighted events, half-life discounted)."""
    if log_score == NEG_INF:
        return 0.0
    return math.exp(log_score - LN2 * now_ms / half_life_ms)
