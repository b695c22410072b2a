"""The one agent over ``events.behavior``: a thin loop that takes a batch, runs the intake (decode,
validate, de-duplicate by event id, dead-letter) once, and fans the accepted batch out to every
state owner fed by behavior events, each keeping its own fences:

* profiles, segments and analytics (``BehaviorPipeline`` here; streams/profiles.py,
  streams/analytics.py),
* the user-side recommender signals (streams/cooccurrence.py: sequences, co-occurrence, MF),
* experiment conversions and bandit rewards (streams/decisions.py).

The owners are a plain list built in streams/app.py (``(name, step)`` pairs); a new owner is one
more entry. By default every owner of a batch runs concurrently (their Redis round trips overlap),
then the next batch is taken. With ``AURA_OWNER_LANES=true`` each owner runs in its own lane
(``Lanes``: a task over the queue of intake batches, batches that waited folded as one step, the
profile lane first), so the state the API shows does not wait for the slower owners: faster at
300 events/s, slower at 1,000/s on the shared 2-core machine (docs/state.md "Freshness"), hence off.
Each step is retried on store errors (idempotent: fenced). Owns the intake counters and the
dead-letter records of this topic. With a ``WriteBehind`` (streams/durable.py) the owners'
Cassandra rows are written off the hot loop and the batch's offsets are committed only after them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust

from schemas.codec import codec
from streams import analytics
from streams.durable import WriteBehind
from streams.intake import Accepted, Dead, RawRecord, first_sightings, split
from streams.loopstats import STATS
from streams.profiles import CatalogCache, Fact, Profile, ProfileConfig, ProfileStore
from streams.runtime import Batch, Owner, OwnerStep, retrying

if TYPE_CHECKING:
    from streams.runtime import Resources

log = logging.getLogger(__name__)

DEDUP_WINDOW_MS = 24 * 3600 * 1000


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
    """Drop events whose event_id was already carried by another record (one script call)."""
    if not accepted:
        return [], 0
    flat: list[str] = []
    for acc in accepted:
        flat += [keys.event_seen(acc.event.event_id), f"{acc.partition}:{acc.offset}"]
    seen = await redis.eval(DEDUP_LUA, 0, DEDUP_WINDOW_MS, json.dumps(flat, separators=(",", ":")))
    return first_sightings(accepted, [s or None for s in seen])


async def resolve_aliases(redis: Any, keys: Any, accepted: list[Accepted]) -> list[Accepted]:
    """Events of anonymous ids merged into a known user are folded into that user (one MGET)."""
    ids = sorted({a.event.user_id for a in accepted})
    if not ids:
        return accepted
    targets = dict(zip(ids, await redis.mget([keys.user_alias(u) for u in ids]), strict=True))
    if not any(targets.values()):
        return accepted
    from dataclasses import replace

    out = []
    for a in accepted:
        to = targets.get(a.event.user_id)
        out.append(Accepted(replace(a.event, user_id=to), a.partition, a.offset) if to else a)
    return out


class BufferedProfileStore(ProfileStore):
    """``ProfileStore`` whose Cassandra copies go through the write-behind buffer: the absolute state
    of each touched user is buffered (the newest replaces an older one) and turned into
    ``ProfileStore.durable_statements`` at flush time, so the rows are exactly the ones it writes
    (grouped per user with the user's other rows of the flush: one Cassandra mutation). The segment
    member rows of ``apply`` are buffered the same way (per segment and user, the newest membership)."""

    def __init__(self, redis: Any, session: Any, keys: Any, cfg: ProfileConfig, durable: WriteBehind) -> None:
        super().__init__(redis, session, keys, cfg)
        self.durable = durable
        durable.cql_sink("profiles", session, lambda states: ProfileStore.durable_statements(self, states))
        durable.cql_sink("segments", session, self.segments.statements)
        self.segment_buffer = lambda rows: durable.put_many("segments", rows)

    async def write_durable(self, states: dict[str, Profile]) -> None:
        self.durable.put_many("profiles", states)


class BehaviorPipeline:
    """The state owners fed by one batch of accepted behavior events (used by the agent and tests)."""

    def __init__(self, res: Resources, durable: WriteBehind | None = None) -> None:
        s = res.settings
        self.res = res
        cfg = ProfileConfig.from_settings(s)
        self.profiles = (ProfileStore(res.redis, res.session, res.keys, cfg) if durable is None
                         else BufferedProfileStore(res.redis, res.session, res.keys, cfg, durable))
        self.catalog = CatalogCache(res.redis, res.keys)
        self.analytics = analytics.AnalyticsStore(res.redis, res.keys, {
            "minute": s.analytics_minute_ttl_s, "hour": s.analytics_hour_ttl_s, "day": s.analytics_day_ttl_s})

    async def apply(self, kept: list[Accepted], now_ms: int) -> list[Fact]:
        # the alias MGET, the item attributes and the analytics fences in one round trip's time
        # (independent reads; the fences are compared and set by the analytics scripts)
        kept, _, fences = await asyncio.gather(
            resolve_aliases(self.res.redis, self.res.keys, kept),
            self.catalog.prefetch({a.event.item_id for a in kept if a.event.item_id}, now_ms),
            self.analytics.fences(sorted({a.partition for a in kept})) if kept else asyncio.sleep(0, {}))
        buckets = {(g, analytics.bucket_start(a.event.event_time, g)) for a in kept for g in analytics.GRAINS}
        first = [True]

        async def count(facts: list[Fact]) -> None:
            hint = fences if first[0] else None  # a retried profile attempt reads them afresh
            first[0] = False
            await self.analytics.apply(facts, buckets | analytics.batch_buckets(facts), now_ms, hint)

        _, facts = await self.profiles.apply(kept, self.catalog.get, before_commit=count)
        if kept and not facts:  # a replayed batch: still mark its buckets for the durable flush
            await self.analytics.apply([], buckets, now_ms)
        return facts


def profiles_owner(pipeline: BehaviorPipeline) -> Owner:
    """Profiles, segments and analytics (this module's pipeline)."""

    async def step(b: Batch) -> None:
        await pipeline.apply(b.kept, b.now_ms)

    return PROFILES_OWNER, step


PROFILES_OWNER = "profiles+analytics"
GATE_BELOW = 3  # batches waiting in a lane at which it stops giving way to the profile lane (``Lanes``)


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


async def taken(stream: faust.StreamT, batch_max: int, within_s: float
                ) -> AsyncIterator[tuple[list[Any], list[RawRecord], int, float]]:
    """The agent's batches (Faust events, their raw records, now in ms, the perf-counter start),
    timing the gap between the end of one batch's work and the next batch."""
    ended = None
    async for batch in stream.take_events(batch_max, within=within_s):
        started = time.perf_counter()
        if ended is not None:
            STATS.add("take_gap", (started - ended) * 1000)
        STATS.add("batch_size", len(batch))
        yield batch, [RawRecord.of(e.message) for e in batch], int(time.time() * 1000), started
        ended = time.perf_counter()


async def intake_and_fan_out(res: Resources, event_codec: Any, records: list[RawRecord], owners: list[Owner],
                             now_ms: int, owns_intake: bool = True) -> tuple[list[Accepted], list[Dead], int]:
    """One batch: decode, validate, de-duplicate once, then every owner concurrently (the agent's
    body without Kafka; bench/pipeline.py runs it in-process). Returns (kept, dead letters, dupes):
    the intake's own dead letters and duplicates only if ``owns_intake`` (see ``register``), the
    owners' dead letters always."""
    t0 = time.perf_counter()
    b, dead, dupes = await intake(res, event_codec, records, now_ms, owns_intake)
    kept = b.kept
    STATS.add("intake", (time.perf_counter() - t0) * 1000)

    async def timed_step(name: str, step: OwnerStep) -> list[Dead] | None:
        t1 = time.perf_counter()
        out = await retrying(name, step, b)
        t2 = time.perf_counter()
        STATS.add(f"owner:{name}", (t2 - t1) * 1000)
        if name == PROFILES_OWNER:  # the batch is visible through the API from here
            STATS.add("visible", (t2 - t0) * 1000)
        return out

    for more in await asyncio.gather(*(timed_step(name, step) for name, step in owners)):
        dead += more or []
    return kept, dead, dupes


@dataclass
class Ticket:
    """One intake batch on its way through the owner lanes: its Faust events keep one extra Kafka
    reference each until every owner has folded the batch (``Lanes.finish``)."""

    events: list[Any]
    batch: Batch
    dead: list[Dead]  # the intake's dead letters, then each owner's
    dupes: int
    started: float  # perf_counter at the batch's start (stats)
    remaining: int = 0


class Lanes:
    """Every state owner in its own task (a lane) over a queue of intake batches, in arrival order.

    The agent hands each intake batch to every lane and takes the next batch at once; a lane that
    finds several batches waiting folds them as one step (up to ``max_events`` events: in order, so
    the owners' offset fences see offsets rising as before). So the profile owner (the state the API
    shows) folds a batch as soon as the intake has it, without waiting for slower owners of the same
    or an earlier batch, while the slow owners fold larger batches (fewer round trips per event).

    Exactly-once as before: a batch's Kafka offsets are committed only after every lane has folded
    it, its dead letters are sent and counted, and the write-behind holds it (``finish``): each event
    keeps one reference (``Message.incref``) until then. A lane at ``depth`` waiting batches makes
    ``put`` wait (back-pressure). A step that still fails after ``retrying`` stops its lane; the next
    ``put`` raises it (the agent crashes and is restarted; the batches the lane held stay unacked, so
    their offsets are not committed and a restarted worker gets them again).
    """

    def __init__(self, owners: list[Owner], finish: Callable[[Ticket], Awaitable[None]],
                 max_events: int, depth: int) -> None:
        self.owners = owners
        self.finish = finish
        self.max_events = max_events
        self.depth = depth
        self.queues: dict[str, list[Ticket]] = {name: [] for name, _ in owners}
        self.wake = {name: asyncio.Event() for name, _ in owners}
        self.room = asyncio.Event()
        # the profile lane goes first: another lane starts a step only while the profile lane has
        # nothing to do (what the API shows does not wait behind the slower owners' CPU on the same
        # loop), unless ``GATE_BELOW`` batches wait in it (a backlog: then all run concurrently, as
        # without lanes; waiting there serialised the owners: 1,448 vs 2,107 events/s, docs/state.md)
        self.first = PROFILES_OWNER if PROFILES_OWNER in self.queues else None
        self.first_idle = asyncio.Event()
        self.first_idle.set()
        self.failed: BaseException | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.run(name, step), name=f"lane:{name}") for name, step in self.owners]

    async def put(self, ticket: Ticket) -> None:
        """Queue ``ticket`` on every lane (waits while a lane is full)."""
        while True:
            if self.failed is not None:
                raise self.failed
            if all(len(q) < self.depth for q in self.queues.values()):
                break
            self.room.clear()
            await self.room.wait()
        ticket.remaining = len(self.owners)
        if self.first is not None:
            self.first_idle.clear()
        for name in self.queues:
            self.queues[name].append(ticket)
            self.wake[name].set()
        if not self.owners:
            await self.finish(ticket)

    def idle(self) -> bool:
        return not any(self.queues.values())

    def take(self, name: str) -> list[Ticket]:
        """The waiting tickets a lane folds in one step: at least one, then up to ``max_events``."""
        q = self.queues[name]
        out, n = [q[0]], len(q[0].batch.kept)
        for t in q[1:]:
            if n + len(t.batch.kept) > self.max_events:
                break
            out.append(t)
            n += len(t.batch.kept)
        return out

    async def run(self, name: str, step: OwnerStep) -> None:
        q = self.queues[name]
        try:
            while True:
                await self.wake[name].wait()
                self.wake[name].clear()
                while q:
                    if name != self.first and len(q) < GATE_BELOW:
                        await self.first_idle.wait()
                    tickets = self.take(name)
                    b = merged([t.batch for t in tickets])
                    t0 = time.perf_counter()
                    dead = await retrying(name, step, b) or []
                    t1 = time.perf_counter()
                    STATS.add(f"owner:{name}", (t1 - t0) * 1000)
                    if len(tickets) > 1:
                        STATS.add(f"merged:{name}", len(tickets))
                    if name == PROFILES_OWNER:  # these batches are visible through the API from here
                        for t in tickets:
                            STATS.add("visible", (t1 - t.started) * 1000)
                    del q[:len(tickets)]
                    self.room.set()
                    if name == self.first and not q:
                        self.first_idle.set()
                    for t in tickets:
                        t.dead += [d for d in dead if (d.record.partition, d.record.offset) in t.batch.raw]
                        t.remaining -= 1
                        if t.remaining == 0:
                            await self.finish(t)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the agent by ``put``
            self.failed = exc
            self.room.set()
            log.exception("owner lane %s failed; its batches stay unacked", name)

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


