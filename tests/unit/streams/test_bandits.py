"""The pure half of the bandit state owner: fences, reward = max per decision, orphans, LinUCB x."""

from __future__ import annotations

import json

import numpy as np

from aura.state.bandits import FEATURE_CLIP, healthy, new_state, update_reward, validate_bandit
from streams.bandits import DecisionFact, RewardFact, fold, lua_args, parse_hash
from streams.experiments import Source

CFG = validate_bandit({"id": "b1", "arms": ["a", "b"], "rewards": {"click": 0.4, "purchase": 1.0}})


def dsrc(o, p=0):
    return Source("t.decisions", p, o)


def bsrc(o, p=0):
    return Source("t.events.behavior", p, o)


def test_pulls_and_rewards_fold_once_with_max_reward_per_decision():
    st = new_state(CFG)
    decisions = [DecisionFact("b1", "b1:d1", "a", {}, 1, dsrc(10)), DecisionFact("b1", "b1:d2", "b", {}, 1, dsrc(11))]
    rewards = [RewardFact("b1", "b1:d1", "click", 2, bsrc(3)), RewardFact("b1", "b1:d1", "purchase", 3, bsrc(4)),
               RewardFact("b1", "b1:d1", "click", 4, bsrc(5)), RewardFact("b1", "b1:dX", "click", 4, bsrc(6))]
    res = fold(CFG, st, {}, decisions, rewards, known={})
    assert (st.arms["a"].n, st.arms["a"].s, st.arms["b"].n, st.arms["b"].s) == (1.0, 1.0, 1.0, 0.0)
    assert res.records["b1:d1"]["r"] == 1.0 and res.pulls == 2 and res.rewards == 2
    assert [o.decision_id for o in res.orphans] == ["b1:dX"]
    assert res.fences == {"_off:t.decisions:0": 11, "_off:t.events.behavior:0": 6}
    # replaying the batch against the moved fences changes nothing
    again = fold(CFG, st, res.fences, decisions, rewards, known=res.records)
    assert again.records == {} and again.pulls == 0 and st.arms["a"].s == 1.0


def test_reward_in_a_later_batch_uses_the_stored_decision():
    st = new_state(CFG)
    known = {"b1:d9": {"arm": "b", "x": None, "r": 0.4, "t": 1}}  # already rewarded by a click
    res = fold(CFG, st, {"_off:t.events.behavior:1": 50}, [],
               [RewardFact("b1", "b1:d9", "purchase", 2, bsrc(51, 1)),
                RewardFact("b1", "b1:d9", "purchase", 2, bsrc(50, 1))], known)
    assert st.arms["b"].s == np.float64(0.6) and res.records["b1:d9"]["r"] == 1.0  # 1.0 - 0.4


def test_linucb_decision_keeps_x_for_its_reward():
    cfg = validate_bandit({"id": "c", "policy": "linucb", "arms": ["a"], "features": ["age", "device=ios"]})
    st = new_state(cfg)
    res = fold(cfg, st, {}, [DecisionFact("c", "c:1", "a", {"age": 2.0, "device=ios": 1.0}, 1, dsrc(1))],
               [RewardFact("c", "c:1", "click", 2, bsrc(1))], {})
    assert res.records["c:1"]["x"] == [1.0, 2.0, 1.0]
    assert st.arms["a"].b.tolist() == [1.0, 2.0, 1.0]
    assert st.arms["a"].A[1, 1] == 1.0 + 4.0


def test_lua_args_and_hash_round_trip():
    st = new_state(CFG)
    res = fold(CFG, st, {}, [DecisionFact("b1", "b1:d1", "a", {}, 1, dsrc(10))], [], {})
    args = lua_args("7", st, res, 1000, ["b1:d1"])
    assert args[0] == "7" and args[2] == 1000 and args[3] == 1 and args[4:6] == ["_off:t.decisions:0", 10]
    state, ver, fences = parse_hash({"state": args[1], "ver": "8", "_off:t.decisions:0": "10"})
    assert state.to_json() == st.to_json() and ver == "8" and fences == {"_off:t.decisions:0": 10}
    assert json.loads(args[6])["arm"] == "a"
    assert parse_hash({}) == (None, "", {})
    quarantined = lua_args("7", st, res, 1000, ["b1:d1"], {"quarantine": "{}"})
    assert quarantined[3] == 2 and quarantined[4:8] == ["_off:t.decisions:0", 10, "quarantine", "{}"]


def test_extreme_features_and_rewards_are_clipped_and_a_non_finite_state_is_detected():
    cfg = validate_bandit({"id": "c", "policy": "linucb", "arms": ["a", "b"], "features": ["x"]})
    st = new_state(cfg)
    for v in (1e300, float("inf"), float("nan"), -1e12):
        res = fold(cfg, st, {}, [DecisionFact("c", f"c:{v}", "a", {"x": v}, 1, dsrc(1))], [], {})
        assert res.pulls == 1
    assert healthy(st) and np.abs(st.arms["a"].A).max() <= 1 + 2 * FEATURE_CLIP ** 2
    update_reward(cfg, st, "a", 1e9, np.array([1.0, 5.0]))
    assert st.arms["a"].s == 1.0  # rewards clip to [0, 1]
    st.arms["b"] = type(st.arms["a"])(n=1.0, s=float("nan"))
    assert not healthy(st)
