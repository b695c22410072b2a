"""Experiments: definitions, lifecycle, sticky assignment and the statistics of results."""

from __future__ import annotations

import numpy as np
import pytest

from aura.state.experiments import (
    ExperimentError,
    assign,
    bayes_compare,
    bayes_compare_mc,
    decide,
    full_factorial,
    parse_tally,
    results,
    srm_test,
    transition,
    two_proportion_test,
    validate_experiment,
    wilson_interval,
)

AB = {"id": "exp1", "variants": [{"id": "control"}, {"id": "treat", "weight": 3}]}


def test_full_factorial_variants():
    variants = full_factorial({"color": ["red", "blue"], "size": ["S", "M", "L"]})
    assert [v.id for v in variants][:2] == ["color=red;size=S", "color=red;size=M"]
    assert len(variants) == 6 and {v.payload["size"] for v in variants} == {"S", "M", "L"}
    exp = validate_experiment({"id": "mv", "factors": {"color": ["red", "blue"], "size": ["S", "M", "L"]}})
    assert exp.control == "color=red;size=S" and sum(v.weight for v in exp.variants) == pytest.approx(1.0)


def test_weights_are_normalised_and_status_defaults_to_draft():
    exp = validate_experiment(AB)
    assert [v.weight for v in exp.variants] == [0.25, 0.75]
    assert exp.status == "draft" and exp.salt == "exp1" and exp.conversion_events == ("purchase",)


@pytest.mark.parametrize(("doc", "loc"), [
    ({"id": "e"}, ["variants"]),
    ({"id": "e", "variants": [{"id": "a"}], }, ["variants"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "a"}]}, ["variants"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "b", "weight": 0}]}, ["variants", 1, "weight"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "b"}], "factors": {"x": [1, 2]}}, ["variants"]),
    ({"id": "e", "factors": {"x": [1]}}, ["factors"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "b"}], "control": "z"}, ["control"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "b"}], "coverage": 0}, ["coverage"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "b"}], "status": "winner"}, ["winner"]),
    ({"id": "e", "variants": [{"id": "a"}, {"id": "b"}], "targeting": {"field": "x", "op": "equals", "value": 1}},
     ["targeting", "field"]),
    ({"id": "e e", "variants": [{"id": "a"}, {"id": "b"}]}, ["id"]),
])
def test_invalid_experiments_are_refused(doc, loc):
    with pytest.raises(ExperimentError) as err:
        validate_experiment(doc)
    assert any(e["loc"] == loc for e in err.value.errors), err.value.errors


def test_lifecycle():
    doc = transition(AB, "running")
    doc = transition(doc, "paused")
    doc = transition(doc, "running")
    with pytest.raises(ExperimentError, match="cannot go from running to draft"):
        transition(doc, "draft")
    with pytest.raises(ExperimentError, match="winner"):
        transition(doc, "winner", winner="nope")
    done = transition(transition(doc, "stopped"), "winner", winner="treat")
    assert done["status"] == "winner" and done["winner"] == "treat"
    with pytest.raises(ExperimentError, match="none"):
        transition(done, "running")


def test_assignment_is_sticky_weighted_and_coverage_only_adds_users():
    exp = validate_experiment({**AB, "coverage": 0.5})
    users = [f"u{i}" for i in range(20000)]
    first = [assign(exp, u) for u in users]
    assert first == [assign(exp, u) for u in users]  # deterministic
    inside = [a for a in first if a is not None]
    assert 0.48 < len(inside) / len(users) < 0.52
    assert 0.73 < inside.count("treat") / len(inside) < 0.77
    wider = validate_experiment({**AB, "coverage": 0.9})
    moved = sum(1 for u, a in zip(users, first, strict=True) if a is not None and assign(wider, u) != a)
    assert moved == 0
    other_salt = validate_experiment({**AB, "salt": "other"})
    agree = sum(assign(exp, u) == assign(other_salt, u) for u in users[:4000] if assign(exp, u))
    assert agree < 0.75 * sum(1 for u in users[:4000] if assign(exp, u))  # salts decorrelate


def test_decide_by_status_and_targeting():
    target = {"field": "context.device", "op": "equals", "value": "ios"}
    exp = validate_experiment({**AB, "status": "running", "targeting": target})
    d = decide(exp, "u1", {}, frozenset(), {"device": "ios"})
    assert d.in_experiment and d.reason == "assigned" and d.variant == assign(exp, "u1")
    assert decide(exp, "u1", {}, frozenset(), {"device": "web"}) .reason == "not_targeted"
    paused = validate_experiment({**AB, "status": "paused"})
    assert decide(paused, "u1", {}, frozenset(), {}).variant == "control"
    won = validate_experiment({**AB, "status": "winner", "winner": "treat"})
    d = decide(won, "u1", {}, frozenset(), {})
    assert (d.variant, d.in_experiment) == ("treat", False)


