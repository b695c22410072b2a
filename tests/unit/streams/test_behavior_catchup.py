"""streams/behavior.py ``taken``: while the worker is behind (the newest record of a take was produced
more than ``catchup_lag_s`` ago) consecutive Faust takes are merged into one batch of up to
``batch_max``; every merged event keeps an extra reference on its Kafka message until the agent has
handed the batch on (so no offset is committed before its batch is folded); fresh takes pass as they
are."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from streams.behavior import behind, taken


class Message:
    def __init__(self, offset: int, timestamp: float) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = "t", 0, offset, b"k", b"v"
        self.timestamp = timestamp
        self.refcount = 1  # the take's own reference, released by Faust after the take

    def incref(self) -> None:
        self.refcount += 1


class Event:
    def __init__(self, offset: int, timestamp: float) -> None:
        self.message = Message(offset, timestamp)

    def ack(self) -> None:
        self.message.refcount -= 1


class Stream:
    """Faust's ``take_events``: yields the takes, and releases each take's own reference when
    the consumer asks for the next one (as Faust does after the yield)."""

    def __init__(self, takes: list[list[Event]], then_wait: bool = False) -> None:
        self.takes = takes
        self.then_wait = then_wait  # after the last take: nothing more arrives (a live topic gone quiet)
        self.quiet = asyncio.Event()

    async def take_events(self, _max: int, within: float) -> AsyncIterator[list[Event]]:
        for t in self.takes:
            yield t
            for e in t:
                e.ack()
        if self.then_wait:
            await self.quiet.wait()


def events(first: int, n: int, age_s: float) -> list[Event]:
    now = time.time()
    return [Event(first + i, now - age_s) for i in range(n)]


async def collect(stream: Stream, batch_max: int, lag_s: float, n: int | None = None
                  ) -> list[tuple[list[int], list[int]]]:
    """(offsets of each batch, refcounts of its messages while the agent holds it); stops after ``n``
    batches when given."""
    out = []
    batches = taken(stream, batch_max, 0.02, lag_s)
    async for batch, records, _now, _t in batches:
        assert [r.offset for r in records] == [e.message.offset for e in batch]
        out.append(([e.message.offset for e in batch], [e.message.refcount for e in batch]))
        if n is not None and len(out) == n:
            await batches.aclose()
            break
    return out


def test_behind_reads_the_newest_kafka_timestamp() -> None:
    now = time.time()
    assert behind([Event(0, now - 10), Event(1, now - 5)], now, 1.0)
    assert not behind([Event(0, now - 10), Event(1, now - 0.1)], now, 1.0)
    assert not behind([Event(0, now - 10)], now, 0.0)  # off
    assert not behind([], now, 1.0)


async def test_fresh_takes_pass_unmerged() -> None:
    takes = [events(0, 3, 0.0), events(3, 2, 0.0)]
    got = await collect(Stream(takes), 100, 1.0)
    assert [offs for offs, _ in got] == [[0, 1, 2], [3, 4]]
    assert all(r == 1 for _, refs in got for r in refs)


async def test_a_backlog_is_merged_into_full_batches_and_acks_wait_for_the_agent() -> None:
    takes = [events(0, 3, 30.0), events(3, 3, 30.0), events(6, 3, 30.0), events(9, 2, 0.0)]
    got = await collect(Stream(takes), 7, 1.0)
    # 3 + 3 behind: merged; the third take reaches batch_max (9 >= 7, never split); the last is fresh
    assert [offs for offs, _ in got] == [[0, 1, 2, 3, 4, 5, 6, 7, 8], [9, 10]]
    first_refs = got[0][1]
    # while the agent holds the batch, the merged events of earlier takes still hold a reference
    # (Faust released its own when the next take was asked for); the last take's still hold Faust's
    assert first_refs == [1] * 9
    # after the agent moved on, every reference taken by the merge is released
    assert all(e.message.refcount == 0 for t in takes for e in t)


async def test_a_backlog_ending_merges_what_was_held() -> None:
    takes = [events(0, 2, 30.0), events(2, 1, 0.0)]
    got = await collect(Stream(takes), 100, 1.0)
    assert [offs for offs, _ in got] == [[0, 1, 2]]
    assert all(e.message.refcount == 0 for t in takes for e in t)


async def test_the_end_of_a_backlog_goes_out_without_waiting_for_another_take() -> None:
    takes = [events(0, 2, 30.0), events(2, 2, 30.0)]
    stream = Stream(takes, then_wait=True)
    got = await asyncio.wait_for(collect(stream, 100, 1.0, n=1), timeout=5)
    assert [offs for offs, _ in got] == [[0, 1, 2, 3]]
    # Faust released its own references when the next take was asked for; the merge's are still
    # held (the agent stopped before handing the batch on, so nothing of it may be committed)
    assert [e.message.refcount for t in takes for e in t] == [1, 1, 1, 1]


async def test_a_backlog_merges_up_to_the_catch_up_maximum() -> None:
    takes = [events(3 * k, 3, 30.0) for k in range(5)] + [events(15, 2, 0.0)]
    got = await collect_with(Stream(takes), batch_max=3, lag_s=1.0, catchup_max=7)
    # takes of batch_max merged while behind until the batch holds at least catchup_max (never split)
    assert [offs for offs, _ in got] == [list(range(9)), list(range(9, 17))]
    assert all(e.message.refcount == 0 for t in takes for e in t)
    # a catch-up maximum below batch_max: batch_max
    got = await collect_with(Stream([events(0, 3, 30.0), events(3, 3, 30.0)]), batch_max=5, lag_s=1.0,
                             catchup_max=2)
    assert [offs for offs, _ in got] == [list(range(6))]


async def collect_with(stream: Stream, batch_max: int, lag_s: float, catchup_max: int
                       ) -> list[tuple[list[int], list[int]]]:
    out = []
    async for batch, _records, _now, _t in taken(stream, batch_max, 0.02, lag_s, catchup_max):
        out.append(([e.message.offset for e in batch], [e.message.refcount for e in batch]))
    return out
