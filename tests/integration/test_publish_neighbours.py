"""Neighbour lists normalised inside Redis (aura/state/cooccurrence.py ``NEIGHBOURS_LUA``, called by
streams/itemsignals.py ``ItemSignals.publish_due``) on the real Redis: every published list is
bit-equal to ``normalise_neighbours`` (the Python formula the worker applied before) on the same raw
list and popularities: the same members (ties at the top-k boundary broken by raw rank, members
without popularity left out, a list shorter than k, an item without popularity emptied) and the same
doubles; the old list is replaced and the publish mark set."""

from __future__ import annotations

import random

import pytest

from aura import bootstrap
from aura.keys import keys_for
from aura.state.cooccurrence import (
    NEIGHBOURS_LUA,
    decode_published,
    neighbours_args,
    normalise_neighbours,
    published_field,
    score_pairs,
)
from streams.itemsignals import ItemSignals
from streams.runtime import Resources

pytestmark = pytest.mark.integration

NAMES = [f"j{n}" for n in range(400)] + ["a|b", "é ü", "{tag}", "x y", "7", "0.5"]


def published(redis_client, key: str) -> list[tuple[str, float]]:
    return sorted(redis_client.zrange(key, 0, -1, withscores=True))


def reference(redis_client, raw_key: str, pop_i: float, pops: dict[str, float], k: int, m: int
              ) -> list[tuple[str, float]]:
    lst = score_pairs(redis_client.execute_command("ZREVRANGE", raw_key, 0, m - 1, "WITHSCORES"))
    powered = {j: p ** 0.5 for j, p in pops.items() if p > 0}
    return sorted(normalise_neighbours(pop_i, lst, pops, k, 0.5, powered))


def random_lists(rng: random.Random) -> tuple[dict[str, float], dict[str, float]]:
    """Raw scores and popularities, with many equal normalised scores (ties across the top-k cut),
    members without popularity and popularities of every magnitude."""
    raw = {j: rng.choice([1.0, 2.0, 2.0, 3.0, rng.random() * 40, rng.randint(1, 9) / 7]) for j in
           rng.sample(NAMES, rng.choice([5, 99, 100, 101, 160, 400]))}
    pops = {j: rng.choice([4.0, 4.0, 9.0, rng.random() * 1e4, rng.random() * 1e-3]) for j in NAMES
            if rng.random() < 0.85}
    return raw, pops


@pytest.mark.parametrize("seed", range(12))
def test_the_script_publishes_what_the_python_formula_does(isolated, redis_client, seed: int) -> None:
    rng = random.Random(seed)
    p = isolated.redis.prefix
    raw_key, sim_key, state_key = f"{p}:{{i}}:cooc", f"{p}:{{i}}:sim", f"{p}:{{i}}:state"
    raw, pops = random_lists(rng)
    redis_client.zadd(raw_key, raw)
    redis_client.zadd(sim_key, {"stale": 1.0})
    k, m = rng.choice([(100, 150), (10, 150), (100, 60), (3, 400)])
    pop_i = rng.choice([9.0, 1234.5, rng.random()])
    script = redis_client.register_script(NEIGHBOURS_LUA)
    names = redis_client.zrevrange(raw_key, 0, m - 1)
    powered = {j: v ** 0.5 for j, v in pops.items() if v > 0}
    n = script(keys=[raw_key, sim_key, state_key],
               args=neighbours_args(pop_i, names, powered, k, published_field("cooc"), "5.0|7.5"))
    want = reference(redis_client, raw_key, pop_i, pops, k, m)
    assert want and n == len(want)
    assert published(redis_client, sim_key) == want  # same members, same doubles
    assert redis_client.hget(state_key, "pub:cooc") == "5.0|7.5"
    # an item without popularity: its list is emptied, the mark still set
    assert script(keys=[raw_key, sim_key, state_key],
                  args=neighbours_args(0.0, names, powered, k, published_field("cooc"), "0.0|8.0")) == 0
    assert redis_client.exists(sim_key) == 0 and redis_client.hget(state_key, "pub:cooc") == "0.0|8.0"


async def test_publish_due_publishes_the_reference_lists_of_every_due_item(isolated, redis_client) -> None:
    rng = random.Random(7)
    s = isolated.replace(recs_publish_min_growth=0.0)
    keys = keys_for(s)
    items = [f"i{n}" for n in range(120)] + ["i|é"]
    pops = {j: float(rng.randint(1, 300)) for j in NAMES + items if rng.random() < 0.9}
    pops["i0"] = 5.0
    redis_client.zadd(keys.recs_popular(), pops)
    for i in items:
        redis_client.zadd(keys.recs_item_cooc(i), {j: float(rng.randint(1, 6)) for j in rng.sample(NAMES, 180)})
        redis_client.zadd(keys.recs_item_bought(i), {j: rng.random() for j in rng.sample(NAMES, 20)})
        redis_client.zadd(keys.recs_item_similar(i, "cooc"), {"stale": 1.0})
    r = bootstrap.redis_async(s)
    try:
        owner = ItemSignals(Resources(settings=s, redis=r, session=None, keys=keys, durable=None))  # type: ignore[arg-type]
        owner.pops = {i: pops.get(i, 0.0) for i in items}
        owner.dirty, owner.dirty_bought = set(items), set(items[:30])
        assert await owner.publish_due(force=True) == len(items) + 30
    finally:
        await r.aclose()
    k, m = s.recs.topk, s.recs.cooc_read
    for i in items:
        for source, raw_key in (("cooc", keys.recs_item_cooc(i)), ("bought", keys.recs_item_bought(i))):
            if source == "bought" and i not in items[:30]:
                continue
            want = reference(redis_client, raw_key, pops.get(i, 0.0), pops, k, m)
            assert published(redis_client, keys.recs_item_similar(i, source)) == want, (i, source)
            assert decode_published(redis_client.hget(keys.recs_item_state(i), published_field(source)))[0] == (
                pops.get(i, 0.0))
    assert len(published(redis_client, keys.recs_item_similar("i1", "cooc"))) == k
    assert not owner.dirty and not owner.dirty_bought
