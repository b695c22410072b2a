"""Trending with exponential time decay, kept as a log-score so that no periodic decay pass is needed.

An item's trending score at time ``now`` is ``sum_k w_k * 2 ** (-(now - t_k) / half_life)``. Stored
instead is ``L = log(sum_k w_k * 2 ** (t_k / half_life))``, which only grows when events arrive;
``L - ln2 * now / half_life`` is the log of the decayed score. Every item shares the same offset at a
given ``now``, so a sorted set ordered by ``L`` is already ordered by the decayed score: the stream
ZADDs the absolute ``L`` (idempotent) and the API reads the top of the set. The item agent in
``streams/cooccurrence.py`` owns the ``recs_trending`` keys; this module is the pure math.
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)
NEG_INF = float("-inf")


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


class Trending:
    """An in-memory trending model (the same math as the stream), for benchmarks and the registry."""

    kind = "trending"

    def __init__(self, half_life_ms: float) -> None:
        self.half_life_ms = half_life_ms
        self.scores: dict[str, float] = {}

    def learn_one(self, item: str, weight: float, event_time_ms: int) -> None:
        self.scores[item] = log_add(self.scores.get(item, NEG_INF), log_weight(weight, event_time_ms,
                                                                               self.half_life_ms))

    def top(self, n: int, now_ms: int) -> list[tuple[str, float]]:
        best = sorted(self.scores.items(), key=lambda kv: -kv[1])[:n]
        return [(item, decayed(s, now_ms, self.half_life_ms)) for item, s in best]

    def to_bytes(self) -> bytes:
        import json

        return json.dumps(self.to_state()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Trending:
        import json

        return cls.from_state(json.loads(data))

    def to_state(self) -> dict[str, object]:
        return {"half_life_ms": self.half_life_ms, "scores": dict(self.scores)}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Trending:
        model = cls(float(state["half_life_ms"]))  # type: ignore[arg-type]
        model.scores = {str(k): float(v) for k, v in dict(state["scores"]).items()}  # type: ignore[call-overload]
        return model
