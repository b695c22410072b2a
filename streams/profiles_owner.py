"""The profiles owner of the behavior fan-out: profiles, segments and analytics from one batch.

streams/behavior.py decodes, validates and de-duplicates each batch of ``events.behavior`` once and
hands it to every owner; this module's owner resolves merged anonymous ids, prefetches the item
attributes the affinity fold needs, folds the profiles (streams/profiles.py) and the analytics
counters (streams/analytics.py, applied before the profiles so a partition's analytics fence is
never behind its users'), reconciles the segment sets, and hands the Cassandra copies to the
worker's write-behind (``Resources.durable``), which holds the batch's Kafka acks until they are
written. Every step is fenced: a replayed batch changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import faust

from aura import layout
from aura.state.profiles import Profile, ProfileConfig
from streams import analytics
from streams.durable import WriteBehind
from streams.intake import Accepted
from streams.profiles import CatalogCache, Fact, ProfileStore
from streams.runtime import Batch, Owner, Resources
from streams.segments import LiveRules

PROFILES_OWNER = "profiles+analytics"


async def resolve_aliases(redis: Any, keys: Any, accepted: list[Accepted]) -> list[Accepted]:
    """Events of anonymous ids merged into a known user are folded into that user (one MGET)."""
    ids = sorted({a.event.user_id for a in accepted})
    if not ids:
        return accepted
    targets = dict(zip(ids, await redis.mget([keys.user_alias(u) for u in ids]), strict=True))
    if not any(targets.values()):
        return accepted
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
    """The state owners fed by one batch of accepted behavior events (used by the owner and tests)."""

    def __init__(self, res: Resources) -> None:
        s = res.settings
        self.res = res
        cfg = ProfileConfig.from_settings(s)
        self.profiles = BufferedProfileStore(res.redis, res.session, res.keys, cfg, res.durable)
        self.profiles.live = LiveRules(cfg.rules, res.redis, res.keys, res.session)  # segments managed live
        guard = getattr(res, "redis_guard", None)
        if guard is not None:  # events refolded after Redis lost their effects write whole segment rows
            behavior = layout.topic(s, layout.BEHAVIOR)
            self.profiles.refolded = lambda partition, offset: guard.refolding(behavior, partition, offset)
        self.catalog = CatalogCache(res.redis, res.keys)
        self.analytics = analytics.AnalyticsStore(res.redis, res.keys, {
            "minute": s.analytics.minute_ttl_s, "hour": s.analytics.hour_ttl_s, "day": s.analytics.day_ttl_s})

    async def apply(self, kept: list[Accepted], now_ms: int) -> list[Fact]:
        # the alias MGET, the item attributes and the analytics fences in one round trip's time
        # (independent reads; the fences are compared and set by the analytics scripts)
        kept, _, fences = await asyncio.gather(
            resolve_aliases(self.res.redis, self.res.keys, kept),
            self.catalog.prefetch({a.event.item_id for a in kept if a.event.item_id}, now_ms),
            self.analytics.fences(sorted({a.partition for a in kept})) if kept else asyncio.sleep(0, {}))
        buckets = analytics.time_buckets(a.event.event_time for a in kept)
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
    """Profiles, segments and analytics (this module's pipeline) as a behavior owner."""

    async def step(b: Batch) -> None:
        await pipeline.apply(b.kept, b.now_ms)

    return PROFILES_OWNER, step


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The profiles owner of this worker's behavior agent (it adds no agent or timer of its own)."""
    return [profiles_owner(BehaviorPipeline(res))]
