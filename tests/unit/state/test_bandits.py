"""Bandit policies: configuration grammar, learning, exploration floor, arm changes, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aura.state.bandits import (
    POLICIES,
    BanditError,
    BanditState,
    decision_bandit,
    feature_vector,
    new_decision_id,
    new_state,
    pull,
    summary,
    update,
    update_pull,
    update_reward,
    validate_bandit,
)

MEANS = {"a": 0.05, "b": 0.10, "c": 0.25}


def cfg(policy="thompson", **kw):
    return validate_bandit({"id": "b1", "policy": policy, "arms": list(MEANS), **kw})


def simulate(c, steps, seed, means=MEANS):
    rng = np.random.default_rng(seed)
    env = np.random.default_rng(seed + 1)
    st = new_state(c)
    counts = dict.fromkeys(means, 0)
    regret = 0.0
    best = max(means.values())
    for _ in range(steps):
        arm, _ = pull(c, st, c.arms, rng)
        update(c, st, arm, float(env.random() < means[arm]))
        counts[arm] += 1
        regret += best - means[arm]
    return st, counts, regret


@pytest.mark.parametrize("policy", ["thompson", "ucb1", "epsilon_greedy"])
def test_policies_find_the_best_arm_with_less_regret_than_uniform(policy):
    c = cfg(policy, params={"c": 0.5} if policy == "ucb1" else {})
    _, counts, regret = simulate(c, 4000, seed=11)
    uniform_regret = 4000 * (0.25 - np.mean(list(MEANS.values())))
    assert max(counts, key=counts.get) == "c"
    assert regret < 0.35 * uniform_regret, (regret, uniform_regret)


def test_linucb_learns_which_arm_suits_which_context():
    c = validate_bandit({"id": "ctx", "policy": "linucb", "arms": ["x", "y"], "features": ["device=mobile"],
                         "params": {"alpha": 0.5}})
    rng, env = np.random.default_rng(1), np.random.default_rng(2)
    st = new_state(c)
    best = {"mobile": "x", "desktop": "y"}
    for _ in range(3000):
        device = "mobile" if env.random() < 0.5 else "desktop"
        x = feature_vector(c.features, {"device": device})
        arm, _ = pull(c, st, c.arms, rng, x)
        update(c, st, arm, float(env.random() < (0.3 if arm == best[device] else 0.05)), x)
    for device, arm in best.items():
        x = feature_vector(c.features, {"device": device})
        picks = [pull(c, st, c.arms, rng, x)[0] for _ in range(200)]
        assert picks.count(arm) > 180, (device, picks.count(arm))


def test_exploration_floor_keeps_trying_every_arm():
    c = cfg("thompson", floor=0.2)
    st = new_state(c)
    for _ in range(1000):  # arm c is known to be far better
        update(c, st, "c", 1.0)
        update(c, st, "a", 0.0)
        update(c, st, "b", 0.0)
    rng = np.random.default_rng(5)
    picks = [pull(c, st, c.arms, rng) for _ in range(20000)]
    share_others = sum(a != "c" for a, _ in picks) / len(picks)
    assert 0.12 < share_others < 0.147  # 0.2 * 2/3 = 0.133
    assert all(explored for a, explored in picks if a != "c")
    no_floor = cfg("thompson")
    assert sum(pull(no_floor, st, no_floor.arms, rng)[0] != "c" for _ in range(2000)) == 0


def test_arms_added_and_removed_while_running():
    c = cfg("ucb1")
    st, _, _ = simulate(c, 300, seed=3)
    removed = validate_bandit({**c.doc, "arms": ["a", "b", "d"]})  # c removed, d added
    rng = np.random.default_rng(0)
    first = pull(removed, st, removed.arms, rng)[0]
    assert first == "d"  # untried arm first
    update(removed, st, "d", 1.0)
    assert {pull(removed, st, removed.arms, rng)[0] for _ in range(200)} <= {"a", "b", "d"}
    rows = {r["arm"]: r for r in summary(removed, st)}
    assert rows["c"]["active"] is False and rows["c"]["pulls"] > 0 and rows["d"]["active"]


def test_delayed_reward_and_discount():
    c = cfg("thompson", discount=0.9)
    st = new_state(c)
    for _ in range(200):
        update_pull(c, st, "a")
    assert st.arms["a"].n == pytest.approx(1 / (1 - 0.9), rel=1e-6)  # bounded memory
    update_reward(c, st, "a", 0.5)
    assert st.arms["a"].s == 0.5 and st.pulls == 200 and st.rewards == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_state_survives_a_json_round_trip_unchanged(policy):
    c = validate_bandit({"id": "b", "policy": policy, "arms": ["a", "b"],
                         "features": ["age", "device=ios"] if policy == "linucb" else []})
    st = new_state(c)
    rng = np.random.default_rng(9)
    for i in range(50):
        x = feature_vector(c.features, {"age": i % 7, "device": "ios" if i % 2 else "web"})
        arm, _ = pull(c, st, c.arms, rng, x)
        update(c, st, arm, float(i % 3 == 0), x)
    doc = st.to_json()
    back = BanditState.from_json(json.loads(json.dumps(doc)))
    assert back.to_json() == doc
    x = feature_vector(c.features, {"age": 3, "device": "ios"})
    assert [pull(c, st, c.arms, np.random.default_rng(1), x) for _ in range(5)] == \
           [pull(c, back, c.arms, np.random.default_rng(1), x) for _ in range(5)]


def test_feature_vector():
    x = feature_vector(["age", "device=ios", "score"], {"age": "31", "device": "ios", "score": "n/a"})
    assert x.tolist() == [1.0, 31.0, 1.0, 0.0]


def test_decision_ids():
    d = new_decision_id("strategy.home")
    assert decision_bandit(d) == "strategy.home"
    assert decision_bandit("rec-123") is None and decision_bandit(None) is None
    assert decision_bandit("b:" + "z" * 32) is None


@pytest.mark.parametrize(("doc", "loc"), [
    ({"arms": ["a"]}, ["id"]),
    ({"id": "a:b", "arms": ["a"]}, ["id"]),
    ({"id": "b", "arms": []}, ["arms"]),
    ({"id": "b", "arms": ["a", "a"]}, ["arms"]),
    ({"id": "b", "arms": ["a"], "policy": "softmax"}, ["policy"]),
    ({"id": "b", "arms": ["a"], "params": {"epsilon": 2}, "policy": "epsilon_greedy"}, ["params", "epsilon"]),
    ({"id": "b", "arms": ["a"], "params": {"alpha": 1}}, ["params", "alpha"]),
    ({"id": "b", "arms": ["a"], "features": ["x"]}, ["features"]),
    ({"id": "b", "arms": ["a"], "floor": 0.9}, ["floor"]),
    ({"id": "b", "arms": ["a"], "rewards": {"click": 2}}, ["rewards"]),
])
def test_invalid_bandits_are_refused(doc, loc):
    with pytest.raises(BanditError) as err:
        validate_bandit(doc)
    assert any(e["loc"] == loc for e in err.value.errors), err.value.errors
