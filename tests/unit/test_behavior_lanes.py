"""The owner lanes of the behavior agent (streams/behavior.py ``Lanes``) and the loop timings
(streams/loopstats.py): order, folding of waiting batches, acks only after every owner, dead
letters per batch, back-pressure, failures handed to the agent, the profile lane first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.behavior import PROFILES_OWNER, Batch, Lanes, Ticket, merged
from streams.intake import Accepted, Dead, RawRecord
from streams.loopstats import Recorder


class Ev:
    """Stands for a Behavior event: only what the lanes read."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id


def ticket(partition: int, offsets: range, started: float = 0.0) -> Ticket:
    raw = {(partition, o): RawRecord("t", partition, o, b"k", b"v") for o in offsets}
    kept = [Accepted(Ev(f"u{o}"), partition, o) for o in offsets]  # type: ignore[arg-type]
    return Ticket(events=[f"e{partition}:{o}" for o in offsets], batch=Batch(kept, raw, 1000 + offsets[0]),
                  dead=[], dupes=0, started=started)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def test_merged_keeps_arrival_order_and_every_record() -> None:
    a, b = ticket(0, range(0, 3)).batch, ticket(0, range(3, 5)).batch
    m = merged([a, b])
    assert [x.offset for x in m.kept] == [0, 1, 2, 3, 4]
    assert set(m.raw) == {(0, o) for o in range(5)}
    assert m.now_ms == b.now_ms
    assert merged([a]) is a


def test_every_owner_sees_every_event_once_in_order_and_finish_comes_after_the_last() -> None:
    seen: dict[str, list[int]] = {"slow": [], PROFILES_OWNER: []}
    finished: list[tuple[int, dict[str, int]]] = []
    gate = asyncio.Event()

    async def slow(b: Batch) -> None:
        await gate.wait()
        seen["slow"] += [a.offset for a in b.kept]

    async def fast(b: Batch) -> None:
        seen[PROFILES_OWNER] += [a.offset for a in b.kept]

    async def finish(t: Ticket) -> None:
        finished.append((t.batch.kept[0].offset, {k: len(v) for k, v in seen.items()}))

    async def run() -> None:
        lanes = Lanes([(PROFILES_OWNER, fast), ("slow", slow)], finish, max_events=100, depth=10)
        lanes.start()
        for start in (0, 3, 6):
            await lanes.put(ticket(0, range(start, start + 3)))
            await settle()
        # the profile lane folded all three batches while the slow one still waits on the first
        assert seen[PROFILES_OWNER] == list(range(9))
        assert finished == []  # nothing acked before every owner has it
        gate.set()
        await settle()
        assert seen["slow"] == list(range(9))  # in order; the two batches that waited folded as one step
        assert [f[0] for f in finished] == [0, 3, 6]
        assert all(f[1]["slow"] >= f[0] + 3 for f in finished)  # each finished after the slow owner had it
        lanes.stop()

    asyncio.run(run())


def test_waiting_batches_fold_up_to_max_events() -> None:
    steps: list[int] = []
    gate = asyncio.Event()

    async def owner(b: Batch) -> None:
        await gate.wait()
        steps.append(len(b.kept))

    async def finish(t: Ticket) -> None:
        return None

    async def run() -> None:
        lanes = Lanes([("o", owner)], finish, max_events=5, depth=10)
        lanes.start()
        for start in range(0, 12, 2):
            await lanes.put(ticket(0, range(start, start + 2)))
        gate.set()
        await settle()
        assert steps == [4, 4, 4]  # six batches of 2 waiting: two per step (a third would pass 5 events)
        lanes.stop()

    asyncio.run(run())


