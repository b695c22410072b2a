"""The trending model in memory: the stream's trending math (aura/state/trending.py) over a dict, for
benchmarks and the registry (which stores every model type as bytes)."""

from __future__ import annotations

import json

from aura.state.trending import NEG_INF, decayed, log_add, log_weight


class Trending:
    """An in-memory trending model (the same math as the stream)."""

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
        return json.dumps(self.to_state()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Trending:
        return cls.from_state(json.loads(data))

    def to_state(self) -> dict[str, object]:
        return {"half_life_ms": self.half_life_ms, "scores": dict(self.scores)}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Trending:
        model = cls(float(state["half_life_ms"]))  # type: ignore[arg-type]
        model.scores = {str(k): float(v) for k, v in dict(state["scores"]).items()}  # type: ignore[call-overload]
        return model
