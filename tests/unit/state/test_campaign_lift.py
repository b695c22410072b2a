"""The campaign lift statistics over simulated campaigns (pure): a known effect is measured within
its confidence interval, and an A/A campaign (messages that change nothing) is called significant no
more often than the nominal 5%. Users are split by the real sticky holdout hash, and conversions are
drawn with a seeded generator, so every figure is reproducible."""

from __future__ import annotations

import math

import numpy as np

from aura.state.campaign_sends import held_out, performance, template_error
from aura.state.campaigns import validate_campaign

REPEATS = 300
USERS = 2000


def campaign(cid: str, holdout: float):
    return validate_campaign({"id": cid, "channel": "email", "status": "running", "holdout": holdout,
                              "trigger": {"type": "event", "event_type": "view"},
                              "template": {"subject": "s", "body": "b"}, "goal": {"event_type": "purchase"}},
                             check_template=template_error)


def simulate(seed: int, base: float, effect: float, holdout: float = 0.3) -> dict:
    """One campaign: ``USERS`` qualify, the holdout hash splits them, treated users convert at
    ``base + effect`` and held-out ones at ``base``; the stats hash the worker would have built."""
    c = campaign(f"sim{seed}", holdout)
    rng = np.random.default_rng(seed)
    held = np.array([held_out(c, f"u{i}") for i in range(USERS)])
    draws = rng.random(USERS)
    converted = np.where(held, draws < base, draws < base + effect)
    tally = {"qualified:treated": str(int((~held).sum())), "converted:treated": str(int((converted & ~held).sum())),
             "qualified:holdout": str(int(held.sum())), "converted:holdout": str(int((converted & held).sum()))}
    return performance(c, tally)


def binomial_upper(n: int, p: float, sds: float = 3.0) -> float:
    return n * p + sds * math.sqrt(n * p * (1 - p))


def test_a_known_effect_is_measured_within_its_interval():
    effect = 0.04  # messages raise conversion from 8% to 12%
    runs = [simulate(seed, 0.08, effect) for seed in range(REPEATS)]
    missed = sum(1 for r in runs if not r["lift"]["ci95"][0] <= effect <= r["lift"]["ci95"][1])
    assert missed <= binomial_upper(REPEATS, 0.05)  # the 95% interval covers the true effect as promised
    mean = sum(r["lift"]["absolute"] for r in runs) / REPEATS
    assert abs(mean - effect) < 0.005  # unbiased
    assert sum(r["lift"]["significant"] for r in runs) > 0.65 * REPEATS  # and the test sees it (power about 0.8)
    one = simulate(12345, 0.08, effect)
    lo, hi = one["lift"]["ci95"]
    assert lo <= effect <= hi and one["lift"]["significant"]


def test_an_a_a_campaign_is_not_called_significant_more_often_than_nominal():
    runs = [simulate(1000 + seed, 0.08, 0.0) for seed in range(REPEATS)]
    significant = sum(r["lift"]["significant"] for r in runs)
    assert significant <= binomial_upper(REPEATS, 0.05)  # at most 5% up to sampling noise (3 sd)
    assert significant >= 1  # the test is not degenerate: it can call a difference at all
    p_values = sorted(r["lift"]["p_value"] for r in runs)
    assert p_values[REPEATS // 2] > 0.3  # p-values of an A/A test are spread, not piled near 0
