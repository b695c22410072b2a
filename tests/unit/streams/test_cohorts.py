"""Demographic cohorts' popularity (streams/cohorts.py): the fenced fold of cohort popularity (per cohort
and source partition), the Lua argument layout."""

from __future__ import annotations

from schemas.events import Behavior
from streams.cohorts import CohortApply, fold, lua_args
from streams.intake import Accepted


def ev(k: int, user: str, item: str | None, etype: str = "view", part: int = 0) -> Accepted:
    return Accepted(Behavior(f"e{k}", etype, user, item, 1000 + k), part, k)


def test_fold_counts_members_interactions_above_the_fences():
    events = [ev(0, "a", "x"), ev(1, "b", "x", "purchase"), ev(2, "a", "y", "page_view"), ev(3, "c", "y"),
              ev(4, "a", "y", part=1)]
    cohorts = {"a": ["country:fr", "age:25-34"], "b": ["country:fr"]}
    out = fold(events, cohorts, {("country:fr", 0): 0})
    assert dict(out["country:fr"].items) == {"x": 3.0, "y": 1.0}  # a's view of x at offset 0 is fenced
    assert out["country:fr"].fences == {0: (0, 1), 1: (None, 4)}
    assert dict(out["age:25-34"].items) == {"x": 1.0, "y": 1.0}
    assert fold(events, cohorts, {("country:fr", 0): 1, ("country:fr", 1): 4, ("age:25-34", 0): 0,
                                  ("age:25-34", 1): 4}) == {}


def test_lua_arguments():
    a = CohortApply(fences={1: (None, 4), 0: (0, 1)})
    a.items["x"] += 3.0
    assert lua_args(a, 1000) == [2, "f:0", "0", "1", "f:1", "", "4", 1, "x", "3.0", 1000]
