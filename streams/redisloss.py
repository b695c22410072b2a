"""The Redis loss guard: the worker notices that Redis lost writes and refolds exactly what is missing.

Redis runs with ``appendfsync everysec``: a crash loses up to its last second of writes while Kafka
already holds the committed offsets of the events those writes folded, and a Redis restarted on a
lost disk holds nothing. Either way Redis restarts with a *prefix* of the commands it executed (the
append-only file is replayed in order), which is what makes an exact recovery possible.

Owns one Redis hash per consumer group (``RedisKeys.applied_offsets``): per topic partition the
offset the group commits to Kafka, written *just before* that commit, plus an ``epoch`` field.
Faust commits an offset only when every event below it is acked, and the agents ack a batch only
after its Redis writes answered (the behavior owners: after the write-behind's Cassandra flush too),
so the mark reaches Redis after every effect it covers: a Redis that holds a mark holds every effect
below it. Hence:

* **At every partition assignment** (the consumer's seek to its committed offsets): a partition
  whose mark is below Kafka's committed offset lost writes; the consumer starts from the mark
  instead (from the log start when the group's hash is gone: Redis lost everything). The owners'
  fences (per user and partition, per partition for the analytics counters, the event-id dedup
  that keeps the first record's position) skip the effects that survived, so every event counts
  once. Cassandra rows are absolute values rewritten by the refold.
* **While the worker runs**: every new connection of the worker's Redis client asks for the
  server's run id (``INFO server``). Redis restarted (and may have lost its tail) when it differs
  from the one first seen; then no command goes over that connection and the process is replaced
  (``AURA_REDIS_LOSS_ACTION``: ``restart`` re-executes it, ``exit`` ends it with status 75 for a
  supervisor) without committing anything, and the new process's assignment does the above. A
  batch in flight can therefore never write onto the restarted Redis before the rewind. The app is
  stopped as a crash first, so its consumer leaves the group and the new process is assigned at
  once rather than after the session timeout (``stop_app``).
* **Redis emptied without a restart** (``FLUSHALL``): the mark write before a commit finds the
  group's hash gone, commits nothing and replaces the process likewise.

A hand-made guard rather than a library: Faust has no hook for "state store lost writes"; the two
seams used here are its consumer's ``seek_to_committed`` and ``_commit`` (wrapped per instance).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from aura.keys import RedisKeys
from streams.runtime import retrying

log = logging.getLogger(__name__)

EXIT_STATUS = 75  # EX_TEMPFAIL: "exit" action, for a supervisor to restart the worker
STOP_GRACE_S = 20.0  # the app's stop (which leaves the consumer group) may take this long, then a hard replace

# KEYS[1]: the group's hash; ARGV: field, offset, field, offset ... Returns 0 (and writes nothing)
# when the hash is gone: Redis lost everything since this process's assignment wrote it.
MARK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class RedisLost(ConnectionError):  # noqa: N818 - reads as what happened; a ConnectionError so callers retry
    """Redis restarted or was emptied under the worker: nothing more is written until the rewind."""


def field(tp: Any) -> str:
    """The hash field of a topic partition (``tp.topic``, ``tp.partition``)."""
    return f"{tp.topic}:{tp.partition}"


def run_id_of(info: Any) -> str:
    """The ``run_id`` of an ``INFO server`` answer (raw text or bytes)."""
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    raise ValueError("INFO server carries no run_id")


def rewinds(committed: Mapping[Any, int | None], marks: Mapping[str, str] | None) -> dict[Any, int | None]:
    """Partitions whose Redis state is behind Kafka: tp -> the offset to refold from (None: the log start).

    ``committed``: Kafka's committed offset per assigned partition (None or <= 0: nothing committed,
    nothing to check); ``marks``: the group's hash (None or empty: gone, Redis lost everything)."""
    out: dict[Any, int | None] = {}
    for tp, c in committed.items():
        if c is None or c <= 0:
            continue
        raw = (marks or {}).get(field(tp))
        if raw is None:
            out[tp] = None
        elif int(raw) < c:
            out[tp] = int(raw)
    return out


