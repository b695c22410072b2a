"""The readers' MF item factors (aura/ranking/factors.py): the matrix built from the stored hash, and a
user's MF candidates scored from it equal to what the learner ranks with the same factors."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from aura.keys import RedisKeys
from aura.models.mf import OnlineMF
from aura.ranking.factors import ItemFactors, factor_matrix
from aura.state.cooccurrence import encode_vector


def learned() -> OnlineMF:
    mf = OnlineMF(dim=8, seed=3)
    rng = np.random.default_rng(1)
    items = [f"i{n}" for n in range(60)]
    mf.learn_many([(f"u{rng.integers(5)}", items[rng.integers(60)], 1.0) for _ in range(400)])
    return mf


def stored(mf: OnlineMF) -> dict[str, str]:
    return {item: encode_vector(mf.V[mf.index[item]]) for item in mf.ids}


class HashRedis:
    """``HSCAN`` over one dict, a page at a time (what ``ItemFactors.load`` calls)."""

    def __init__(self, data: dict[str, str], page: int) -> None:
        self.data, self.page, self.calls = data, page, 0

    async def hscan(self, key: str, cursor: int, count: int = 10) -> tuple[int, dict[str, str]]:
        self.calls += 1
        items = list(self.data.items())[cursor:cursor + self.page]
        nxt = cursor + self.page
        return (nxt if nxt < len(self.data) else 0), dict(items)


def test_candidates_scored_at_read_time_equal_the_learners_ranking():
    mf = learned()
    ids, matrix = factor_matrix(stored(mf))
    assert ids == mf.ids and matrix.shape == (len(mf.ids), 9)
    f = ItemFactors(None, RedisKeys("t"))
    f.ids, f.matrix = ids, matrix
    for user in mf.users:
        got_ids, got = f.top(encode_vector(mf.users[user]), 20)
        want_ids, want = mf.top_arrays(user, 20)
        assert got_ids == want_ids and np.allclose(got, want)
        assert list(got) == sorted(got, reverse=True)


def test_no_candidates_without_factors_or_of_another_dimension():
    mf = learned()
    f = ItemFactors(None, RedisKeys("t"))
    assert f.top(encode_vector(mf.users["u1"]), 10)[0] == []  # nothing loaded yet
    f.ids, f.matrix = factor_matrix(stored(mf))
    assert f.top(None, 10)[0] == [] and f.top("", 10)[0] == []
    assert f.top(encode_vector(np.ones(4, dtype=np.float32)), 10)[0] == []  # 4 factors against 8
    assert len(f.top(encode_vector(mf.users["u1"]), 500)[0]) == len(mf.ids)  # at most the catalog


def test_rows_of_another_width_are_left_out():
    raw = {"a": encode_vector(np.ones(5, dtype=np.float32)), "b": encode_vector(np.zeros(5, dtype=np.float32)),
           "odd": encode_vector(np.ones(3, dtype=np.float32))}
    ids, matrix = factor_matrix(raw)
    assert ids == ["a", "b"] and matrix.shape == (2, 5)
    assert factor_matrix({})[0] == []


def test_load_reads_every_page_and_reloads_only_when_stale():
    async def run() -> None:
        mf = learned()
        r: Any = HashRedis(stored(mf), page=7)
        f = ItemFactors(r, RedisKeys("t"), refresh_s=3600)
        await f.refresh()  # the first one waits for the load
        assert f.ids == mf.ids and r.calls == -(-len(mf.ids) // 7)
        calls = r.calls
        await f.refresh()  # fresh: nothing read
        assert r.calls == calls
        f.loaded_at -= 7200  # stale: reloaded behind the caller, the old matrix serves meanwhile
        r.data = {"only": encode_vector(np.ones(9, dtype=np.float32))}
        await f.refresh()
        assert f.ids == mf.ids
        await f.loading
        assert f.ids == ["only"]

    asyncio.run(run())
