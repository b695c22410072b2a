"""streams/usercands.py's pure parts: which users a batch notes (the highest source offset per user,
the first time kept) and which noted users are ready to be ranked (their recommender fence reached the
noted offset, or they waited too long); pools on demand: which users the worker drains from the wanted
set (from its cursor on, inclusive, without those already taken at the cursor; only the placements it
keeps) and which users noted from batches asked recently (ZMSCORE answers)."""

from __future__ import annotations

import math

from aura.state.pools import wanted_member
from schemas.events import Behavior
from streams.intake import Accepted
from streams.usercands import WAIT_MAX_S, asked, drained, note, ready


def acc(user: str, offset: int) -> Accepted:
    return Accepted(Behavior(f"e{offset}", "view", user, "i1", 1000), 0, offset)


def test_note_keeps_the_highest_offset_and_the_first_time() -> None:
    pending: dict[str, tuple[int, float]] = {}
    note(pending, [acc("a", 5), acc("b", 3), acc("a", 9), acc("a", 7)], now=10.0)
    assert pending == {"a": (9, 10.0), "b": (3, 10.0)}
    note(pending, [acc("a", 4), acc("b", 8)], now=20.0)  # a: a replay below; b: a newer batch
    assert pending == {"a": (9, 10.0), "b": (8, 10.0)}


def test_ready_when_the_fence_reached_the_batch_or_after_the_wait() -> None:
    pending = {"a": (9, 10.0), "b": (9, 10.0), "c": (9, 10.0), "d": (9, 5.0)}
    fences = {"a": 9, "b": 8, "c": None, "d": 1}
    assert ready(pending, fences, now=11.0) == ["a"]
    assert sorted(ready(pending, fences, now=10.0 + WAIT_MAX_S)) == ["a", "b", "c", "d"]
    assert ready(pending, {"a": 12}, now=11.0) == ["a"]  # already past it (a newer batch applied)


def test_drain_from_the_cursor_without_the_members_taken_there() -> None:
    m = wanted_member
    entries = [(m("default", "a"), 100.0), (m("default", "b"), 105.0), (m("homepage", "c"), 105.0),
               (m("default", "a"), 105.0)]  # (a ZRANGEBYSCORE never repeats a member; a user may be in 2 placements)
    users, cursor, at = drained(entries, 90.0, set(), ["default"])
    assert users == ["a", "b"] and cursor == 105.0
    assert at == {m("default", "b"), m("homepage", "c"), m("default", "a")}
    # the next read starts AT the cursor (inclusive): the members already taken there are skipped, a
    # member added in the same millisecond after the read is not
    again = [(m("default", "b"), 105.0), (m("default", "d"), 105.0), (m("default", "e"), 107.0)]
    users, cursor, at = drained(again, cursor, at, ["default"])
    assert users == ["d", "e"] and cursor == 107.0 and at == {m("default", "e")}
    users, cursor2, at2 = drained([], cursor, at, ["default"])  # nothing new: nothing, the cursor stays
    assert users == [] and (cursor2, at2) == (cursor, at)


def test_asked_recently_in_any_placement() -> None:
    users, placements = ["a", "b", "c", "d"], ["default", "homepage"]
    scores = [None, 500.0,  # a: homepage, recent
              "400", None,  # b: default, too old (a string, as RESP2 answers)
              None, None,  # c: never asked
              "1000", 99.0]  # d: recent
    assert asked(users, placements, scores, since_ms=500.0) == {"a", "d"}


def test_a_drained_user_then_noted_waits_for_the_batch_like_any_noted_user() -> None:
    pending = {"a": (-1, -math.inf), "b": (7, 5.0)}  # a: drained (ranked at once); b: noted earlier
    assert sorted(ready(pending, {"a": 3, "b": 7}, now=6.0)) == ["a", "b"]
    note(pending, [Accepted(Behavior("e9", "view", "a", "i1", 1000), 0, 9)], now=6.0)
    assert pending["a"] == (9, 6.0)
    assert ready(pending, {"a": 3}, now=6.5) == []  # its state has not reached the batch yet
    assert ready(pending, {"a": 9}, now=6.5) == ["a"]
