"""streams/behavior.py: the intake runs once per batch (decode, validate, de-duplicate), then every
owner gets the same batch concurrently; dead letters of the intake and of the owners come back
together, and a consumer group that does not own the intake reports only the owners' ones."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from aura.keys import RedisKeys
from aura.settings import Settings
from schemas.codec import codec
from streams import behavior, runtime
from streams.behavior import intake_and_fan_out
from streams.durable import WriteBehind
from streams.intake import Dead, RawRecord
from streams.loopstats import STATS
from streams.runtime import PROFILES_OWNER, Batch, Resources

NOW = int(time.time() * 1000)
EVENTS = codec("behavior_event")


class DedupRedis:
    """The one call the intake makes: the dedup script's SET NX GET over (key, position) pairs."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.calls: list[int] = []  # events per script call

    async def eval(self, _script: str, _numkeys: int, _window_ms: int, flat: str) -> list[str]:
        pairs = json.loads(flat)
        self.calls.append(len(pairs) // 2)
        out = []
        for key, pos in zip(pairs[::2], pairs[1::2], strict=True):
            out.append(self.seen.get(key, ""))
            self.seen.setdefault(key, pos)
        return out


def record(offset: int, event_id: str | None = None, **over: Any) -> RawRecord:
    value = EVENTS.encode({"event_id": event_id or f"e{offset}", "event_type": "view", "user_id": f"u{offset}",
                           "item_id": "i1", "event_time": NOW, **over})
    return RawRecord("aura.events.behavior", 0, offset, b"k", value)


def resources() -> Resources:
    return Resources(settings=Settings(), redis=DedupRedis(), session=None, keys=RedisKeys("t"),
                     durable=WriteBehind())


async def test_every_owner_gets_the_deduplicated_batch_concurrently_and_dead_letters_merge():
    res = resources()
    records = [record(0), record(1), record(2, event_id="e0"), record(3, user_id=None)]  # a duplicate, a bad one
    seen: dict[str, list[int]] = {}
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def owner(name: str, other: str) -> runtime.Owner:
        async def step(b: Batch) -> list[Dead]:
            started[name].set()
            await started[other].wait()  # returns only if the other owner runs at the same time
            seen[name] = [a.offset for a in b.kept]
            return [Dead(b.raw[(0, 1)], f"by_{name}", "x")] if name == "b" else []

        return name, step

    kept, dead, dupes = await asyncio.wait_for(
        intake_and_fan_out(res, EVENTS, records, [owner("a", "b"), owner("b", "a")], NOW), timeout=5)
    assert [a.offset for a in kept] == [0, 1] and dupes == 1
    assert seen == {"a": [0, 1], "b": [0, 1]}
    assert sorted((d.record.offset, d.reason) for d in dead) == [(1, "by_b"), (3, "missing_user")]


async def test_a_group_that_does_not_own_the_intake_reports_only_its_owners_dead_letters():
    res = resources()

    async def step(b: Batch) -> list[Dead]:
        return [Dead(b.raw[(0, 0)], "unknown_decision", "x")]

    kept, dead, dupes = await intake_and_fan_out(res, EVENTS, [record(0), record(1, event_id="e0"),
                                                               record(2, user_id=None)],
                                                 [("decisions", step)], NOW, owns_intake=False)
    assert [a.offset for a in kept] == [0] and dupes == 0
    assert [(d.record.offset, d.reason) for d in dead] == [(0, "unknown_decision")]


async def test_a_failing_owner_step_is_retried_and_the_profile_owner_marks_the_batch_visible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(STATS, "enabled", True)
    monkeypatch.setattr(STATS, "samples", {})
    calls: list[int] = []  # retried after runtime.retrying's first 0.1 s backoff

    async def flaky(b: Batch) -> None:
        calls.append(len(b.kept))
        if len(calls) == 1:
            raise ConnectionError("redis gone")

    await intake_and_fan_out(resources(), EVENTS, [record(0)], [(PROFILES_OWNER, flaky)], NOW)
    assert calls == [1, 1]
    assert len(STATS.samples["visible"]) == 1 and len(STATS.samples[f"owner:{PROFILES_OWNER}"]) == 1


async def test_a_large_batch_is_deduplicated_in_slices_in_batch_order(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(behavior, "DEDUP_CHUNK", 3)
    res = resources()
    # e1 again in the third slice and e7 twice in the last: the first record of each id is kept
    records = [record(i) for i in range(7)] + [record(7, event_id="e1"), record(8, event_id="e7"),
                                               record(9, event_id="e7")]
    kept, dead, dupes = await intake_and_fan_out(res, EVENTS, records, [], NOW)
    assert [a.offset for a in kept] == [0, 1, 2, 3, 4, 5, 6, 8] and dupes == 2 and dead == []
    assert res.redis.calls == [3, 3, 3, 1]


def test_no_owner_is_no_work():
    kept, dead, dupes = asyncio.run(intake_and_fan_out(resources(), EVENTS, [], [], NOW))
    assert (kept, dead, dupes) == ([], [], 0)
