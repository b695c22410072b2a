"""Trending with time decay (aura/state/trending.py): the stored log-score equals the directly decayed
sum and ranks like it."""

from __future__ import annotations

import math

import pytest

from aura.state import trending

H = 3600_000.0  # one hour half-life


def direct(events: list[tuple[float, int]], now: int) -> float:
    return sum(w * 2 ** (-(now - t) / H) for w, t in events)


def test_log_score_decays_like_the_direct_sum():
    now = 1_800_000_000_000
    events = [(1.0, now - 3 * 3600_000), (2.0, now - 3600_000), (3.0, now)]
    score = trending.accumulate(trending.NEG_INF, events, H)
    assert trending.decayed(score, now, H) == pytest.approx(direct(events, now), rel=1e-9)
    # one half-life later everything is worth half
    assert trending.decayed(score, now + 3600_000, H) == pytest.approx(direct(events, now) / 2, rel=1e-9)


def test_order_of_folding_does_not_matter_and_no_overflow_at_real_epochs():
    now = 1_800_000_000_000
    events = [(float(k % 5 + 1), now - k * 60_000) for k in range(200)]
    a = trending.accumulate(trending.NEG_INF, events, 60_000.0)  # a one-minute half-life: huge exponents
    b = trending.accumulate(trending.NEG_INF, list(reversed(events)), 60_000.0)
    assert math.isfinite(a) and a == pytest.approx(b, rel=1e-12)


def test_a_recent_burst_outranks_an_older_larger_one():
    now = 1_800_000_000_000
    old = trending.accumulate(trending.NEG_INF, [(1.0, now - 10 * 3600_000)] * 50, H)
    new = trending.accumulate(trending.NEG_INF, [(1.0, now - 600_000)] * 5, H)
    assert new > old  # the stored log-score already ranks by the decayed score
    assert trending.decayed(new, now, H) > trending.decayed(old, now, H)


def test_log_add_and_zero_weights():
    assert trending.log_add(trending.NEG_INF, 1.5) == 1.5
    assert trending.log_add(math.log(2), math.log(3)) == pytest.approx(math.log(5))
    assert trending.accumulate(trending.NEG_INF, [(0.0, 1)], H) == trending.NEG_INF
    assert trending.decayed(trending.NEG_INF, 0, H) == 0.0


def test_half_life_setting_in_milliseconds():
    assert trending.half_life_from_hours(24.0) == 24.0 * 3600 * 1000
    assert trending.half_life_from_hours(1.0) == H
