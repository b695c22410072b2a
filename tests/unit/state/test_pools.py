"""The per-user candidate pool's stored format (aura/state/pools.py), as contract checks: what the worker
writes (``pool_record``) is what the API reads back (``pool_ids``, the head/rest split), every field
included, for pools of every size; and the wanted set's members survive any user id."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from aura.ranking.blend import SOURCES
from aura.state.pools import (
    CANDS_FIELDS,
    CANDS_HEAD,
    CANDS_LIMIT,
    CANDS_REST,
    CANDS_SEP,
    WANTED_SEP,
    Pool,
    parse_wanted,
    pool_ids,
    pool_record,
    pool_size,
    wanted_member,
)


def random_pool(rng: random.Random, n: int, extra: int = 20) -> Pool:
    """A pool of ``n`` candidates out of an index of ``n + extra`` (the blend's candidates), with ties,
    negative scores and each source's presence mask (in no particular order)."""
    names = rng.sample(SOURCES, rng.randint(1, len(SOURCES)))
    all_ids = [f"i{j}" for j in rng.sample(range(10 * (n + extra) + 10), n + extra)]
    index = {i: j for j, i in enumerate(all_ids)}
    ids = rng.sample(all_ids, n)
    scores = np.array([rng.choice([0.5, 1.0, rng.uniform(-1, 3), rng.random() / 3]) for _ in ids])
    masks = {s: np.array([rng.random() < 0.5 for _ in all_ids]) for s in names}
    weights = {s: round(rng.random(), 3) for s in names}
    return Pool(ids=ids, scores=scores, masks=masks, strategy=rng.choice(["hybrid", "hybrid:cold_start"]),
                weights=weights, model="", index=index, asked={**weights, "mf": 0.3})


def stored(record: dict[str, str]) -> dict[str, str]:
    """The pool hash as HGETALL returns it after the worker's fenced write (``off`` and ``time`` added)."""
    return {"off": "42", "time": "1700000000000", **record}


@pytest.mark.parametrize("n", [0, 1, 2, CANDS_HEAD - 1, CANDS_HEAD, CANDS_HEAD + 1, 120, pool_size(CANDS_LIMIT)])
def test_pool_record_round_trips_every_field(n: int) -> None:
    rng = random.Random(n)
    pool = random_pool(rng, n)
    record = pool_record(pool, SOURCES)
    assert record is not None
    best = sorted(zip(pool.ids, pool.scores.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
    # the fields: the head's always, the rest's only when the pool is longer than its head
    assert set(record) == {"weights", "used", "strategy", "ids", "scores", "sources"} | (
        set(CANDS_REST) if n > CANDS_HEAD else set())
    assert set(stored(record)) <= {*CANDS_FIELDS, *CANDS_REST, "time"}
    # ids best first in the order (-score, id)
    assert pool_ids(stored(record)) == [i for i, _s in best]
    # scores as exact decimal text
    text = ",".join(x for x in (record["scores"], record.get("scores_rest")) if x)
    assert ([float(x) for x in text.split(",")] if text else []) == [s for _i, s in best]
    # each item's sources, in the ranking's order of sources
    spelled = CANDS_SEP.join(x for x in (record["sources"], record.get("sources_rest")) if x is not None)
    got = [x.split(",") if x else [] for x in spelled.split(CANDS_SEP)] if n else []
    assert got == [[s for s in SOURCES if s in pool.masks and pool.masks[s][pool.index[i]]] for i, _s in best]
    # the weights asked for (the placement's) and used
    assert json.loads(record["weights"]) == pool.asked and json.loads(record["used"]) == pool.weights
    assert record["strategy"] == pool.strategy


@pytest.mark.parametrize("n", [0, 1, CANDS_HEAD - 1, CANDS_HEAD, CANDS_HEAD + 1, pool_size(CANDS_LIMIT)])
def test_the_head_holds_the_best_ids_and_the_rest_the_others(n: int) -> None:
    pool = random_pool(random.Random(100 + n), n)
    record = pool_record(pool, SOURCES)
    assert record is not None
    head = record["ids"].split(CANDS_SEP) if record["ids"] else []
    rest = record["ids_rest"].split(CANDS_SEP) if "ids_rest" in record else []
    assert len(head) == min(n, CANDS_HEAD) and len(rest) == max(n - CANDS_HEAD, 0)
    assert head + rest == pool_ids(record)
    for field, rest_field, sep in (("scores", "scores_rest", ","), ("sources", "sources_rest", CANDS_SEP)):
        assert len(record[field].split(sep)) == max(len(head), 1)  # ("" when empty: one empty part)
        assert (len(record[rest_field].split(sep)) == len(rest)) if rest else (rest_field not in record)


def test_the_head_serves_every_limit_the_pool_answers() -> None:
    # a request of limit l reads the pool's first 3 * l ids (at least 30): the pool answers the limits
    # whose pool size is the worker's, and their first read must fit in the head
    limits = [lim for lim in range(1, 200) if pool_size(lim) == pool_size(CANDS_LIMIT)]
    assert max(max(3 * lim, 30) for lim in limits) <= CANDS_HEAD


def test_an_id_with_the_separator_has_no_record() -> None:
    pool = random_pool(random.Random(7), 10)
    odd = pool.ids[3]
    pool.ids[3] = f"a{CANDS_SEP}b"
    pool.index[pool.ids[3]] = pool.index[odd]
    assert pool_record(pool, SOURCES) is None


def test_pool_ids_of_no_pool() -> None:
    assert pool_ids({}) == []
    assert pool_ids({"ids": ""}) == []


@pytest.mark.parametrize("user", ["u1", "", "u|1", f"u{WANTED_SEP}1", f"{WANTED_SEP}", f"u{WANTED_SEP}{WANTED_SEP}",
                                  "ünïcødé 用户", "a,b;c d"])
@pytest.mark.parametrize("placement", ["default", "homepage", "product_page", "p|1"])
def test_wanted_members_round_trip_any_user_id(placement: str, user: str) -> None:
    member = wanted_member(placement, user)
    assert parse_wanted(member) == (placement, user)
    assert member.startswith(placement + WANTED_SEP)


def test_members_spell_placement_then_user() -> None:
    assert parse_wanted(wanted_member("default", "u|1\x1fodd")) == ("default", "u|1\x1fodd")
