"""The in-memory trending model (aura/models/trending.py): ranks by the decayed score and round-trips."""

from __future__ import annotations

from aura.models.trending import Trending

H = 3600_000.0  # one hour half-life


def test_trending_model_top_and_round_trip():
    m = Trending(H)
    now = 1_800_000_000_000
    for item, t in [("a", now - 7200_000), ("b", now), ("b", now - 60_000), ("c", now - 3600_000)]:
        m.learn_one(item, 1.0, t)
    assert [i for i, _ in m.top(3, now)] == ["b", "c", "a"]
    back = Trending.from_bytes(m.to_bytes())
    assert back.top(3, now) == m.top(3, now)
