"""fold_isolating: an owner that fails on the data has exactly the failing events dead-lettered, the
rest folded in arrival order; store errors are retried, never dead-lettered."""

from __future__ import annotations

import asyncio

import pytest

from schemas.events import Behavior
from streams.intake import Accepted, RawRecord
from streams.runtime import Batch, fold_isolating, transient


def batch(users: list[str]) -> Batch:
    kept = [Accepted(Behavior(f"e{i}", "view", u, "i1", 1000 + i), 0, i) for i, u in enumerate(users)]
    raw = {(0, i): RawRecord(topic="t", partition=0, offset=i, key=u.encode(), value=b"x")
           for i, u in enumerate(users)}
    return Batch(kept, raw, 5000)


def test_the_failing_events_are_dead_lettered_and_the_rest_folded_in_order():
    folded: list[str] = []

    async def step(b: Batch):
        if any(a.event.user_id == "bad" for a in b.kept):
            raise ValueError("cannot fold")
        folded.extend(a.event.event_id for a in b.kept)
        return None

    users = ["a", "b", "bad", "c", "d", "bad", "e"]
    dead = asyncio.run(fold_isolating("owner", step, batch(users)))
    assert [d.record.offset for d in dead] == [2, 5]
    assert {d.reason for d in dead} == {"fold_failed"} and "ValueError: cannot fold" in dead[0].detail
    assert folded == ["e0", "e1", "e3", "e4", "e6"]  # arrival order: per-partition fences only move forward


def test_store_errors_are_retried_not_dead_lettered():
    calls = []

    async def step(b: Batch):
        calls.append(len(b.kept))
        if len(calls) < 3:
            raise ConnectionError("redis down")
        return None

    assert asyncio.run(fold_isolating("owner", step, batch(["a", "b"]))) == []
    assert calls == [2, 2, 2]


@pytest.mark.parametrize("exc,expected", [(ConnectionError(), True), (TimeoutError(), True), (ValueError(), False),
                                          (KeyError("x"), False), (ZeroDivisionError(), False)])
def test_transient_classification(exc, expected):
    assert transient(exc) is expected
