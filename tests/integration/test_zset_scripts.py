"""Replaced sorted sets on the real Redis (aura/state/cooccurrence.py ``REPLACE_ZSET_LUA``): members sent
as JSON and scores as float64 bytes come back as exactly the doubles sent (no text in between loses a
bit), across more than one ZADD chunk, with members that JSON must escape; the old set is replaced, not
merged. And the user script (streams/usersignals.py ``USER_LUA``) writes the user's MF factors only
when given and only when its fence matches."""

from __future__ import annotations

import random

import pytest

from aura.state.cooccurrence import REPLACE_ZSET_LUA, replace_zset_args
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


def test_the_user_script_writes_the_mf_factors_only_when_its_fence_matches(isolated, redis_client) -> None:
    p = isolated.redis.prefix
    keys = [f"{p}:{{u}}:state", f"{p}:{{u}}:seq", f"{p}:{{u}}:seen"]
    script = redis_client.register_script(USER_LUA)
    d = fold([Accepted(Behavior("e1", "view", "u", "a", 1001), 0, 1)], {}, {}, CoocParams()).users["u"]
    assert script(keys=keys, args=user_lua_args(None, d, "00ff")) == 1
    assert redis_client.hget(keys[0], "_off") == "1" and redis_client.hget(keys[0], "mf") == "00ff"
    d.offset = 2
    assert script(keys=keys, args=user_lua_args(1, d, None)) == 1  # no factors: the old ones stay
    assert redis_client.hget(keys[0], "mf") == "00ff" and redis_client.hget(keys[0], "_off") == "2"
    d.offset = 3
    assert script(keys=keys, args=user_lua_args(1, d, "11ee")) == 0  # the fence is 2 now: nothing is written
    assert redis_client.hget(keys[0], "mf") == "00ff" and redis_client.hget(keys[0], "_off") == "2"
