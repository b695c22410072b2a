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


# The other agents' batches go through the same ``isolating`` helper: a fake store (the pure
# splitting is under test, not the store) that fails on the records of one id.

class FailingStore:
    def __init__(self, bad: str) -> None:
        self.bad, self.applied = bad, []

    async def apply(self, *args):
        ids = [getattr(x[0] if isinstance(x, tuple) else x, "user_id", None) or getattr(
            x[0] if isinstance(x, tuple) else x, "item_id", None) for x in args[0]]
        if self.bad in ids:
            raise KeyError(f"cannot apply {self.bad}")
        self.applied += ids
        return [i for i in ids if i.startswith("erase")]


def raw(i: int, topic: str = "t") -> RawRecord:
    return RawRecord(topic=topic, partition=i % 2, offset=i, key=None, value=b"x")


def test_identity_fold_dead_letters_the_failing_event_and_applies_the_rest_in_offset_order():
    from schemas.events import Identity
    from streams import identity

    users = ["a", "bad", "erase-c", "d", "bad", "e"]
    events = [(Identity(f"e{i}", "update", u, 1000), i % 2, i, raw(i)) for i, u in enumerate(users)]
    store = FailingStore("bad")
    erased, dead = asyncio.run(identity.fold(store, list(reversed(events))))
    assert sorted(d.record.offset for d in dead) == [1, 4] and {d.reason for d in dead} == {"fold_failed"}
    assert "identity: KeyError" in dead[0].detail
    assert store.applied == ["a", "erase-c", "d", "e"]  # partition 0 (offsets 0, 2), then 1 (3, 5)
    assert erased == ["erase-c"]


def test_catalog_fold_dead_letters_the_failing_change_and_applies_the_rest():
    from schemas.events import CatalogChange
    from streams import catalog

    items = ["i1", "i2", "bad", "i3"]
    changes = [(CatalogChange(f"e{i}", "upsert", it, 1000, {}), raw(i)) for i, it in enumerate(items)]
    store = FailingStore("bad")
    dead = asyncio.run(catalog.fold(store, changes))
    assert [d.record.offset for d in dead] == [2] and dead[0].reason == "fold_failed"
    assert sorted(store.applied) == ["i1", "i2", "i3"]


def test_decisions_fold_dead_letters_the_failing_fact_and_folds_the_rest():
    from streams import decisions
    from streams.bandits import DecisionFact
    from streams.experiments import ExposureFact, Source

    records = [raw(i, "dec") for i in range(5)]
    parsed = decisions.Parsed()
    parsed.exposures = [ExposureFact("x", "v", f"u{i}", 1000, Source("dec", i % 2, i)) for i in (0, 2, 3)]
    parsed.decisions = [DecisionFact("b", f"b:{i}", "arm", {}, 1000, Source("dec", i % 2, i)) for i in (1, 4)]
    folded: list[int] = []

    class Owners:
        async def apply(self, exposures, decs, behavior, recs):
            assert recs is records and behavior == []
            offsets = [f.src.offset for f in [*exposures, *decs]]
            if 3 in offsets:
                raise ValueError("unreadable tally")
            folded.extend(offsets)
            return []

    dead = asyncio.run(decisions.fold(Owners(), parsed, records))
    assert [d.record.offset for d in dead] == [3] and dead[0].record is records[3]
    assert sorted(folded) == [0, 1, 2, 4]


def test_a_store_error_in_another_agent_is_retried_not_dead_lettered():
    from schemas.events import CatalogChange
    from streams import catalog

    calls = []

    class Flaky:
        async def apply(self, changes):
            calls.append(len(changes))
            if len(calls) < 3:
                raise TimeoutError("cassandra timeout")

    changes = [(CatalogChange(f"e{i}", "upsert", f"i{i}", 1000, {}), raw(i)) for i in range(3)]
    assert asyncio.run(catalog.fold(Flaky(), changes)) == []
    assert calls == [3, 3, 3]
