"""The Redis loss guard's decisions (streams/redisloss.py): which partitions to refold from where, and
when a connection means Redis restarted under the worker."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

import pytest

from aura.keys import RedisKeys
from streams.redisloss import RedisLossGuard, RedisLost, field, rewinds, run_id_of

TP = namedtuple("TP", "topic partition")
A0, A1, B0 = TP("a", 0), TP("a", 1), TP("b", 0)


def test_partitions_behind_their_committed_offset_are_rewound_to_their_mark():
    committed = {A0: 100, A1: 50, B0: 7}
    marks = {"epoch": "1", "a:0": "100", "a:1": "31", "b:0": "9"}
    # a:0 equal, b:0 ahead (marked, then the commit failed): kept; a:1 lost writes: from its mark
    assert rewinds(committed, marks) == {A1: 31}


def test_a_partition_without_a_mark_or_a_lost_hash_is_refolded_from_the_log_start():
    assert rewinds({A0: 100, A1: 5}, {"epoch": "1", "a:0": "100"}) == {A1: None}
    assert rewinds({A0: 100, A1: 5}, None) == {A0: None, A1: None}
    assert rewinds({A0: 100, A1: 5}, {}) == {A0: None, A1: None}


def test_nothing_committed_means_nothing_to_check():
    assert rewinds({A0: None, A1: 0, B0: -1001}, None) == {}


def test_run_id_and_field():
    info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n"
    assert run_id_of(info) == "abc123"
    assert run_id_of(info.encode()) == "abc123"
    with pytest.raises(ValueError):
        run_id_of("# Server\r\n")
    assert field(B0) == "b:0"


class FakeConn:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.sent: list[tuple[Any, ...]] = []

    async def on_connect(self) -> None:
        self.sent.append(("HELLO",))

    async def send_command(self, *args: Any) -> None:
        self.sent.append(args)

    async def read_response(self) -> str:
        return f"# Server\r\nrun_id:{self.run_id}\r\n"


def test_a_connection_to_a_restarted_redis_is_refused_and_the_process_replaced():
    lost: list[str] = []
    guard = RedisLossGuard(RedisKeys("p"), "g", on_lost=lost.append)
    assert guard.key == "p:applied:g"
    asyncio.run(guard.on_connect(FakeConn("one")))
    asyncio.run(guard.on_connect(FakeConn("one")))  # the same server: fine
    assert not lost
    with pytest.raises(RedisLost):
        asyncio.run(guard.on_connect(FakeConn("two")))
    assert len(lost) == 1 and "restarted" in lost[0]
    with pytest.raises(RedisLost):  # and every later connection too, even to the first run id
        asyncio.run(guard.on_connect(FakeConn("one")))
    assert len(lost) == 1
    assert asyncio.run(guard.mark({A0: 5})) is False  # nothing is committed any more


class FakeConsumer:
    """The two seams the guard wraps, over plain dicts."""

    def __init__(self, committed: dict[Any, int]) -> None:
        self.committed = committed
        self.seeks: dict[Any, int] = {}

    async def seek_to_committed(self) -> dict[Any, int]:
        return dict(self.committed)

    async def _seek(self, tp: Any, offset: int) -> None:
        self.seeks[tp] = offset

    async def _commit(self, offsets: Any) -> bool:
        return True

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return {tp: 0 for tp in tps}


def test_events_below_the_commit_of_a_rewound_partition_are_known_as_refolded():
    guard = RedisLossGuard(RedisKeys("p"), "g", on_lost=lambda _r: None)

    async def rewind(committed: Any) -> dict[Any, int | None]:
        return {A0: 40, B0: None}  # A0's mark is at 40, B0's hash lost: the log start

    guard.rewind = rewind  # type: ignore[method-assign]
    consumer = FakeConsumer({A0: 100, A1: 7, B0: 12})
    guard.install(consumer)
    assert asyncio.run(consumer.seek_to_committed()) == {A0: 40, A1: 7, B0: 0}
    assert consumer.seeks == {A0: 40, B0: 0}
    # folded before the loss: below the commit of a rewound partition; A1 was not rewound
    assert guard.refolding("a", 0, 40) and guard.refolding("a", 0, 99) and guard.refolding("b", 0, 11)
    assert not guard.refolding("a", 0, 100) and not guard.refolding("a", 1, 3) and not guard.refolding("b", 0, 12)