def merged(batches: list[Batch]) -> Batch:
    """Consecutive intake batches as one (arrival order kept; ``now_ms`` of the newest)."""
    if len(batches) == 1:
        return batches[0]
    raw: dict[tuple[int, int], RawRecord] = {}
    for b in batches:
        raw.update(b.raw)
    return Batch([a for b in batches for a in b.kept], raw, batches[-1].now_ms)


def register(app: faust.App, res: Resources, source_topic: str, deadletter_topic: str,
             owners: list[Owner], durable: WriteBehind | None = None, owns_intake: bool = True) -> None:
    """The one agent over ``events.behavior``: intake once per batch, then every owner of ``owners``.

    ``durable`` (write-behind of the owners' Cassandra rows) holds each batch's Kafka acks until the
    rows are written; without it the owners write their rows in the batch. When the worker's roles
    are split over several consumer groups (``AURA_WORKER_ROLES``, streams/app.py) every group runs
    the intake (the event-id dedup keeps the first record's position, so each group keeps the same
    events), and only the group that owns the intake (``owns_intake``: the profiles role) writes its
    dead letters and its accepted / duplicate / dead-letter counts, so none is written twice.
    """
    s = res.settings
    source = app.topic(source_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    deadletters = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")
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

    async def finish(t: Ticket) -> None:
        """Every owner folded ``t``: its dead letters and counts, then its acks (held by the
        write-behind until its rows are written)."""
        if t.dead:
            await send_dead(t.dead, t.batch.now_ms)
        await retrying("intake counts", count, len(t.batch.kept), t.dupes, t.dead)
        if durable is not None:
            await durable.after_batch(t.events)
        for e in t.events:  # the lanes' reference (taken in the agent)
            e.ack()
        STATS.add("batch", (time.perf_counter() - t.started) * 1000)

    @app.agent(source, name="process_behavior")
    async def process_behavior(stream: faust.StreamT) -> None:
        if not s.owner_lanes:
            await sequential(stream)
            return
        lanes = Lanes(owners, finish, s.batch_max, s.owner_lane_depth)
        lanes.start()
        try:
            async for batch, records, now_ms, started in taken(stream, s.batch_max, s.batch_within_s):
                b, dead, dupes = await intake(res, event_codec, records, now_ms, owns_intake)
                for e in batch:  # one reference per event until every lane folded it (``finish``)
                    e.message.incref()
                await lanes.put(Ticket(list(batch), b, dead, dupes, started))
                STATS.add("intake", (time.perf_counter() - started) * 1000)
        finally:
            lanes.stop()

    async def sequential(stream: faust.StreamT) -> None:
        """The previous loop (``AURA_OWNER_LANES=false``): every owner of a batch, then the next."""
        async for batch, records, now_ms, started in taken(stream, s.batch_max, s.batch_within_s):
            kept, dead, dupes = await intake_and_fan_out(res, event_codec, records, owners, now_ms, owns_intake)
            if dead:
                await send_dead(dead, now_ms)
            await count(len(kept), dupes, dead)
            if durable is not None:
                await durable.after_batch(batch)
            STATS.add("batch", (time.perf_counter() - started) * 1000)
