"""Write-behind of durable rows (streams/durable.py): coalescing per key, acks held until the rows
of their batch are written, nothing dropped when a flush fails."""

from __future__ import annotations

from typing import Any

import pytest

from streams.durable import WriteBehind


class FakeMessage:
    def __init__(self) -> None:
        self.refcount = 1  # the stream's own reference
        self.acked = False

    def incref(self) -> None:
        self.refcount += 1

    def release(self) -> None:
        self.refcount -= 1
        self.acked = self.refcount == 0


class FakeEvent:
    """The two things WriteBehind uses of a Faust event: ``message.incref`` and ``ack``."""

    def __init__(self) -> None:
        self.message = FakeMessage()

    def ack(self) -> None:
        self.message.release()


async def test_rows_coalesce_per_key_and_acks_wait_for_the_flush():
    written: list[dict[Any, Any]] = []

    async def flush(rows: dict[Any, Any]) -> None:
        written.append(dict(rows))

    wb = WriteBehind(interval_s=60)
    wb.sink("profiles", flush)
    batch1 = [FakeEvent(), FakeEvent()]
    wb.put_many("profiles", {"u1": 1, "u2": 1})
    wb.hold(batch1)
    for e in batch1:
        e.ack()  # the stream's own ack after the batch: not yet final
    assert not any(e.message.acked for e in batch1)
    wb.put("profiles", "u1", 2)  # a later batch: the newer absolute value replaces the older
    assert wb.pending == 2
    assert await wb.flush() == 2
    assert written == [{"u1": 2, "u2": 1}]
    assert all(e.message.acked for e in batch1)
    assert await wb.flush() == 0 and wb.pending == 0


async def test_a_failed_flush_keeps_rows_and_acks_and_newer_values_win():
    calls: list[dict[Any, Any]] = []
    fail = [True]

    async def flush(rows: dict[Any, Any]) -> None:
        calls.append(dict(rows))
        if fail[0]:
            raise TimeoutError("cassandra")

    wb = WriteBehind(interval_s=60)
    wb.sink("rows", flush)
    ev = FakeEvent()
    wb.put("rows", "k1", "old")
    wb.hold([ev])
    ev.ack()
    with pytest.raises(TimeoutError):
        await wb.flush()
    assert wb.pending == 1 and not ev.message.acked
    wb.put("rows", "k1", "new")
    fail[0] = False
    await wb.flush()
    assert calls[-1] == {"k1": "new"} and ev.message.acked


async def test_events_held_during_a_flush_wait_for_the_next_one():
    wb = WriteBehind(interval_s=60)
    seen: list[int] = []
    late = FakeEvent()

    async def flush(rows: dict[Any, Any]) -> None:
        seen.append(len(rows))
        wb.put("rows", "k2", 1)  # a batch buffered while this flush runs
        wb.hold([late])

    wb.sink("rows", flush)
    wb.put("rows", "k1", 1)
    await wb.flush()
    late.ack()
    assert not late.message.acked  # its row was not part of the flush that finished
    wb.sinks["rows"].flush = _noop
    await wb.flush()
    assert late.message.acked


async def _noop(_rows: dict[Any, Any]) -> None:
    return None


def test_statements_of_one_partition_become_one_unlogged_batch():
    from cassandra.query import BatchStatement, BatchType, SimpleStatement

    from streams.durable import group_batches

    a, b, c = (SimpleStatement(f"INSERT INTO t{i} (k) VALUES (%s)") for i in range(3))
    out = group_batches([(("user", "u1"), a, ("u1",)), (("user", "u2"), a, ("u2",)),
                         (("user", "u1"), b, ("u1",)), (("user", "u1"), c, ("u1",))], max_statements=2)
    # u1: a and b in one batch (same partition, across tables), c in a second (max 2); u2 alone, as is
    assert len(out) == 3
    batch, params = out[0]
    assert isinstance(batch, BatchStatement) and batch.batch_type == BatchType.UNLOGGED and params == ()
    assert len(batch._statements_and_parameters) == 2
    assert out[1] == (c, ("u1",)) and out[2] == (a, ("u2",))


async def test_forget_drops_a_users_pending_rows_after_the_flush_in_progress():
    import asyncio

    order: list[str] = []
    gate = asyncio.Event()

    async def slow(rows: dict[Any, Any]) -> None:
        order.append(f"flush {sorted(map(str, rows))}")
        await gate.wait()
        order.append("flush done")

    wb = WriteBehind(interval_s=60)
    wb.sink("rows", slow)
    wb.put_many("rows", {"u1": 1, ("seg", "u1"): True, ("u1", 5, "i1", "e1"): 1.0, "u2": 1})
    flushing = asyncio.create_task(wb.flush())
    await asyncio.sleep(0)
    wb.put_many("rows", {"u1": 2, ("vip", "u1"): True, "u3": 1})  # arrived during the flush

    async def forget() -> int:
        n = await wb.forget("u1")
        order.append("forgot")
        return n

    forgetting = asyncio.create_task(forget())
    await asyncio.sleep(0.01)
    assert order == [f"flush {sorted(map(str, ['u1', ('seg', 'u1'), ('u1', 5, 'i1', 'e1'), 'u2']))}"]
    gate.set()
    assert await forgetting == 2 and await flushing == 4
    assert order[-2:] == ["flush done", "forgot"]  # the delete that follows comes after every write of u1
    assert wb.sinks["rows"].pending == {"u3": 1}


def test_partitions_share_batches_only_with_their_replica_and_within_every_bound():
    from cassandra.query import BatchStatement, SimpleStatement

    from streams.durable import Batching, group_batches

    def sizes(out):  # statements per request
        return [len(s._statements_and_parameters) if isinstance(s, BatchStatement) else 1 for s, _ in out]

    a = SimpleStatement("INSERT INTO t (k) VALUES (%s)")
    # u0: 1 row, u1: 2, u2: 1, u3: 2, u4: 1, u5: 2, u6: 1
    stmts = [(("user", f"u{k}"), a, (f"u{k}",)) for k in range(7) for _ in range(1 + k % 2)]
    out = group_batches(stmts, batching=Batching(statements=4, partitions=3, max_bytes=10_000),
                        replica=lambda _s: None)
    # u0 u1 u2 (4 rows, 3 partitions) | u3 u4 (u5 would make 5 rows) | u5 u6
    assert sizes(out) == [4, 3, 3]
    # by replica: east (u0-u4) and west (u5, u6) never share a batch
    replica = {f"u{k}": "east" if k < 5 else "west" for k in range(7)}
    keyed = [(("user", u), SimpleStatement(f"INSERT INTO t (k) VALUES ('{u}')"), ()) for u in replica]
    out = group_batches(keyed, batching=Batching(statements=32, partitions=10, max_bytes=10_000),
                        replica=lambda s: replica[s.query_string.split("'")[1]])
    assert sizes(out) == [5, 2]
    # a byte bound under two partitions' rows: one request per partition, its rows together
    out = group_batches(stmts, batching=Batching(statements=32, partitions=10, max_bytes=12),
                        replica=lambda _s: None)
    assert sizes(out) == [1 + k % 2 for k in range(7)]