def replace_process(action: str) -> None:
    """Leave nothing in flight: re-execute this worker with its own arguments (``restart``), or exit
    with ``EXIT_STATUS`` (``exit``). Nothing is committed and no write-behind flushed on the way."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if action == "exit":
        os._exit(EXIT_STATUS)
    env = {**os.environ, "AURA_WORKER_NICE": "0"}  # niceness is inherited: do not add it twice
    os.execve(sys.executable, [sys.executable, "-m", "aura.cli", *sys.argv[1:]], env)  # noqa: S606 - our own argv


class RedisLossGuard:
    """Marks the group's applied offsets in Redis, rewinds partitions whose marks are behind, and
    replaces the process when Redis restarts or empties under it."""

    def __init__(self, keys: RedisKeys, group: str, action: str = "restart",
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.key = keys.applied_offsets(group)
        self.group = group
        self.action = action
        self.on_lost = on_lost or (lambda _reason: replace_process(action))
        self.redis: Any = None
        self.run_id: str | None = None
        self.lost_reason: str | None = None
        # (topic, partition) -> Kafka's committed offset at a rewind: the events below it were folded
        # before Redis lost their effects, and their Cassandra rows may be ahead of what Redis holds now
        self.refold_below: dict[tuple[str, int], int] = {}

    def attach(self, redis: Any) -> None:
        """The worker's Redis client, built with ``redis_connect_func=guard.on_connect``."""
        self.redis = redis
        self.mark_script = redis.register_script(MARK_LUA)

    # -- while running -------------------------------------------------------------------------

    async def on_connect(self, conn: Any) -> None:
        """``redis_connect_func`` of every connection: the usual handshake, then the run-id check."""
        await conn.on_connect()
        await conn.send_command("INFO", "server")
        run_id = run_id_of(await conn.read_response())
        if self.run_id is None:
            self.run_id = run_id
        elif run_id != self.run_id:
            self.lost(f"Redis restarted (run id {self.run_id[:12]} -> {run_id[:12]}); it may have lost writes")
        if self.lost_reason is not None:
            raise RedisLost(self.lost_reason)

    def lost(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            log.error("%s: the worker of group %s starts again and refolds from its offset marks in Redis",
                      reason, self.group)
            self.on_lost(reason)

    async def mark(self, offsets: Mapping[Any, int]) -> bool:
        """Write the offsets about to be committed; False (commit nothing) when Redis cannot take them."""
        if self.lost_reason is not None:
            return False
        args: list[Any] = []
        for tp, offset in offsets.items():
            args += [field(tp), int(offset)]
        try:
            ok = await self.mark_script(keys=[self.key], args=args)
        except Exception as exc:  # noqa: BLE001 - the commit waits for the next interval
            log.warning("offset marks not written (%s: %s); commit deferred", type(exc).__name__, exc)
            return False
        if not ok:
            self.lost("Redis lost every key of this worker group (its offset marks are gone)")
            return False
        return True

    # -- at assignment -------------------------------------------------------------------------

    async def rewind(self, committed: Mapping[Any, int | None]) -> dict[Any, int | None]:
        """Read the marks, decide the rewinds, make sure the group's hash exists (the ``epoch``);
        returns tp -> offset to start from (None: the log start) for the partitions behind."""

        async def read() -> Any:
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(self.key)
            pipe.hgetall(self.key)
            pipe.hsetnx(self.key, "epoch", str(int(time.time() * 1000)))
            return await pipe.execute()

        exists, marks, _ = await retrying("redis offset marks", read)
        behind = rewinds(committed, marks if exists else None)
        for tp, offset in behind.items():
            log.error("Redis lost writes of %s: Kafka's committed offset is %s, Redis holds the effects up to "
                      "%s; refolding from there (the fences skip what survived)", field(tp), committed[tp],
                      "nothing (its mark is gone): the log start" if offset is None else f"offset {offset}")
        return behind

    def refolding(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the event at ``offset`` is refolded after a loss (it was folded before it)."""
        return offset < self.refold_below.get((topic, partition), -1)

    def install(self, consumer: Any) -> None:
        """Wrap ``consumer``'s seek to its committed offsets (rewind) and its commit (marks first)."""
        if getattr(consumer, "_aura_redis_guard", None) is self:
            return
        consumer._aura_redis_guard = self
        real_seek, real_commit = consumer.seek_to_committed, consumer._commit

        async def seek_to_committed() -> Mapping[Any, int]:
            offsets = dict(await real_seek())
            behind = await self.rewind(offsets)
            starts = await consumer.earliest_offsets(*[tp for tp, o in behind.items() if o is None]) \
                if any(o is None for o in behind.values()) else {}
            for tp, offset in behind.items():
                start = starts.get(tp, 0) if offset is None else offset
                await consumer._seek(tp, start)
                if offsets[tp] is not None:
                    self.refold_below[(tp.topic, tp.partition)] = int(offsets[tp])
                offsets[tp] = start
            return offsets

        async def commit(offsets: Mapping[Any, int]) -> bool:
            if not await self.mark(offsets):
                return False
            return bool(await real_commit(offsets))

        consumer.seek_to_committed = seek_to_committed
        consumer._commit = commit


def stop_app(app: Any, action: str, reason: str) -> None:
    """Stop ``app`` as a crash (the consumer leaves its group at once, so the next process is not kept
    waiting for the session timeout; the guard lets no commit through meanwhile); the CLI's worker
    command then replaces the process (``replace_process``). Should the stop hang, the process is
    replaced after ``STOP_GRACE_S`` anyway."""
    timer = threading.Timer(STOP_GRACE_S, replace_process, args=(action,))
    timer.daemon = True
    timer.start()
    asyncio.get_running_loop().create_task(app.crash(RedisLost(reason)))


def register(app: Any, res: Any) -> list[Any]:
    """Install the guard of ``res.redis_guard`` on the app's consumer at its first assignment; a loss
    stops the app (``stop_app``)."""
    guard: RedisLossGuard | None = getattr(res, "redis_guard", None)
    if guard is None:
        return []
    guard.on_lost = lambda reason: stop_app(app, guard.action, reason)

    @app.on_partitions_assigned.connect
    async def on_assigned(_app: Any, assigned: Any = None, **_kw: Any) -> None:  # noqa: ARG001
        guard.install(app.consumer)

    return []
