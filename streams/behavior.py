"""The agent over ``events.behavior``: one thin loop that takes a batch, runs intake (decode,
validate, dedup, dead-letter) once, and hands the accepted events to each state owner.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import faust

from schemas.codec import codec
from streams.intake import Accepted, Dead, RawRecord, first_sightings, split
from streams.profiles import ActivityStore

if TYPE_CHECKING:
    from streams.app import Resources

log = logging.getLogger(__name__)

DEDUP_WINDOW_MS = 24 * 3600 * 1000


async def dedup(redis: Any, keys: Any, accepted: list[Accepted]) -> tuple[list[Accepted], int]:
    """Drop events whose event_id was already carried by another record (one pipeline)."""
    if not accepted:
        return [], 0
    pipe = redis.pipeline(transaction=False)
    for acc in accepted:
        pipe.set(keys.event_seen(acc.event.event_id), f"{acc.partition}:{acc.offset}", nx=True,
                 px=DEDUP_WINDOW_MS, get=True)
    seen = await pipe.execute()
    return first_sightings(accepted, seen)


def register(app: faust.App, res: Resources, source_topic: str, deadletter_topic: str) -> None:
    s = res.settings
    source = app.topic(source_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    deadletters = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")
    event_codec = codec("behavior_event")
    dead_codec = codec("dead_letter")
    activity = ActivityStore(res.redis, res.session, res.keys, s.recent_items_max)

    async def send_dead(dead: list[Dead], now_ms: int) -> None:
        for d in dead:
            await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms)))
        log.warning("dead-lettered %d records: %s", len(dead), sorted({d.reason for d in dead}))

    @app.agent(source, name="process_behavior")
    async def process_behavior(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            now_ms = int(time.time() * 1000)
            records = [RawRecord(e.message.topic, e.message.partition, e.message.offset,
                                 e.message.key, e.message.value) for e in batch]
            accepted, dead = split(records, event_codec, now_ms)
            kept, dupes = await dedup(res.redis, res.keys, accepted)
            if dead:
                await send_dead(dead, now_ms)
            await activity.apply(kept)
            pipe = res.redis.pipeline(transaction=False)
            pipe.hincrby(res.keys.intake_count(), "accepted", len(kept))
            if dupes:
                pipe.hincrby(res.keys.intake_count(), "duplicate", dupes)
            for d in dead:
                pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
            await pipe.execute()
