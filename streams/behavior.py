"""The one agent over ``events.behavior``: a thin loop that takes a batch, runs the intake once
(decode, validate, de-duplicate by event id, dead-letter) and fans the accepted batch out to every
state owner of this process's roles, concurrently (their Redis round trips overlap), then takes the
next batch. An owner that fails on the data (not on a store) has the events that make it fail
dead-lettered (``fold_failed``) and the rest of the batch folded (``streams.runtime.fold_isolating``):
one bad event never stops the lane.

The owners are what the agent modules' ``register`` return (streams/app.py collects them); each
keeps its own fences and is retried on store errors. A batch's Kafka offsets are committed only once
the Cassandra rows its owners buffered are written (the write-behind, streams/durable.py). Owns the
intake counters and the dead-letter records of this topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust

from aura import layout
from schemas.codec import codec
from streams.intake import Accepted, Dead, RawRecord, first_sightings, split
from streams.loopstats import STATS
from streams.runtime import PROFILES_OWNER, Batch, Owner, OwnerStep, Resources, fold_isolating, retrying

log = logging.getLogger(__name__)

DEDUP_WINDOW_MS = 24 * 3600 * 1000
# events per dedup script call: a script blocks Redis for every other client while it runs (about
# 8 us per event), so a catch-up batch of tens of thousands is marked in slices of about 15 ms
DEDUP_CHUNK = 2000
MERGE_WAIT_S = 0.1  # while merging takes (catching up): how long to wait for the next one


# SET NX GET of every event id of a batch in one script call (one JSON argument): a pipeline of one
# SET per event spends more Python time packing commands than the rest of the pipeline. Not Redis
# Cluster-ready as is (the ids live in many slots): under Cluster, call it once per slot.
DEDUP_LUA = """
local d = cjson.decode(ARGV[2])
local out = {}
for i = 1, #d, 2 do
  local prior = redis.call('SET', d[i], d[i + 1], 'NX', 'PX', ARGV[1], 'GET')
  if prior then out[#out + 1] = prior else out[#out + 1] = '' end
end
return out
"""


async def dedup(redis: Any, keys: Any, accepted: list[Accepted]) -> tuple[list[Accepted], int]:
    """Drop events whose event_id was already carried by another record: one script call per
    ``DEDUP_CHUNK`` events, in batch order (an id repeated in a later chunk finds the earlier
    chunk's mark)."""
    if not accepted:
        return [], 0
    seen: list[str] = []
    for start in range(0, len(accepted), DEDUP_CHUNK):
        flat: list[str] = []
        for acc in accepted[start:start + DEDUP_CHUNK]:
            flat += [keys.event_seen(acc.event.event_id), f"{acc.partition}:{acc.offset}"]
        seen += await redis.eval(DEDUP_LUA, 0, DEDUP_WINDOW_MS, json.dumps(flat, separators=(",", ":")))
    return first_sightings(accepted, [s or None for s in seen])


async def intake(res: Resources, event_codec: Any, records: list[RawRecord],
                 now_ms: int, owns_intake: bool = True) -> tuple[Batch, list[Dead], int]:
    """Decode, validate and de-duplicate one batch of records once (for every owner). Returns the
    owners' batch, the dead letters and the number of duplicates; the latter two only if this
    consumer group ``owns_intake`` (see ``register``), else none (another group writes them)."""
    accepted, dead = split(records, event_codec, now_ms)
    if accepted:
        times = [a.event.event_time for a in accepted]
        STATS.add("age_oldest", now_ms - min(times))
        STATS.add("age_newest", now_ms - max(times))
    kept, dupes = await retrying("dedup", dedup, res.redis, res.keys, accepted)
    if not owns_intake:
        dead, dupes = [], 0
    return Batch(kept, {(r.partition, r.offset): r for r in records}, now_ms), dead, dupes


def behind(events: list[Any], now_s: float, lag_s: float) -> bool:
    """Whether the newest record of a take was produced more than ``lag_s`` before ``now_s`` (Kafka
    timestamps, seconds): then more records wait behind it. ``lag_s <= 0``: never."""
    if lag_s <= 0 or not events:
        return False
    newest = max(e.message.timestamp or now_s for e in events)
    return now_s - newest > lag_s


async def taken(stream: faust.StreamT, batch_max: int, within_s: float, catchup_lag_s: float = 0.0,
                catchup_max: int = 0) -> AsyncIterator[tuple[list[Any], list[RawRecord], int, float]]:
    """The agent's batches (Faust events, their raw records, now in ms, the perf-counter start),
    timing the gap between the end of one batch's work and the next batch.

    Faust fills a take only during the ``within_s`` wait after the previous batch (its consumer
    path hands over a few thousand records a second), so a backlog would be folded in batches of a
    few dozen events, each paying every owner's fixed round trips. While catching up (``behind``),
    consecutive takes are merged into one batch of at least ``catchup_max`` (default and floor:
    ``batch_max``; a take is never split): a larger batch pays each owner's per-batch and per-key
    work once for more events (one item script per touched item, one user script per user); the
    merged batch goes out as soon as no further take arrives within ``MERGE_WAIT_S`` (the end of
    a backlog). Every merged event keeps one extra reference on its Kafka message until the agent
    has handed the batch to the write-behind, so no offset is committed before its batch is folded.
    """
    ended = None
    merge_max = max(batch_max, catchup_max)
    takes = stream.take_events(batch_max, within=within_s).__aiter__()
    pending: asyncio.Future[Any] | None = None  # the next take, asked for and not yet arrived
    merged: list[Any] = []  # events of earlier takes, each holding one extra reference
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(takes.__anext__())
            events: list[Any] = []
            if merged:
                done, _ = await asyncio.wait({pending}, timeout=max(MERGE_WAIT_S, 2 * within_s))
                if not done:  # the backlog has ended: the merged events go out, the take stays asked for
                    events = merged
            if not events:
                try:
                    taken_now = list(await pending)
                except StopAsyncIteration:
                    return
                pending = None
                events = merged + taken_now
                if len(events) < merge_max and behind(taken_now, time.time(), catchup_lag_s):
                    for e in taken_now:
                        e.message.incref()
                    merged = events
                    continue
            held, merged = merged, []
            started = time.perf_counter()
            if ended is not None:
                STATS.add("take_gap", (started - ended) * 1000)
            STATS.add("batch_size", len(events))
            yield events, [RawRecord.of(e.message) for e in events], int(time.time() * 1000), started
            # the agent has handed the batch to the write-behind, which holds its own references. Not
            # released if the agent fails instead: those offsets then stay uncommitted (replayed, fenced).
            for e in held:
                e.ack()
            ended = time.perf_counter()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def intake_and_fan_out(res: Resources, event_codec: Any, records: list[RawRecord], owners: list[Owner],
                             now_ms: int, owns_intake: bool = True) -> tuple[list[Accepted], list[Dead], int]:
    """One batch: decode, validate, de-duplicate once, then every owner concurrently (the agent's
    body without Kafka; bench/pipeline.py runs it in-process). Returns (kept, dead letters, dupes):
    the intake's own dead letters and duplicates only if ``owns_intake`` (see ``register``), the
    owners' dead letters always."""
    t0 = time.perf_counter()
    b, dead, dupes = await intake(res, event_codec, records, now_ms, owns_intake)
    STATS.add("intake", (time.perf_counter() - t0) * 1000)

    async def timed_step(name: str, step: OwnerStep) -> list[Dead] | None:
        t1 = time.perf_counter()
        out = await fold_isolating(name, step, b)
        t2 = time.perf_counter()
        STATS.add(f"owner:{name}", (t2 - t1) * 1000)
        if name == PROFILES_OWNER:  # the batch is visible through the API from here
            STATS.add("visible", (t2 - t0) * 1000)
        return out

    for more in await asyncio.gather(*(timed_step(name, step) for name, step in owners)):
        dead += more or []
    return b.kept, dead, dupes


def register(app: faust.App, res: Resources, owners: list[Owner], owns_intake: bool = True) -> None:
    """The one agent over ``events.behavior``: intake once per batch, then every owner of ``owners``.

    The write-behind (``res.durable``) holds each batch's Kafka acks until its rows are written.
    When the worker's roles are split over several consumer groups (``AURA_WORKER_ROLES``,
    streams/app.py) every group runs the intake (the event-id dedup keeps the first record's
    position, so each group keeps the same events), and only the group that owns the intake
    (``owns_intake``: the profiles role) writes its dead letters and its accepted / duplicate /
    dead-letter counts, so none is written twice.
    """
    s = res.settings
    source = app.topic(layout.topic(s, layout.BEHAVIOR), key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    deadletters = app.topic(layout.topic(s, layout.DEADLETTER), key_serializer="raw", value_serializer="raw")
    event_codec = codec("behavior_event")
    dead_codec = codec("dead_letter")

    async def send_dead(dead: list[Dead], now_ms: int) -> None:
        for d in dead:
            await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms)))
        log.warning("dead-lettered %d records: %s", len(dead), sorted({d.reason for d in dead}))

    async def count(kept: int, dupes: int, dead: list[Dead]) -> None:
        if not owns_intake and not dead:
            return
        pipe = res.redis.pipeline(transaction=False)
        if owns_intake:
            pipe.hincrby(res.keys.intake_count(), "accepted", kept)
        if dupes:
            pipe.hincrby(res.keys.intake_count(), "duplicate", dupes)
        for d in dead:
            pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
        await pipe.execute()

    @app.agent(source, name="process_behavior")
    async def process_behavior(stream: faust.StreamT) -> None:
        async for batch, records, now_ms, started in taken(stream, s.worker.batch_max, s.worker.batch_within_s,
                                                                  s.worker.batch_catchup_lag_s,
                                                                  s.worker.batch_catchup_max):
            kept, dead, dupes = await intake_and_fan_out(res, event_codec, records, owners, now_ms, owns_intake)
            if dead:
                await send_dead(dead, now_ms)
            await count(len(kept), dupes, dead)
            await res.durable.after_batch(batch)
            STATS.add("batch", (time.perf_counter() - started) * 1000)
