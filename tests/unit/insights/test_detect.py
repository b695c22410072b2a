"""The per-series model: quiet on stationary noise, flags shifts and spikes after the warm-up,
recovers, and survives a pickle round trip unchanged (the river models' contract)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from aura.insights.detect import DetectorConfig, SeriesModel


def rate_points(n: int, p: float, weight: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    return [(rng.binomial(weight, p) / weight, float(weight)) for _ in range(n)]


def feed(model: SeriesModel, points: list[tuple[float, float]], hour: int = 12) -> list[int]:
    """Indices where an alert opened."""
    return [i for i, (v, w) in enumerate(points) if model.update(v, w, hour) is not None]


def test_stationary_rate_never_alerts() -> None:
    rng = np.random.default_rng(1)
    m = SeriesModel("rate")
    assert feed(m, rate_points(3000, 0.04, 1000, rng)) == []


def test_stationary_counts_never_alert() -> None:
    rng = np.random.default_rng(2)
    m = SeriesModel("count")
    assert [i for i in range(3000) if m.update(float(rng.poisson(400)), 1.0, 12) is not None] == []


def test_level_shift_is_flagged_within_minutes_then_recovers() -> None:
    rng = np.random.default_rng(3)
    m = SeriesModel("rate")
    before = rate_points(200, 0.04, 2000, rng)
    drop = rate_points(40, 0.04 * 0.7, 2000, rng)
    after = rate_points(60, 0.04, 2000, rng)
    opened = feed(m, before + drop + after)
    assert opened and 200 <= opened[0] <= 206, opened
    assert len(opened) == 1
    assert m.alert is None  # back in the band after the drop ended


def test_alert_kind_and_direction() -> None:
    rng = np.random.default_rng(4)
    m = SeriesModel("count")
    for _ in range(200):
        m.update(float(rng.poisson(300)), 1.0, 12)
    alert = m.update(900.0, 1.0, 12)
    assert alert is not None and alert.kind == "spike" and alert.direction == 1
    assert alert.expected == pytest.approx(300, rel=0.1)


def test_no_alert_during_warmup() -> None:
    rng = np.random.default_rng(5)
    m = SeriesModel("rate", DetectorConfig(warmup=60))
    points = rate_points(20, 0.04, 2000, rng) + rate_points(30, 0.01, 2000, rng)
    assert feed(m, points) == []


def test_small_denominators_are_not_judged() -> None:
    m = SeriesModel("rate")
    rng = np.random.default_rng(6)
    feed(m, rate_points(200, 0.04, 2000, rng))
    assert m.update(0.0, 5.0, 12) is None  # 5 views: no evidence


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        SeriesModel("median")


@pytest.mark.parametrize("kind", ["rate", "count", "sum"])
def test_pickled_model_restores_to_identical_predictions(kind: str) -> None:
    rng = np.random.default_rng(7)
    m = SeriesModel(kind)
    def point() -> tuple[float, float]:
        if kind == "rate":
            return rng.binomial(1500, 0.05) / 1500, 1500.0
        if kind == "count":
            return float(rng.poisson(250)), 1.0
        return float(rng.lognormal(3.6, 0.6, rng.poisson(40)).sum()), 1.0
    for i in range(300):
        v, w = point()
        m.update(v, w, i // 60 % 24)
    clone = pickle.loads(pickle.dumps(m))  # noqa: S301 - our own object
    tail = [point() for _ in range(200)]
    tail[50] = (tail[50][0] * 4, tail[50][1])  # a spike on the way, so alert paths are compared too
    for i, (v, w) in enumerate(tail):
        assert m.expected(i % 24) == clone.expected(i % 24)
        a, b = m.update(v, w, i % 24), clone.update(v, w, i % 24)
        assert a == b
        assert m.last_z == clone.last_z
