"""Bandit policies and their state: pure functions over plain data, river's verbs (pull / update).

This module owns the bandit configuration grammar and the learned state's layout; the stream
(streams/bandits.py) folds pulls and rewards into the state, the API (serving/routes/bandits.py)
reads it to choose. Policies:

- ``thompson``: Beta-Bernoulli Thompson sampling, arm score ~ Beta(a0 + s, b0 + n - s).
- ``ucb1``: untried arms first, then mean + c * sqrt(2 ln N / n) (Auer et al. 2002).
- ``epsilon_greedy``: uniform with probability epsilon, else the best mean (untried arms first).
- ``linucb``: disjoint LinUCB (Li et al. 2010); per arm A = ridge * I + sum x x^T, b = sum r x,
  score theta.x + alpha * sqrt(x^T A^-1 x), theta = A^-1 b; x = [1, features...].

Rewards are in [0, 1] and delayed: a pull is counted when the decision is made (n += 1, and
A += x x^T), its reward when it arrives (s += r, b += r x), so a decision without reward counts
as reward 0. ``discount`` < 1 multiplies every arm's n and s by gamma at each pull (for
non-stationary rewards). Every policy also honours an exploration floor: with probability
``floor`` the arm is drawn uniformly, whatever the policy says.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aura.errors import DefinitionError

POLICIES = ("thompson", "ucb1", "epsilon_greedy", "linucb")
BANDIT_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # no ':' (the decision id separator)
ARM_RE = re.compile(r"^[A-Za-z0-9_.=\-]{1,64}$")
MAX_ARMS = 100
MAX_FEATURES = 32
DEFAULT_REWARDS = {"click": 1.0, "recommendation_click": 1.0, "add_to_cart": 1.0, "purchase": 1.0}
DEFAULT_PARAMS: dict[str, dict[str, float]] = {
    "thompson": {"prior_a": 1.0, "prior_b": 1.0},
    "ucb1": {"c": 1.0},
    "epsilon_greedy": {"epsilon": 0.1},
    "linucb": {"alpha": 1.0, "ridge": 1.0},
}
STRATEGIES = ("hybrid", "collaborative", "content", "trending", "popular")


class BanditError(DefinitionError):
    """A bandit configuration that cannot be accepted; ``errors`` like RuleError."""


@dataclass(frozen=True, slots=True)
class BanditConfig:
    id: str
    policy: str
    arms: tuple[str, ...]  # active arms (others keep their state but are not chosen)
    params: dict[str, float]
    features: tuple[str, ...]
    floor: float
    discount: float
    rewards: dict[str, float]
    placement: str | None
    doc: dict[str, Any] = field(compare=False, repr=False)


def validate_bandit(doc: Any) -> BanditConfig:
    """Check a bandit document; raises BanditError listing every problem."""
    if not isinstance(doc, dict):
        raise BanditError([{"loc": [], "msg": "a bandit must be a JSON object"}])
    errors: list[dict[str, Any]] = []
    known = {"id", "name", "description", "policy", "arms", "params", "features", "floor", "discount",
             "rewards", "placement", "created_at", "updated_at"}
    for k in sorted(set(doc) - known):
        errors.append({"loc": [k], "msg": f"unknown key; known: {sorted(known)}"})
    bid = doc.get("id")
    if not isinstance(bid, str) or not BANDIT_ID_RE.match(bid):
        errors.append({"loc": ["id"], "msg": "id is required: 1-64 of letters, digits, '_', '.', '-'"})
    policy = doc.get("policy", "thompson")
    if policy not in POLICIES:
        errors.append({"loc": ["policy"], "msg": f"policy must be one of {list(POLICIES)}"})
        policy = "thompson"
    arms = doc.get("arms")
    if (not isinstance(arms, list) or not 1 <= len(arms) <= MAX_ARMS
            or not all(isinstance(a, str) and ARM_RE.match(a) for a in arms) or len(set(arms)) != len(arms)):
        errors.append({"loc": ["arms"], "msg": f"arms: 1 to {MAX_ARMS} distinct ids (letters, digits, _.=-)"})
        arms = []
    params = {**DEFAULT_PARAMS[policy]}
    raw_params = doc.get("params", {})
    if not isinstance(raw_params, dict):
        errors.append({"loc": ["params"], "msg": "params must be an object"})
        raw_params = {}
    for k, v in raw_params.items():
        if k not in params:
            errors.append({"loc": ["params", k], "msg": f"{policy} takes {sorted(params)}"})
        elif isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or not math.isfinite(v):
            errors.append({"loc": ["params", k], "msg": "must be a non-negative number"})
        else:
            params[k] = float(v)
    if policy == "epsilon_greedy" and params["epsilon"] > 1:
        errors.append({"loc": ["params", "epsilon"], "msg": "epsilon must be in [0, 1]"})
    if policy == "thompson" and min(params["prior_a"], params["prior_b"]) <= 0:
        errors.append({"loc": ["params"], "msg": "Beta prior parameters must be > 0"})
    if policy == "linucb" and params["ridge"] <= 0:
        errors.append({"loc": ["params", "ridge"], "msg": "ridge must be > 0"})
    features = doc.get("features", [])
    if (not isinstance(features, list) or len(features) > MAX_FEATURES
            or not all(isinstance(f, str) and f for f in features)):
        errors.append({"loc": ["features"], "msg": f"features: up to {MAX_FEATURES} names ('x' numeric, or "
                                                   "'key=value' one-hot)"})
        features = []
    if features and policy != "linucb":
        errors.append({"loc": ["features"], "msg": "features are used by the contextual policy linucb only"})
    floor = doc.get("floor", 0.0)
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 <= floor <= 0.5:
        errors.append({"loc": ["floor"], "msg": "floor (exploration probability) must be in [0, 0.5]"})
    discount = doc.get("discount", 1.0)
    if isinstance(discount, bool) or not isinstance(discount, int | float) or not 0.5 <= discount <= 1:
        errors.append({"loc": ["discount"], "msg": "discount must be in [0.5, 1]"})
    rewards = doc.get("rewards", DEFAULT_REWARDS)
    if (not isinstance(rewards, dict) or not rewards
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1
                       for v in rewards.values())):
        errors.append({"loc": ["rewards"], "msg": "rewards maps behavior event types to a reward in (0, 1]"})
        rewards = {}
    placement = doc.get("placement")
    if placement is not None and (not isinstance(placement, str) or not placement):
        errors.append({"loc": ["placement"], "msg": "placement must be a non-empty string"})
    if errors:
        raise BanditError(errors)
    return BanditConfig(id=bid, policy=policy, arms=tuple(arms), params=params, features=tuple(features),
                        floor=float(floor), discount=float(discount), rewards={k: float(v) for k, v in rewards.items()},
                        placement=placement, doc=doc)


# ---------------------------------------------------------------------------------------------
# state


@dataclass
class ArmState:
    n: float = 0.0  # pulls (discounted)
    s: float = 0.0  # reward sum (discounted)
    A: np.ndarray | None = None  # linucb
    b: np.ndarray | None = None  # linucb

    @property
    def mean(self) -> float:
        return self.s / self.n if self.n > 0 else 0.0


@dataclass
class BanditState:
    """Everything a policy has learned; serialisable to JSON and back without loss."""

    policy: str
    dim: int = 0  # linucb: len(x) including the bias
    arms: dict[str, ArmState] = field(default_factory=dict)
    pulls: int = 0  # undiscounted decisions folded
    rewards: int = 0  # undiscounted rewards folded

    def arm(self, arm_id: str, ridge: float = 1.0) -> ArmState:
        st = self.arms.get(arm_id)
        if st is None:
            st = self.arms[arm_id] = ArmState()
            if self.policy == "linucb":
                st.A = np.eye(self.dim) * ridge
                st.b = np.zeros(self.dim)
        return st

    def to_json(self) -> dict[str, Any]:
        arms: dict[str, Any] = {}
        for k, a in self.arms.items():
            d: dict[str, Any] = {"n": a.n, "s": a.s}
            if a.A is not None and a.b is not None:
                d["A"] = a.A.tolist()
                d["b"] = a.b.tolist()
            arms[k] = d
        return {"policy": self.policy, "dim": self.dim, "pulls": self.pulls, "rewards": self.rewards, "arms": arms}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BanditState:
        st = cls(policy=doc["policy"], dim=int(doc.get("dim", 0)), pulls=int(doc.get("pulls", 0)),
                 rewards=int(doc.get("rewards", 0)))
        for k, a in doc.get("arms", {}).items():
            st.arms[k] = ArmState(float(a["n"]), float(a["s"]),
                                  np.asarray(a["A"], dtype=float) if "A" in a else None,
                                  np.asarray(a["b"], dtype=float) if "b" in a else None)
        return st


# Features are clipped to +-FEATURE_CLIP before they reach a LinUCB model (A grows by x x^T per pull,
# so one extreme value would dominate every later choice); rewards to [0, 1]. The API refuses
# |x| > 1e6 at the edge (schemas/validation.py); the clip protects the model from what the stream
# carries anyway (decision records written by any producer).
FEATURE_CLIP = 1000.0


def clip_vector(x: np.ndarray) -> np.ndarray:
    """``x`` with non-finite entries zeroed and the rest clipped to +-FEATURE_CLIP (the bias stays 1)."""
    x = np.nan_to_num(np.asarray(x, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(x, -FEATURE_CLIP, FEATURE_CLIP)


def clip_reward(reward: float) -> float:
    return min(max(reward, 0.0), 1.0) if math.isfinite(reward) else 0.0


def healthy(state: BanditState) -> bool:
    """Whether every number a policy has learned is finite (and counts are not negative): a state
    that is not is quarantined by the stream and never served."""
    for a in state.arms.values():
        if not (math.isfinite(a.n) and math.isfinite(a.s) and a.n >= 0):
            return False
        if a.A is not None and not np.isfinite(a.A).all():
            return False
        if a.b is not None and not np.isfinite(a.b).all():
            return False
    return True


def new_state(cfg: BanditConfig) -> BanditState:
    return BanditState(policy=cfg.policy, dim=1 + len(cfg.features) if cfg.policy == "linucb" else 0)


def feature_vector(features: tuple[str, ...] | list[str], context: dict[str, Any]) -> np.ndarray:
    """x = [1, f1, f2, ...]: a 'key=value' feature is 1.0 when context[key] == value, a plain
    name is context[name] as a number (0 when missing or not numeric)."""
    x = np.empty(1 + len(features))
    x[0] = 1.0
    for i, name in enumerate(features, start=1):
        if "=" in name:
            key, val = name.split("=", 1)
            x[i] = 1.0 if str(context.get(key)) == val else 0.0
        else:
            v = context.get(name)
            try:
                x[i] = float(v) if v is not None and not isinstance(v, bool) else float(bool(v))
            except (TypeError, ValueError):
                x[i] = 0.0
    return clip_vector(x)


def features_dict(features: tuple[str, ...] | list[str], x: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(features, x[1:], strict=True)}


# ---------------------------------------------------------------------------------------------
# pull / update


def _argmax(scores: list[float], rng: np.random.Generator) -> int:
    best = max(scores)
    ties = [i for i, s in enumerate(scores) if s == best]
    return ties[0] if len(ties) == 1 else ties[int(rng.integers(len(ties)))]


def pull(cfg: BanditConfig, state: BanditState, arms: list[str] | tuple[str, ...], rng: np.random.Generator,
         x: np.ndarray | None = None) -> tuple[str, bool]:
    """Choose an arm among ``arms``: (arm, explored by the floor or epsilon)."""
    if not arms:
        raise ValueError("no active arm")
    if cfg.floor > 0 and rng.random() < cfg.floor:
        return arms[int(rng.integers(len(arms)))], True
    p = cfg.params
    if cfg.policy == "epsilon_greedy" and rng.random() < p["epsilon"]:
        return arms[int(rng.integers(len(arms)))], True
    stats = [state.arms.get(a) or ArmState() for a in arms]
    if cfg.policy == "thompson":
        scores = [float(rng.beta(p["prior_a"] + st.s, p["prior_b"] + max(st.n - st.s, 0.0))) for st in stats]
    elif cfg.policy in ("ucb1", "epsilon_greedy"):
        untried = [i for i, st in enumerate(stats) if st.n <= 0]
        if untried:
            return arms[untried[int(rng.integers(len(untried)))]], False
        if cfg.policy == "epsilon_greedy":
            scores = [st.mean for st in stats]
        else:
            total = sum(st.n for st in stats)
            scores = [st.mean + p["c"] * math.sqrt(2 * math.log(max(total, 1.0)) / st.n) for st in stats]
    else:  # linucb
        if x is None:
            x = np.ones(1)
        scores = []
        for a in arms:
            st = state.arms.get(a)
            if st is None or st.A is None or st.b is None:
                A, b = np.eye(len(x)) * p["ridge"], np.zeros(len(x))
            else:
                A, b = st.A, st.b
            sol = np.linalg.solve(A, np.column_stack([b, x]))
            theta, a_inv_x = sol[:, 0], sol[:, 1]
            scores.append(float(theta @ x + p["alpha"] * math.sqrt(max(float(x @ a_inv_x), 0.0))))
    return arms[_argmax(scores, rng)], False


def update_pull(cfg: BanditConfig, state: BanditState, arm: str, x: np.ndarray | None = None) -> None:
    """Fold one decision (a pull with, so far, reward 0)."""
    if cfg.discount < 1.0:
        for st in state.arms.values():
            st.n *= cfg.discount
            st.s *= cfg.discount
    st = state.arm(arm, cfg.params.get("ridge", 1.0))
    st.n += 1.0
    state.pulls += 1
    if st.A is not None and x is not None and len(x) == len(st.A):
        x = clip_vector(x)
        st.A += np.outer(x, x)


def update_reward(cfg: BanditConfig, state: BanditState, arm: str, reward: float, x: np.ndarray | None = None) -> None:
    """Fold a reward (the increase of one decision's reward, in (0, 1])."""
    reward = clip_reward(reward)
    st = state.arm(arm, cfg.params.get("ridge", 1.0))
    st.s += reward
    state.rewards += 1
    if st.b is not None and x is not None and len(x) == len(st.b):
        st.b += reward * clip_vector(x)


def update(cfg: BanditConfig, state: BanditState, arm: str, reward: float, x: np.ndarray | None = None) -> None:
    """River's verb: a pull and its reward at once (simulations, where feedback is immediate)."""
    update_pull(cfg, state, arm, x)
    if reward > 0:
        update_reward(cfg, state, arm, reward, x)


# ---------------------------------------------------------------------------------------------
# decision ids


def new_decision_id(bandit_id: str) -> str:
    return f"{bandit_id}:{uuid.uuid4().hex}"


def decision_bandit(decision_id: str | None) -> str | None:
    """The bandit id inside a decision id, or None when it is not a bandit decision id."""
    if not decision_id or ":" not in decision_id:
        return None
    bid, tail = decision_id.rsplit(":", 1)
    if len(tail) != 32 or not BANDIT_ID_RE.match(bid):
        return None
    try:
        int(tail, 16)
    except ValueError:
        return None
    return bid


def strategy_bandit_id(placement: str) -> str:
    """The bandit that picks a recommender strategy for one placement."""
    return f"strategy.{placement}"


def summary(cfg: BanditConfig, state: BanditState) -> list[dict[str, Any]]:
    """Per-arm view for the API: pulls, rewards, mean, active."""
    ids = list(cfg.arms) + [a for a in state.arms if a not in cfg.arms]
    out = []
    for a in ids:
        st = state.arms.get(a) or ArmState()
        out.append({"arm": a, "active": a in cfg.arms, "pulls": st.n, "reward": st.s, "mean": st.mean})
    return out