def test_wilson_and_z_test_known_values():
    lo, hi = wilson_interval(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    z, p = two_proportion_test(100, 1000, 130, 1000)
    assert round(z, 3) == 2.103 and round(p, 4) == 0.0355  # pooled p 0.115, se 0.014267


def test_bayes_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(3)
    for c_a, n_a, c_b, n_b in [(100, 1000, 120, 1000), (30, 200, 28, 210), (500, 5000, 560, 5000)]:
        chance, loss = bayes_compare(c_a, n_a, c_b, n_b)
        chance_mc, loss_mc = bayes_compare_mc(c_a, n_a, c_b, n_b, rng, draws=400_000)
        assert abs(chance - chance_mc) < 0.01
        assert abs(loss - loss_mc) < 0.1 * loss_mc + 1e-4
    chance, loss = bayes_compare(100, 1000, 200, 1000)
    assert chance > 0.999 and loss < 1e-6


def test_srm():
    assert srm_test([5000, 5000], [0.5, 0.5])[1] == pytest.approx(1.0)
    chi2, p = srm_test([5200, 4800], [0.5, 0.5])
    assert chi2 == pytest.approx(16.0) and p < 0.001
    assert srm_test([2500, 7500], [1, 3])[1] == pytest.approx(1.0)


def test_results_from_a_tally():
    exp = validate_experiment({**AB, "status": "running", "conversion_events": ["purchase", "click"]})
    raw = {"control|exposed": "1000", "control|conv:purchase": "100", "control|revenue": "2500.5",
           "treat|exposed": "3000", "treat|conv:purchase": "390", "treat|conv:click": "900", "_off:t:0": "17"}
    out = results(exp, parse_tally(raw))
    ctrl, treat = out["variants"]
    assert ctrl["conversion_rate"] == 0.1 and ctrl["revenue_per_exposure"] == pytest.approx(2.5005)
    assert treat["conversions"] == 390 and treat["uplift"] == pytest.approx(0.3)
    assert treat["chance_to_beat_control"] > 0.98 and treat["p_value"] < 0.05
    assert treat["conversions_by_event"] == {"purchase": 390, "click": 900}
    assert out["srm"]["mismatch"] is False
    assert results(exp, parse_tally(raw), metric="click")["variants"][1]["conversions"] == 900


def test_aa_simulation_false_positive_rate_is_nominal():
    """A/A: both arms convert at 10%. Over 4000 seeded replications the two-sided z-test at
    alpha 0.05 must reject ~5% of the time, the 95% intervals must cover the true rate ~95%,
    and "chance to beat control > 95%" must fire ~5% (one-sided). With 4000 replications the
    standard error of a 5% rate is 0.34 points, so the bands below are +-3 SE: a one-sided test
    (2.5%), an unpooled-variance or 90%-level test (~10%) would fail."""
    rng = np.random.default_rng(20261127)
    reps, n, p = 4000, 2000, 0.10
    conv_a = rng.binomial(n, p, size=reps)
    conv_b = rng.binomial(n, p, size=reps)
    rejections = sum(two_proportion_test(a, n, b, n)[1] < 0.05 for a, b in zip(conv_a, conv_b, strict=True))
    bayes_fp = sum(bayes_compare(a, n, b, n)[0] > 0.95 for a, b in zip(conv_a, conv_b, strict=True))
    covered = sum(lo <= p <= hi for lo, hi in (wilson_interval(a, n) for a in conv_a))
    assert 0.0397 <= rejections / reps <= 0.0603, rejections / reps
    assert 0.0397 <= bayes_fp / reps <= 0.0603, bayes_fp / reps
    assert 0.9397 <= covered / reps <= 0.9603, covered / reps


def test_aa_assignment_has_no_sample_ratio_mismatch_beyond_nominal():
    """Real hash assignment of 1000 users, 1000 salts: SRM p-values are uniform, so p < 0.05 in
    ~5% of salts (SE 0.69 points at 1000 replications; band +-3 SE)."""
    alarms = 0
    users = [f"user-{i}" for i in range(1000)]
    for r in range(1000):
        exp = validate_experiment({"id": f"aa{r}", "variants": [{"id": "a"}, {"id": "b"}]})
        counts = [0, 0]
        for u in users:
            counts[assign(exp, u) == "b"] += 1
        alarms += srm_test(counts, [0.5, 0.5])[1] < 0.05
    assert 0.029 <= alarms / 1000 <= 0.071, alarms / 1000


def test_targeting_by_segment_and_context_together():
    target = {"all": [{"field": "segments", "op": "contains", "value": "vip"},
                      {"field": "context.channel", "op": "in", "value": ["web", "mobile"]}]}
    exp = validate_experiment({**AB, "status": "running", "targeting": target})
    assert decide(exp, "u1", {}, frozenset({"vip"}), {"channel": "web"}).in_experiment
    assert decide(exp, "u1", {}, frozenset(), {"channel": "web"}).reason == "not_targeted"
    assert decide(exp, "u1", {}, frozenset({"vip"}), {"channel": "email"}).reason == "not_targeted"
