"""Replaced sorted sets on the real Redis (aura/state/cooccurrence.py ``REPLACE_ZSET_LUA``, and the MF
candidates of the user script, streams/usersignals.py ``USER_LUA``): members sent as JSON and scores
as float64 bytes come back as exactly the doubles sent (no text in between loses a bit), across
more than one ZADD chunk, with members that JSON must escape; the old set is replaced, not merged;
the guarded replacement writes only while the user's state exists (an erased user's list is not
brought back); the user script writes candidates only when given and only when its fence matches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aura.state.cooccurrence import REPLACE_IF_KNOWN_LUA, REPLACE_ZSET_LUA, replace_zset_args
from schemas.events import Behavior
from streams.intake import Accepted
from streams.usersignals import USER_LUA, CoocParams, fold, user_lua_args

pytestmark = pytest.mark.integration


def stored(redis_client, key: str) -> dict[str, float]:
    return dict(redis_client.zrange(key, 0, -1, withscores=True))


def test_a_replaced_sorted_set_keeps_every_score_bit_for_bit(isolated, redis_client) -> None:
    rng = random.Random(3)
    key = f"{isolated.redis.prefix}:zset"
    redis_client.zadd(key, {"stale": 1.0})
    script = redis_client.register_script(REPLACE_ZSET_LUA)
    pairs = [(f'item "{k}" é\\|', rng.uniform(-1e6, 1e6) * rng.random() ** 9) for k in range(600)]
    pairs += [("tiny", 5e-324), ("big", 1.7976931348623157e308), ("neg-zero", -0.0)]
    assert script(keys=[key], args=replace_zset_args(pairs)) == len(pairs)
    assert stored(redis_client, key) == dict(pairs)  # "stale" is gone, every double exact
    assert script(keys=[key], args=replace_zset_args([])) == 0
    assert redis_client.exists(key) == 0


def test_a_users_list_is_replaced_only_while_the_user_is_known(isolated, redis_client) -> None:
    p = isolated.redis.prefix
    mf, state = f"{p}:{{u}}:mf", f"{p}:{{u}}:state"
    script = redis_client.register_script(REPLACE_IF_KNOWN_LUA)
    assert script(keys=[mf, state], args=replace_zset_args([("x", 1.0)])) == -1  # erased (or never known)
    assert redis_client.exists(mf) == 0
    redis_client.hset(state, "_off", 4)
    assert script(keys=[mf, state], args=replace_zset_args([("x", 1.0), ("y", 0.5)])) == 2
    assert stored(redis_client, mf) == {"x": 1.0, "y": 0.5}


def test_the_user_script_replaces_mf_candidates_only_when_given(isolated, redis_client) -> None:
    p = isolated.redis.prefix
    keys = [f"{p}:{{u}}:state", f"{p}:{{u}}:seq", f"{p}:{{u}}:seen", f"{p}:{{u}}:mf"]
    script = redis_client.register_script(USER_LUA)
    d = fold([Accepted(Behavior("e1", "view", "u", "a", 1001), 0, 1)], {}, {}, CoocParams()).users["u"]
    scores = np.array([0.75, 1 / 3, -2.5], dtype=np.float32)  # the MF learner's float32 scores
    assert script(keys=keys, args=user_lua_args(None, d, "00ff", (["x", "y", "z"], scores))) == 1
    assert stored(redis_client, keys[3]) == {"x": 0.75, "y": float(np.float32(1 / 3)), "z": -2.5}
    assert redis_client.hget(keys[0], "_off") == "1" and redis_client.hget(keys[0], "mf") == "00ff"
    d.offset = 2
    assert script(keys=keys, args=user_lua_args(1, d, None)) == 1  # no candidates: the old ones stay
    assert set(stored(redis_client, keys[3])) == {"x", "y", "z"}
    d.offset = 3
    stale = user_lua_args(1, d, None, (["w"], np.array([1.0])))  # the fence is 2 now: nothing is written
    assert script(keys=keys, args=stale) == 0
    assert set(stored(redis_client, keys[3])) == {"x", "y", "z"}