def test_dead_letters_go_to_the_batch_that_holds_the_record() -> None:
    got: dict[int, list[int]] = {}
    gate = asyncio.Event()

    async def owner(b: Batch) -> list[Dead]:
        await gate.wait()
        return [Dead(b.raw[(0, o)], "unknown_decision", "x") for o in (1, 4) if (0, o) in b.raw]

    async def finish(t: Ticket) -> None:
        got[t.batch.kept[0].offset] = [d.record.offset for d in t.dead]

    async def run() -> None:
        lanes = Lanes([("o", owner)], finish, max_events=100, depth=10)
        lanes.start()
        for start in (0, 3):
            await lanes.put(ticket(0, range(start, start + 3)))
        gate.set()
        await settle()
        assert got == {0: [1], 3: [4]}
        lanes.stop()

    asyncio.run(run())


def test_a_full_lane_makes_put_wait() -> None:
    gate = asyncio.Event()

    async def owner(b: Batch) -> None:
        await gate.wait()

    async def finish(t: Ticket) -> None:
        return None

    async def run() -> None:
        lanes = Lanes([("o", owner)], finish, max_events=1, depth=2)
        lanes.start()
        await lanes.put(ticket(0, range(0, 1)))
        await lanes.put(ticket(0, range(1, 2)))
        third = asyncio.create_task(lanes.put(ticket(0, range(2, 3))))
        await settle()
        assert not third.done()  # two batches wait in the lane: the agent waits too
        gate.set()
        await settle()
        assert third.done()
        lanes.stop()

    asyncio.run(run())


def test_a_failed_step_is_raised_by_the_next_put_and_nothing_is_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.runtime as runtime

    monkeypatch.setattr(runtime, "RETRIES", 1)
    finished: list[Any] = []

    async def owner(b: Batch) -> None:
        raise ConnectionError("redis gone")

    async def finish(t: Ticket) -> None:
        finished.append(t)

    async def run() -> None:
        lanes = Lanes([("o", owner)], finish, max_events=10, depth=10)
        lanes.start()
        await lanes.put(ticket(0, range(0, 2)))
        await settle()
        with pytest.raises(ConnectionError):
            await lanes.put(ticket(0, range(2, 4)))
        assert finished == []  # its acks are never released: the offsets stay uncommitted
        lanes.stop()

    asyncio.run(run())


def test_the_other_lanes_wait_while_the_profile_lane_has_work() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def profile(b: Batch) -> None:
        await gate.wait()
        order.append("profile")

    async def other(b: Batch) -> None:
        order.append("other")

    async def finish(t: Ticket) -> None:
        return None

    async def run() -> None:
        lanes = Lanes([("other", other), (PROFILES_OWNER, profile)], finish, max_events=10, depth=10)
        lanes.start()
        await lanes.put(ticket(0, range(0, 2)))
        await settle()
        assert order == []  # the other lane did not start while the profile lane was busy
        gate.set()
        await settle()
        assert order == ["profile", "other"]
        lanes.stop()

    asyncio.run(run())


def test_recorder_summary_and_reset() -> None:
    r = Recorder()
    r.add("x", 1.0)
    assert r.summary() == {}  # off until a summary is wanted (``loopstats.register``)
    r.enabled = True
    for v in range(1, 101):
        r.add("x", float(v))
    (n, p50, p99, mx), = r.summary().values()
    assert (n, p50, p99, mx) == (100, 50.0, 100.0, 100.0)
    assert r.summary() == {}
    assert "x n=1" in Recorder.format({"x": (1, 2.0, 3.0, 4.0)})


def test_a_lane_with_a_backlog_no_longer_gives_way() -> None:
    from streams.behavior import GATE_BELOW

    folded: list[int] = []
    gate = asyncio.Event()

    async def profile(b: Batch) -> None:
        await gate.wait()

    async def other(b: Batch) -> None:
        folded.append(len(b.kept))

    async def finish(t: Ticket) -> None:
        return None

    async def run() -> None:
        lanes = Lanes([(PROFILES_OWNER, profile), ("other", other)], finish, max_events=100, depth=10)
        lanes.start()
        for start in range(GATE_BELOW):
            await lanes.put(ticket(0, range(start, start + 1)))
        await settle()
        assert folded == [GATE_BELOW]  # the profile lane is still busy, the backlog ran anyway
        gate.set()
        await settle()
        lanes.stop()

    asyncio.run(run())
