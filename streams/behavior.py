"""The one agent over ``events.behavior``: a thin loop that takes a batch, runs the intake (decode,
validate, de-duplicate by event id, dead-letter) once, and fans the accepted batch out to every
state owner fed by behavior events, each keeping its own fences:

* profiles, segments and analytics (``BehaviorPipeline`` here; streams/profiles.py,
  streams/analytics.py),
* the user-side recommender signals (streams/cooccurrence.py: sequences, co-occurrence, MF),
* experiment conversions and bandit rewards (streams/decisions.py).

The owners are a plain list built in streams/app.py (``(name, step)`` pairs); a new owner is one
more entry. Owners run concurrently on the same batch (their Redis round trips overlap) and each
step is retried on store errors (idempotent: fenced). Owns the intake counters and the
dead-letter records of this topic. With a ``WriteBehind`` (streams/durable.py) the owners'
Cassandra rows are written off the hot loop and the batch's offsets are committed only after them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust

from schemas.codec import codec
from streams import analytics
from streams.durable import WriteBehind
from streams.intake import Accepted, Dead, RawRecord, first_sightings, split
from streams.profiles import CatalogCache, Fact, Profile, ProfileConfig, ProfileStore

if TYPE_CHECKING:
    from streams.app import Resources

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
    (grouped per user with the user's other rows of the flush: one Cassandra mutation)."""

    def __init__(self, redis: Any, session: Any, keys: Any, cfg: ProfileConfig, durable: WriteBehind) -> None:
        super().__init__(redis, session, keys, cfg)
        self.durable = durable
        durable.cql_sink("profiles", session, lambda states: ProfileStore.durable_statements(self, states))

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
        kept = await resolve_aliases(self.res.redis, self.res.keys, kept)
        await self.catalog.prefetch({a.event.item_id for a in kept if a.event.item_id}, now_ms)
        buckets = {(g, analytics.bucket_start(a.event.event_time, g)) for a in kept for g in analytics.GRAINS}

        async def count(facts: list[Fact]) -> None:
            await self.analytics.apply(facts, buckets | analytics.batch_buckets(facts), now_ms)

        _, facts = await self.profiles.apply(kept, self.catalog.get, before_commit=count)
        if kept and not facts:  # a replayed batch: still mark its buckets for the durable flush
            await self.analytics.apply([], buckets, now_ms)
        return facts


@dataclass
class Batch:
    """One batch of the behavior topic after the intake: what every state owner receives."""

    kept: list[Accepted]  # decoded, valid, first sightings; in the batch's arrival order
    raw: dict[tuple[int, int], RawRecord]  # (partition, offset) -> raw record, for owners that dead-letter
    now_ms: int


# A state owner fed by the behavior topic: its name (logs, retries) and an idempotent batch step that
# keeps its own fences and returns the dead letters it found (or None). Owners run concurrently.
OwnerStep = Callable[[Batch], Awaitable["list[Dead] | None"]]
Owner = tuple[str, OwnerStep]


def profiles_owner(pipeline: BehaviorPipeline) -> Owner:
    """Profiles, segments and analytics (this module's pipeline)."""

    async def step(b: Batch) -> None:
        await pipeline.apply(b.kept, b.now_ms)

    return "profiles+analytics", step


RETRIES = 30


async def retrying(what: str, fn: Any, *args: Any) -> Any:
    """Run an idempotent batch step until it succeeds (backoff up to 5 s, ``RETRIES`` attempts).

    A crashed Faust agent is restarted *without* the batch it was folding (measured: 8 of 99,057
    events lost after a Redis timeout), so transient store errors are retried here; the fences make
    a retried step harmless. Every agent of the worker retries its batch steps with this.
    """
    delay = 0.1
    for attempt in range(1, RETRIES + 1):
        try:
            return await fn(*args)
        except Exception as exc:  # noqa: BLE001 - retried, then re-raised
            if attempt == RETRIES:
                raise
            log.warning("%s failed (%s: %s); retry %d in %.1fs", what, type(exc).__name__, exc, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return None


async def intake_and_fan_out(res: Resources, event_codec: Any, records: list[RawRecord], owners: list[Owner],
                             now_ms: int) -> tuple[list[Accepted], list[Dead], int]:
    """One batch: decode, validate, de-duplicate once, then every owner concurrently (the agent's
    body without Kafka; bench/pipeline.py runs it in-process). Returns (kept, dead letters, dupes)."""
    accepted, dead = split(records, event_codec, now_ms)
    kept, dupes = await retrying("dedup", dedup, res.redis, res.keys, accepted)
    b = Batch(kept, {(r.partition, r.offset): r for r in records}, now_ms)
    for more in await asyncio.gather(*(retrying(name, step, b) for name, step in owners)):
        dead += more or []
    return kept, dead, dupes


def register(app: faust.App, res: Resources, source_topic: str, deadletter_topic: str,
             owners: list[Owner], durable: WriteBehind | None = None) -> None:
    """The one agent over ``events.behavior``: intake once per batch, then every owner of ``owners``.

    ``durable`` (write-behind of the owners' Cassandra rows) holds each batch's Kafka acks until the
    rows are written; without it the owners write their rows in the batch.
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

    @app.agent(source, name="process_behavior")
    async def process_behavior(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            now_ms = int(time.time() * 1000)
            records = [RawRecord.of(e.message) for e in batch]
            kept, dead, dupes = await intake_and_fan_out(res, event_codec, records, owners, now_ms)
            if dead:
                await send_dead(dead, now_ms)
            pipe = res.redis.pipeline(transaction=False)
            pipe.hincrby(res.keys.intake_count(), "accepted", len(kept))
            if dupes:
                pipe.hincrby(res.keys.intake_count(), "duplicate", dupes)
            for d in dead:
                pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
            await pipe.execute()
            if durable is not None:
                await durable.after_batch(batch)
