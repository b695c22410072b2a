"""streams/usercands.py's pure parts: which users a batch notes (the highest source offset per user,
the first time kept) and which noted users are ready to be ranked (their recommender fence reached the
noted offset, or they waited too long)."""

from __future__ import annotations

from schemas.events import Behavior
from streams.intake import Accepted
from streams.usercands import WAIT_MAX_S, note, ready


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
