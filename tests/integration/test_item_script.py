"""The item script (streams/itemsignals.py ``ITEM_LUA``) on the real Redis: the co-occurrence and
also-bought increments of one batch, summed into the stored scores with one ZMSCORE and one ZADD per
500 neighbours, leave every score bit-equal to one ZINCRBY per neighbour (the per-entry way), for
members new and old, more than one chunk of them, and the trim to the cap; the fences are compared
and moved as before, and a stale fence applies nothing."""

from __future__ import annotations

import random

import pytest

from aura.state.cooccurrence import ItemDelta
from streams.itemsignals import ITEM_LUA, item_lua_args

pytestmark = pytest.mark.integration

HALF_LIFE = 3_600_000.0


def scores(redis_client, key: str) -> dict[str, float]:
    return dict(redis_client.zrange(key, 0, -1, withscores=True))


@pytest.mark.parametrize("seed", range(4))
def test_the_item_script_sums_like_one_zincrby_per_neighbour(isolated, redis_client, seed: int) -> None:
    rng = random.Random(seed)
    p = isolated.redis.prefix
    state, cooc, bought, meta = (f"{p}:{{i}}:state", f"{p}:{{i}}:cooc", f"{p}:{{i}}:bought", f"{p}:{{i}}:meta")
    ref_cooc, ref_bought = f"{p}:ref:cooc", f"{p}:ref:bought"
    cap = rng.choice([40, 700, 5000])
    names = [f"j{k}" for k in range(1500)]
    for key, ref in ((cooc, ref_cooc), (bought, ref_bought)):
        old = {j: rng.random() * 50 for j in rng.sample(names, 300)}
        redis_client.zadd(key, old)
        redis_client.zadd(ref, old)
    script = redis_client.register_script(ITEM_LUA)
    for batch in range(3):
        d = ItemDelta()
        d.touch(None if batch == 0 else batch - 1, 0, batch)
        d.hit(0, batch, 1_000_000 + batch, 1.0)
        d.cooc = {j: rng.random() * 3 for j in rng.sample(names, rng.choice([1, 120, 1100]))}
        d.bought = {j: float(rng.randint(1, 3)) for j in rng.sample(names, rng.choice([0, 30]))}
        assert script(keys=[state, cooc, bought, meta], args=item_lua_args(d, cap, HALF_LIFE))
        for ref, inc in ((ref_cooc, d.cooc), (ref_bought, d.bought)):
            for j, w in inc.items():
                redis_client.zincrby(ref, w, j)
            if inc and redis_client.zcard(ref) > cap:
                redis_client.zremrangebyrank(ref, 0, -cap - 1)
        assert scores(redis_client, cooc) == scores(redis_client, ref_cooc)
        assert scores(redis_client, bought) == scores(redis_client, ref_bought)
        assert redis_client.hget(state, "f:0") == str(batch)
    # a fence that moved meanwhile: nothing applied
    before = scores(redis_client, cooc)
    d = ItemDelta()
    d.touch(0, 0, 9)
    d.cooc = {"j1": 1.0}
    assert script(keys=[state, cooc, bought, meta], args=item_lua_args(d, cap, HALF_LIFE)) == 0
    assert scores(redis_client, cooc) == before
