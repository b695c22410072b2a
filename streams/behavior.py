"""The agent over ``events.behavior``: one thin loop that takes a batch, runs intake (decode,
validate, dedup, dead-letter) once, and hands the accepted events to each state owner: profiles
(streams/profiles.py, which also keeps segments current) and, with the facts the profile fold
learned (sessions, journeys, attribution), the analytics counters (streams/analytics.py).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import faust

from schemas.codec import codec
from streams import analytics
from streams.intake import Accepted, Dead, RawRecord, first_sightings, split
from streams.profiles import CatalogCache, Fact, ProfileConfig, ProfileStore

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


class BehaviorPipeline:
    """The state owners fed by one batch of accepted behavior events (used by the agent and tests)."""

    def __init__(self, res: Resources) -> None:
        s = res.settings
        self.res = res
        self.profiles = ProfileStore(res.redis, res.session, res.keys, ProfileConfig.from_settings(s))
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


def register(app: faust.App, res: Resources, source_topic: str, deadletter_topic: str) -> None:
    s = res.settings
    source = app.topic(source_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    deadletters = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")
    event_codec = codec("behavior_event")
    dead_codec = codec("dead_letter")
    pipeline = BehaviorPipeline(res)

    async def send_dead(dead: list[Dead], now_ms: int) -> None:
        for d in dead:
            await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms)))
        log.warning("dead-lettered %d records: %s", len(dead), sorted({d.reason for d in dead}))

    @app.agent(source, name="process_behavior")
    async def process_behavior(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            now_ms = int(time.time() * 1000)
            records = [RawRecord.of(e.message) for e in batch]
            accepted, dead = split(records, event_codec, now_ms)
            kept, dupes = await dedup(res.redis, res.keys, accepted)
            if dead:
                await send_dead(dead, now_ms)
            await pipeline.apply(kept, now_ms)
            pipe = res.redis.pipeline(transaction=False)
            pipe.hincrby(res.keys.intake_count(), "accepted", len(kept))
            if dupes:
                pipe.hincrby(res.keys.intake_count(), "duplicate", dupes)
            for d in dead:
                pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
            await pipe.execute()
