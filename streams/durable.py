"""Write-behind of the behavior owners' durable (Cassandra) rows: off the hot loop, never lost.

Owns no state of its own: it buffers the absolute rows the owners would write (the last value of a
key is the only one worth writing), coalesces them per key and flushes them from a background task
every ``interval_s`` (sooner when ``max_pending`` keys wait), one flush at a time so a newer value is
never overtaken by an older one. The behavior agent waits for Cassandra only when the buffer is full.

Nothing is lost on a crash: ``after_batch`` takes one extra reference on each event's Kafka message
(Faust commits an offset only when every reference is released) and the flush that carries the
batch's rows releases it; a crash before that redelivers the batch, the fences skip its Redis
effects and the owners buffer the same rows again. A failed flush keeps its rows and acks, retried.

Cassandra's write rate is bounded by mutations, not bytes: statements
of ``cql_sink`` sinks carry their partition, and every statement of one partition in a flush goes
as one UNLOGGED batch (one mutation); ``execute_grouped`` does the same for writes made in a batch.
Each request costs the driver about 150 us of this process's CPU whatever it carries, so small
partitions that share a replica travel together in one request (``Batching``, bounded by the
settings ``AURA_CASSANDRA_BATCH_*`` under the cluster's thresholds for batch warnings). The rows of prepared
statements are bound by ``bind`` (the driver's serialization, without its per-value
encryption-policy lookup).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from cassandra.concurrent import execute_concurrent
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, BoundStatement, PreparedStatement

from streams.loopstats import STATS

log = logging.getLogger(__name__)

Flush = Callable[[dict[Hashable, Any]], Awaitable[Any]]
# (partition, prepared statement, parameters): statements with the same partition value (keyspace and
# partition key, e.g. ``("user", user_id)``) are written as one batch.
CqlStatement = tuple[Hashable, Any, tuple[Any, ...]]
Statements = Callable[[dict[Hashable, Any]], list[CqlStatement]]
BATCH_STATEMENTS = 32  # statements per UNLOGGED batch at most (rows of one partition beyond it: another batch)


def bind(stmt: Any, params: tuple[Any, ...]) -> Any:
    """``stmt.bind(params)`` for the write path: the same ``BoundStatement`` (values serialized by
    the columns' own types, as the driver does), without the driver's per-value column-encryption
    lookup (cassandra-driver 3.30 builds a ``ColDesc`` namedtuple for every bound value even when
    no encryption policy is set: a third of the binding time of these short rows). Anything but a
    plain positional row of a prepared statement without an encryption policy, and any value the
    serializers refuse, goes through the driver's own ``bind`` (its checks, its error messages)."""
    if not isinstance(stmt, PreparedStatement):
        return stmt
    meta = stmt.column_metadata
    if (stmt.column_encryption_policy is not None or not isinstance(params, tuple | list)
            or len(params) != len(meta)):
        return stmt.bind(params)
    proto = stmt.protocol_version
    values: list[Any] = []
    try:
        for value, col in zip(params, meta, strict=True):
            if value is None:
                values.append(None)
            elif value is UNSET_VALUE:
                return stmt.bind(params)
            else:
                values.append(col.type.serialize(value, proto))
    except Exception:  # noqa: BLE001 - the driver's bind raises its own, clearer error
        return stmt.bind(params)
    bound = BoundStatement(stmt)
    bound.raw_values = params
    bound.values = values
    return bound


@dataclass(frozen=True)
class Batching:
    """How statements are packed into UNLOGGED batches: at most ``statements`` statements, and when a
    batch spans partitions, at most ``partitions`` of them (all with the same first replica) and
    ``max_bytes`` of serialized values. Cassandra warns (to its log and to the client, which logs
    every warning) about an unlogged batch over ``unlogged_batch_across_partitions_warn_threshold``
    partitions (10 by default) or over ``batch_size_warn_threshold`` bytes (5 KiB by default) and
    refuses one over ``batch_size_fail_threshold``; a single-partition batch is never checked."""

    statements: int = BATCH_STATEMENTS
    partitions: int = 1
    max_bytes: int = 4096


SINGLE = Batching()  # one partition per batch


def replica_of(session: Any) -> Callable[[Any], Hashable]:
    """The first replica of a bound statement's partition (None: unknown, e.g. no token map)."""
    meta = session.cluster.metadata

    def first(bound: Any) -> Hashable:
        token_map = meta.token_map
        key = getattr(bound, "routing_key", None)
        if token_map is None or key is None:
            return None
        replicas = token_map.get_replicas(bound.keyspace, token_map.token_class.from_key(key))
        return replicas[0] if replicas else None

    return first


def _size(bound: Any, params: tuple[Any, ...]) -> int:
    values = getattr(bound, "values", None)
    if values is None:  # not bound here (the driver binds it): its parameters' text as an estimate
        return len(repr(params))
    return sum(len(v) for v in values if v is not None)


def group_batches(stmts: list[CqlStatement], max_statements: int = BATCH_STATEMENTS,
                  batching: Batching | None = None, replica: Callable[[Any], Hashable] | None = None
                  ) -> list[tuple[Any, tuple[Any, ...]]]:
    """Statements of the same partition -> UNLOGGED batches of up to ``max_statements``; with a
    ``batching`` of several partitions, partitions whose first replica (``replica``) is the same
    share batches within its bounds. A lone statement stays as it is (bound). The statements of a
    partition keep their order (a batch's statements share one timestamp, and each key appears once
    per flush)."""
    b = batching or Batching(statements=max_statements)
    by_partition: dict[Hashable, list[tuple[Any, tuple[Any, ...]]]] = {}
    for partition, stmt, params in stmts:
        by_partition.setdefault(partition, []).append((stmt, params))
    # each partition's statements bound, in chunks of at most ``b.statements``, by first replica
    by_replica: dict[Hashable, list[list[tuple[Any, tuple[Any, ...], Any]]]] = {}
    for group in by_partition.values():
        bound = [(stmt, params, bind(stmt, params)) for stmt, params in group]
        where = replica(bound[0][2]) if replica is not None and b.partitions > 1 else None
        chunks = by_replica.setdefault(where, [])
        chunks += [bound[i:i + b.statements] for i in range(0, len(bound), b.statements)]
    out: list[tuple[Any, tuple[Any, ...]]] = []
    for chunks in by_replica.values():
        batch: list[tuple[Any, tuple[Any, ...], Any]] = []
        parts = size = 0
        for chunk in chunks:
            chunk_size = sum(_size(bd, params) for _stmt, params, bd in chunk) if b.partitions > 1 else 0
            if batch and (parts >= b.partitions or len(batch) + len(chunk) > b.statements
                          or size + chunk_size > b.max_bytes):
                out.append(_batch(batch))
                batch, parts, size = [], 0, 0
            batch += chunk
            parts += 1
            size += chunk_size
        if batch:
            out.append(_batch(batch))
    return out


def _batch(statements: list[tuple[Any, tuple[Any, ...], Any]]) -> tuple[Any, tuple[Any, ...]]:
    if len(statements) == 1:
        stmt, params, bound = statements[0]
        return (bound, ()) if bound is not stmt else (stmt, params)
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for stmt, params, bound in statements:
        if bound is stmt:  # not a prepared statement: the driver binds it
            batch.add(stmt, params)
        else:
            batch.add(bound)
    return batch, ()


async def execute_grouped(session: Any, stmts: list[CqlStatement], concurrency: int = 64,
                          max_statements: int = BATCH_STATEMENTS, batching: Batching | None = None) -> int:
    """Write ``stmts`` grouped per partition (``group_batches``; with a ``batching`` of several
    partitions, partitions of one replica together) on the driver's threads; returns the number of
    requests sent."""
    if not stmts:
        return 0

    def write() -> int:  # on an executor thread: binding the batches is CPU work the loop need not wait for
        grouped = group_batches(stmts, max_statements, batching, replica_of(session))
        execute_concurrent(session, grouped, concurrency=concurrency, raise_on_first_error=True)
        return len(grouped)

    return await asyncio.get_running_loop().run_in_executor(None, write)


@dataclass
class Sink:
    """One kind of durable row: pending values by key and the function that writes a batch of them."""

    name: str
    flush: Flush | None
    pending: dict[Hashable, Any] = field(default_factory=dict)
    statements: Statements | None = None  # cql sinks: rows -> statements, written grouped by partition
    session: Any = None


class WriteBehind:
    """Coalescing, background-flushed buffer of durable writes that holds the Kafka acks it covers."""

    def __init__(self, interval_s: float = 0.25, max_pending: int = 50_000, batching: Batching = SINGLE) -> None:
        self.interval_s = interval_s
        self.batching = batching
        self.max_pending = max_pending
        self.sinks: dict[str, Sink] = {}
        self.held: list[Any] = []       # events whose acks wait for the next successful flush
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.flushed_rows = 0
        self.flushes = 0
        self.last_error: str | None = None

    def sink(self, name: str, flush: Flush) -> Sink:
        s = self.sinks[name] = Sink(name, flush)
        return s

    def cql_sink(self, name: str, session: Any, statements: Statements) -> Sink:
        """A sink whose rows become Cassandra statements; at flush time the statements of every cql
        sink are grouped by partition (one batch, one mutation per partition)."""
        s = self.sinks[name] = Sink(name, None, statements=statements, session=session)
        return s

    async def _write(self, batches: list[tuple[Sink, dict[Hashable, Any]]]) -> None:
        by_session: dict[int, tuple[Any, list[CqlStatement]]] = {}
        calls = []
        for s, rows in batches:
            if s.statements is None:
                assert s.flush is not None
                calls.append(s.flush(rows))
            else:
                by_session.setdefault(id(s.session), (s.session, []))[1].extend(s.statements(rows))
        calls += [execute_grouped(session, stmts, batching=self.batching) for session, stmts in by_session.values()]
        await asyncio.gather(*calls)

    def put(self, name: str, key: Hashable, value: Any) -> None:
        """Buffer the absolute value of ``key`` (a later put of the same key replaces it)."""
        self.sinks[name].pending[key] = value

    def put_many(self, name: str, items: dict[Hashable, Any]) -> None:
        self.sinks[name].pending.update(items)

    async def forget(self, user_id: str) -> int:
        """Drop every pending row of ``user_id`` (keyed by the user id, or a tuple holding it), after
        any flush in progress has finished: the rows a merge or an erase is about to delete can then
        never be written after the delete (which would resurrect them). Returns the rows dropped."""
        async with self.lock:
            dropped = 0
            for s in self.sinks.values():
                gone = [k for k in s.pending if k == user_id or (isinstance(k, tuple) and user_id in k)]
                for k in gone:
                    del s.pending[k]
                dropped += len(gone)
            return dropped

    @property
    def pending(self) -> int:
        return sum(len(s.pending) for s in self.sinks.values())

    def hold(self, events: list[Any]) -> None:
        """Keep the Kafka acks of ``events`` until the rows buffered so far are written."""
        for e in events:
            e.message.incref()
        self.held.extend(events)

    async def after_batch(self, events: list[Any]) -> None:
        """``hold`` the batch; wait for a flush only when the buffer is full (back-pressure)."""
        self.hold(events)
        self.ensure_running()
        if self.pending >= self.max_pending:
            await self.flush()

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        delay = self.interval_s
        while True:
            await asyncio.sleep(delay)
            try:
                await self.flush()
                delay = self.interval_s
            except Exception as exc:  # noqa: BLE001 - rows and acks stay; retried with backoff
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(max(delay * 2, 0.1), 5.0)
                log.warning("durable flush failed (%s); retry in %.1fs", self.last_error, delay)

    async def flush(self) -> int:
        """Write every pending row, then release the acks held before the flush began."""
        async with self.lock:
            batches = [(s, s.pending) for s in self.sinks.values() if s.pending]
            events, self.held = self.held, []
            for s, _ in batches:
                s.pending = {}
            written = 0
            try:
                if batches:
                    t0 = time.perf_counter()
                    await self._write(batches)
                    written = sum(len(rows) for _, rows in batches)
                    ms = (time.perf_counter() - t0) * 1000
                    STATS.add("durable_flush", ms)
                    log.debug("flushed %d durable rows in %.0f ms", written, ms)
            except BaseException:
                for s, rows in batches:  # put back under newer values that arrived meanwhile
                    rows.update(s.pending)
                    s.pending = rows
                self.held = events + self.held
                raise
            for e in events:
                e.ack()
            self.flushed_rows += written
            self.flushes += 1
            return written
