"""The user side of the recommender signals (streams/usersignals.py): the pure fold (pair weights from a
user's sequence, fences, also-bought from carts and purchases, monitoring counts), the user script's
argument layout and the MF items a batch moved."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from aura.models.mf import OnlineMF
from aura.state.cooccurrence import SeqEntry, model_of
from schemas.events import Behavior
from streams.intake import Accepted
from streams.usersignals import CoocParams, UserSignals, fold, item_candidates, user_lua_args

P = CoocParams(window=3, decay=0.5, forward=1.0, backward=0.5, seq_max=4)


def ev(offset: int, user: str, etype: str, item: str | None, t: int = 0, part: int = 0, **raw) -> Accepted:
    items = tuple(raw.pop("items", ()))
    return Accepted(Behavior(f"e{part}-{offset}", etype, user, item, t or 1000 + offset, items=items, raw=raw),
                    part, offset)


def test_pairs_are_weighted_by_recency_in_both_directions():
    f = fold([ev(1, "u", "view", "a"), ev(2, "u", "view", "b"), ev(3, "u", "view", "c")], {}, {}, P)
    # c arrives after b (k=0, weight 1) and a (k=1, weight 0.5); b after a
    assert f.items["c"].cooc == {"b": 0.5, "a": 0.25}  # backward
    assert f.items["b"].cooc == {"a": 0.5, "c": 1.0}   # backward b -> a, then forward b -> c
    assert f.items["a"].cooc == {"b": 1.0, "c": 0.5}   # forward, decayed
    assert f.items["c"].weight == 1.0 and f.items["c"].entries == 1
    assert f.items["a"].weight == 1.0 and f.items["a"].entries == 3  # its own event, then b's and c's
    assert f.items["a"].fences == {0: (None, 3)}
    d = f.users["u"]
    assert [e.item for e in d.seq] == ["c", "b", "a"] and d.offset == 3
    assert set(d.seen) == {"a", "b", "c"}


def test_events_at_or_below_the_user_fence_are_skipped():
    events = [ev(1, "u", "view", "a"), ev(2, "u", "view", "b")]
    f = fold(events, {"u": 1}, {"u": [SeqEntry("a", 1.0, 1001, False)]}, P)
    assert [e.item for e in f.users["u"].new] == ["b"]
    assert set(f.items) == {"a", "b"}  # the b event pairs with the stored a
    assert all(a.fences == {0: (None, 2)} for a in f.items.values())
    assert fold(events, {"u": 2}, {}, P).users == {}


def test_events_at_or_below_an_item_fence_are_left_out_of_that_item_only():
    events = [ev(1, "u", "view", "a"), ev(2, "u", "view", "b"), ev(3, "u", "view", "c")]
    seqs: dict[str, list[SeqEntry]] = {"u": []}
    pairs = item_candidates(events, {}, seqs, P)
    assert pairs == {("a", 0), ("b", 0), ("c", 0)}
    # a crash after the item scripts of a and b (fences at 2) but before the user fence moved
    f = fold(events, {}, seqs, P, {("a", 0): 2, ("b", 0): 2, ("c", 0): None})
    assert f.items["a"].cooc == {"c": 0.5} and f.items["a"].weight == 0.0 and f.items["a"].fences == {0: (2, 3)}
    assert f.items["b"].cooc == {"c": 1.0} and f.items["b"].entries == 1
    assert f.items["c"].cooc == {"b": 0.5, "a": 0.25} and f.items["c"].weight == 1.0
    # every fence past the batch: nothing left for the item side, the user side unchanged
    done = fold(events, {}, seqs, P, {ip: 3 for ip in pairs})
    assert all(a.entries == 0 for a in done.items.values())
    assert [e.item for e in done.users["u"].seq] == ["c", "b", "a"]


def test_window_sequence_bound_and_repeat_interaction():
    events = [ev(k, "u", "view", it) for k, it in enumerate(["a", "b", "c", "d", "e", "b"], start=1)]
    f = fold(events, {}, {}, P)
    assert [e.item for e in f.users["u"].seq] == ["b", "e", "d", "c"]  # bounded at 4, b moved to the front
    assert "b" not in f.items["b"].cooc            # never paired with itself
    last = fold(events[5:], {}, {"u": [SeqEntry(x, 1.0, 1000, False) for x in "edcba"]}, P)
    assert set(last.items["b"].cooc) == {"e", "d", "c"}  # window 3


def test_also_bought_pairs_only_carts_and_purchases():
    order = {"order_id": "o1", "lines": [{"item_id": "x", "quantity": 1, "unit_price": 2.0},
                                         {"item_id": "y", "quantity": 1, "unit_price": 3.0}]}
    events = [ev(1, "u", "view", "v"), ev(2, "u", "add_to_cart", "c"), ev(3, "u", "purchase", None, order=order)]
    f = fold(events, {}, {}, P)
    bought = {(item, j): w for item, a in f.items.items() for j, w in a.bought.items()}
    assert bought == {("c", "x"): 1, ("x", "c"): 1, ("c", "y"): 1, ("y", "c"): 1, ("x", "y"): 1, ("y", "x"): 1}
    assert [r[2] for r in f.interactions] == ["v", "c", "x", "y"]


def test_impressions_and_clicks_count_per_served_model_and_do_not_pair():
    events = [ev(1, "u", "impression", None, items=("a", "b"), recommendation_id="hybrid+ease:3:abc"),
              ev(2, "u", "recommendation_click", "a", recommendation_id="hybrid+ease:3:abc")]
    f = fold(events, {}, {}, P)
    assert f.monitor["hybrid+ease"] == {"impressions": 1, "impressed_items": 2, "clicks": 1}
    assert model_of("trending:0:x") == "trending" and model_of(None) is None and model_of("plain") is None


def test_user_lua_argument_layout():
    f = fold([ev(1, "u", "view", "a")], {}, {}, P)
    args = user_lua_args(None, f.users["u"], "00ff")
    assert args[:2] == ["", "1"] and len(args) == 3
    blob = json.loads(args[2])
    assert blob["q"] == [e.encode() for e in f.users["u"].seq] and blob["m"] == "00ff"
    assert blob["s"] == [str(f.users["u"].seen["a"]), "a"]  # ZADD order: score (exact text), member
    assert json.loads(user_lua_args(3, f.users["u"], None)[2])["m"] == ""  # no factors: left alone


def test_learn_returns_the_positives_and_their_sampled_negatives():
    """The readers rank with the item factors in Redis: every item a batch moved is published, the
    negatives too (they are pushed down), not only the positives."""
    u = UserSignals.__new__(UserSignals)
    u.mf = OnlineMF(dim=4, seed=0)
    for i in "abcdefgh":
        u.mf.item_row(i)
    before = u.mf.V.copy()
    f = fold([Accepted(Behavior(f"e{n}", "add_to_cart", "u", item, 1000 + n), 0, n)
              for n, item in enumerate("ab")], {}, {}, CoocParams())
    moved = u.learn(f, {})
    changed = {u.mf.ids[r] for r in range(len(u.mf.ids)) if not np.array_equal(u.mf.V[r], before[r])}
    assert {"a", "b"} <= set(moved) and changed <= set(moved) and len(changed) > 2  # negatives moved too
    assert u.mf.take_moved() == []  # taken once


def test_factors_remembered_for_a_user_redis_no_longer_knows_are_not_learned_on():
    """An erased user's factors stay in the process that learned them; the user's next batch finds none
    in Redis and starts afresh, like any new user (the kept user goes on from its Redis factors)."""
    u = UserSignals.__new__(UserSignals)
    u.mf = OnlineMF(dim=4, seed=0)
    u.mf.users["gone"] = np.full(4, 9.0, dtype=np.float32)
    f = fold([Accepted(Behavior(f"e{n}", "add_to_cart", who, "a", 1000 + n), 0, n)
              for n, who in enumerate(["gone", "kept"])], {}, {}, CoocParams())
    assert {p[0] for p in f.positives} == {"gone", "kept"}
    u.learn(f, {"kept": np.full(4, 0.5, dtype=np.float32)})
    assert np.abs(u.mf.users["gone"]).max() < 1.0  # fresh factors, not the remembered 9s
    assert np.abs(u.mf.users["kept"] - 0.5).max() < 0.1


@pytest.mark.parametrize("moved_to", [2, 3])
async def test_an_item_whose_fence_moved_is_re_read_and_re_folded_without_applying_twice(moved_to: int):
    """Another worker moved item a's fence (to 2: an earlier event; to 3: this batch's event, already
    applied there) between our fence read and our script: the script refuses a, the batch is folded
    again with a's fence re-read, and a gets only what lies above it; b, applied the first time, is
    not sent again."""
    stored = {("a", 0): None, ("b", 0): None}  # what Redis holds
    sent: list[dict[str, Any]] = []

    class ItemSide:
        def __init__(self) -> None:
            self.cache: dict[tuple[str, int], int] = {}
            self.reads: list[set[tuple[str, int]]] = []

        async def fences_for(self, pairs: set[tuple[str, int]], fresh: set[tuple[str, int]] | None = None
                             ) -> dict[tuple[str, int], int | None]:
            fresh = fresh or set()
            out = {ip: self.cache[ip] for ip in pairs if ip in self.cache and ip not in fresh}
            self.reads.append(pairs - out.keys())
            out.update({ip: stored[ip] for ip in pairs - out.keys()})
            return out

        async def apply(self, items: dict[str, Any]) -> tuple[int, set[str]]:
            sent.append({i: (a.entries, dict(a.cooc), a.weight) for i, a in items.items() if a.entries})
            if len(sent) == 1:
                stored[("a", 0)] = moved_to  # the other worker's script for a ran first
            conflicts = set()
            for i, a in items.items():
                if not a.entries:
                    continue
                if any(stored[(i, part)] != expected for part, (expected, _new) in a.fences.items()):
                    conflicts.add(i)
                    continue
                for part, (_expected, new) in a.fences.items():
                    stored[(i, part)] = self.cache[(i, part)] = new
            return 0, conflicts

    u = UserSignals.__new__(UserSignals)
    u.item_side, u.p = ItemSide(), P
    events = [ev(2, "u", "view", "b"), ev(3, "u", "view", "a")]
    f, n_sent = await u.fold_and_apply_items(events, {}, {"u": []})
    assert n_sent == 3  # b (its own event, then a's pair), a
    assert sent[0] == {"b": (2, {"a": 1.0}, 1.0), "a": (1, {"b": 0.5}, 1.0)}
    # second round: only a's fence re-read from Redis; a's event (offset 3) is sent again only if
    # the fence it found is below it
    assert u.item_side.reads[1] == {("a", 0)}
    assert sent[1] == ({"a": (1, {"b": 0.5}, 1.0)} if moved_to < 3 else {})
    assert stored == {("a", 0): 3, ("b", 0): 3}
    assert [e.item for e in f.users["u"].seq] == ["a", "b"]
