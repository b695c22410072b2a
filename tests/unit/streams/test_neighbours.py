"""User neighbours (streams/neighbours.py): the pure fold (candidates from the items' recent actors,
one-sided, bounded, offset-fenced, purchases' order lines) and the Lua argument layout."""

from __future__ import annotations

import math

import pytest

from schemas.events import Behavior
from streams.intake import Accepted
from streams.neighbours import fold, user_args


def ev(k: int, user: str, item: str | None, etype: str = "view", part: int = 0, **raw: object) -> Accepted:
    return Accepted(Behavior(f"e{k}", etype, user, item, 1000 + k, raw=dict(raw)), part, k)


def test_actors_of_an_item_become_neighbours_weighted_by_how_many():
    f = fold([ev(0, "a", "x"), ev(1, "b", "x"), ev(2, "c", "x")], {}, {}, actors_max=10)
    assert dict(f.increments["b"]) == {"a": 1.0}
    assert dict(f.increments["c"]) == pytest.approx({"b": 1 / math.sqrt(2), "a": 1 / math.sqrt(2)})
    assert "a" not in f.increments  # one-sided: a's list changes when a acts
    assert f.offsets == {"a": 0, "b": 1, "c": 2}
    assert f.actors["x"] == {"a": 1000, "b": 1001, "c": 1002}


def test_stored_actors_are_bounded_and_the_user_is_never_their_own_neighbour():
    f = fold([ev(5, "u", "x"), ev(6, "v", "x")], {}, {"x": ["u", "p", "q"]}, actors_max=2)
    assert dict(f.increments["u"]) == pytest.approx({"p": 1 / math.sqrt(2), "q": 1 / math.sqrt(2)})
    assert dict(f.increments["v"]) == pytest.approx({"u": 1 / math.sqrt(2), "p": 1 / math.sqrt(2)})  # q fell out


def test_fence_skips_replayed_events_and_non_interactions_only_move_the_fence():
    events = [ev(0, "a", "x"), ev(1, "b", "x"), ev(2, "b", None, "page_view"), ev(3, "b", "y", "impression")]
    f = fold(events, {"b": 1}, {"x": ["a"]}, actors_max=10)
    assert "b" not in f.increments and f.offsets["b"] == 3
    again = fold(events, {"a": 0, "b": 3}, {"x": ["a", "b"]}, actors_max=10)
    assert not again.increments and not again.offsets


def test_purchase_order_lines_are_interactions():
    f = fold([ev(0, "a", "x"), ev(1, "b", None, "purchase", order={"lines": [{"item_id": "x"}, {"item_id": "y"}]})],
             {}, {"y": ["c"]}, actors_max=10)
    assert dict(f.increments["b"]) == {"a": 1.0, "c": 1.0}


def test_user_lua_arguments():
    assert user_args(None, 7, 50, {"p": 0.5}) == ["", "7", 50, 1, "p", "0.5"]
    assert user_args(3, 9, 50, {}) == ["3", "9", 50, 0]
