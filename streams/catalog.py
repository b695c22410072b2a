"""The catalog agent: items and the content model's similar-item lists.

Owns ``recs_item_meta`` (format: aura/state/items.py) / ``recs_item_filters`` (compact per-item filter
records, one shared hash: aura/state/catalog.py) / ``recs_catalog_ids`` / ``recs_catalog_version`` /
``recs_item_similar(.., content)`` in Redis and the ``catalog_items`` Cassandra table. The agent
``update_catalog`` folds upserts and deletes from ``catalog.items`` (last event time wins, so replays
and reordering are harmless: the Cassandra write uses ``USING TIMESTAMP`` = event time) and marks the
content model dirty; a debounced timer rebuilds the TF-IDF model (aura/models/content.py) from the
whole catalog in Redis and writes each item's top-K similar items. A record that cannot be decoded
is dead-lettered with its reason; a change the store cannot apply (not a store error) as
``fold_failed``, and the rest of its batch is applied (``fold``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import faust
from cassandra.concurrent import execute_concurrent_with_args

from aura import layout
from aura.layout import Tables
from aura.models.content import ContentModel
from aura.state.catalog import FILTER_DELETED, filter_record
from aura.state.cooccurrence import ITEM_TREND
from aura.state.items import EVENT_TIME, deleted_fields, latest, meta_fields, parse_meta
from schemas.codec import DecodeError, codec
from schemas.events import CatalogChange, InvalidEvent, validate_catalog
from streams.intake import Dead, RawRecord
from streams.loopstats import timed
from streams.runtime import Owner, Resources, isolating, retrying

log = logging.getLogger(__name__)


class CatalogStore:
    """Catalog state in Redis (hot) and Cassandra (durable); the content model rebuild."""

    def __init__(self, res: Resources) -> None:
        self.res, self.keys, self.redis = res, res.keys, res.redis
        self.upsert = res.session.prepare(
            f"INSERT INTO {Tables.CATALOG_ITEMS} (item_id, title, categories, tags, brand, price, stock, available, "
            "text, metadata, deleted, event_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self.built_version: str | None = None
        self.dirty_since: float | None = None

    async def apply(self, changes: list[CatalogChange]) -> int:
        if not changes:
            return 0
        ids = sorted({c.item_id for c in changes})
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self.keys.recs_item_meta(i), [EVENT_TIME, "categories"])
        got = await pipe.execute()
        stored = {i: (int(t) if t else None) for i, (t, _c) in zip(ids, got, strict=True)}
        prior = {i: json.loads(c) if c else [] for i, (_t, c) in zip(ids, got, strict=True)}
        winners = latest(changes, stored)
        pipe = self.redis.pipeline(transaction=False)
        rows = []
        for item_id, ch in winners.items():
            key = self.keys.recs_item_meta(item_id)
            pipe.delete(key)
            if ch.event_type == "delete":
                pipe.hset(key, mapping=deleted_fields(ch.event_time))
                pipe.hset(self.keys.recs_item_filters(), item_id, FILTER_DELETED)
                pipe.srem(self.keys.recs_catalog_ids(), item_id)
                rows.append((item_id, None, None, None, None, None, None, False, None, None, True,
                             ch.event_time, ch.event_time * 1000))
            else:
                pipe.hset(key, mapping=meta_fields(ch.item, ch.event_time))
                pipe.hset(self.keys.recs_item_filters(), item_id, filter_record(ch.item))
                pipe.sadd(self.keys.recs_catalog_ids(), item_id)
                it = ch.item
                rows.append((item_id, it["title"], list(it.get("categories") or []), list(it.get("tags") or []),
                             it.get("brand"), it.get("price"), it.get("stock"), bool(it.get("available", True)),
                             it.get("text"), dict(it.get("metadata") or {}), False, ch.event_time,
                             ch.event_time * 1000))
        if winners:
            pipe.hincrby(self.keys.recs_catalog_version(), "changes", len(winners))
        await pipe.execute()
        await self.sync_trending(winners, prior)
        if rows:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: execute_concurrent_with_args(self.res.session, self.upsert, rows, concurrency=64,
                                                           raise_on_first_error=True))
            self.dirty_since = self.dirty_since or time.monotonic()
        return len(winners)

    async def sync_trending(self, winners: dict[str, CatalogChange], prior: dict[str, list[str]] | None = None
                            ) -> None:
        """Interactions may precede an item's catalog entry: copy its global trending score into its
        categories' sets on upsert, and take it out of the sets of categories it left (``prior``: item
        -> categories before this batch); on delete, drop it from the popular list and every trending
        set it was in (absolute, idempotent). Interactions after the delete do not put it back
        (streams/itemsignals.py)."""
        ids = sorted(winners)
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for item_id in ids:  # the item's own log-score (written atomically with its increments)
            pipe.hget(self.keys.recs_item_state(item_id), ITEM_TREND)
        scores = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for item_id, score in zip(ids, scores, strict=True):
            ch = winners[item_id]
            if ch.event_type == "delete":
                pipe.zrem(self.keys.recs_trending(), item_id)
                pipe.zrem(self.keys.recs_popular(), item_id)
                for c in (prior or {}).get(item_id) or []:
                    pipe.zrem(self.keys.recs_trending(c), item_id)
            else:
                cats = list(ch.item.get("categories") or [])
                for c in (prior or {}).get(item_id) or []:
                    if c not in cats:  # a category the item left
                        pipe.zrem(self.keys.recs_trending(c), item_id)
                if score is not None:
                    for c in cats:
                        pipe.zadd(self.keys.recs_trending(c), {item_id: float(score)})
        await pipe.execute()

    async def load_items(self) -> dict[str, dict[str, Any]]:
        ids = sorted(await self.redis.smembers(self.keys.recs_catalog_ids()))
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.recs_item_meta(i))
        return {i: parse_meta(raw) for i, raw in zip(ids, await pipe.execute(), strict=True) if raw}

    async def backfill_filters(self, items: dict[str, dict[str, Any]]) -> int:
        """Filter records for items stored before the records existed (HSETNX: never overwrites a record
        the catalog agent wrote meanwhile, which is newer than this snapshot)."""
        have = set(await self.redis.hkeys(self.keys.recs_item_filters()))
        todo = [i for i in items if i not in have]
        for start in range(0, len(todo), 500):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo[start:start + 500]:
                pipe.hsetnx(self.keys.recs_item_filters(), i, filter_record(items[i]))
            await pipe.execute()
        return len(todo)

    async def rebuild_if_due(self, debounce_s: float, force: bool = False) -> int:
        """Rebuild the content model when the catalog changed (here or in another worker)."""
        version = await self.redis.hget(self.keys.recs_catalog_version(), "changes")
        if version == self.built_version and not force:
            return 0
        if self.dirty_since is not None and time.monotonic() - self.dirty_since < debounce_s and not force:
            return 0
        started = time.perf_counter()
        items = await self.load_items()
        model = await asyncio.get_running_loop().run_in_executor(None, lambda: ContentModel().fit(items))
        sims = await asyncio.get_running_loop().run_in_executor(
            None, lambda: model.similar_all(self.res.settings.recs.topk))
        await self.backfill_filters(items)
        pipe = self.redis.pipeline(transaction=False)
        for n, (item, top) in enumerate(sims.items(), start=1):
            key = self.keys.recs_item_similar(item, "content")
            pipe.delete(key)
            if top:
                pipe.zadd(key, dict(top))
            if n % 200 == 0:  # bounded pipelines
                await pipe.execute()
                pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.recs_catalog_version(), mapping={
            "built": version or "0", "built_at": str(int(time.time() * 1000)), "items": str(len(items)),
            "build_ms": f"{(time.perf_counter() - started) * 1000:.1f}"})
        await pipe.execute()
        self.built_version = version
        self.dirty_since = None
        log.info("content model rebuilt over %d items in %.0f ms", len(items), (time.perf_counter() - started) * 1000)
        return len(items)


async def fold(store: CatalogStore, changes: list[tuple[CatalogChange, RawRecord]]) -> list[Dead]:
    """Apply a batch of changes; a change the store cannot apply is found by bisection and
    dead-lettered as ``fold_failed`` (``streams.runtime.isolating``), the rest are applied (last event
    time wins, so the split order does not matter); store errors are retried."""

    async def step(part: list[tuple[CatalogChange, RawRecord]]) -> None:
        await store.apply([c for c, _ in part])

    return await isolating("catalog", step, changes, lambda c: c[1])


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The agent ``update_catalog`` over ``catalog.items`` and the content model's rebuild timer; the
    catalog has no owner step in the behavior fan-out (returns none)."""
    s = res.settings
    source = app.topic(layout.topic(s, layout.CATALOG), key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    deadletters = app.topic(layout.topic(s, layout.DEADLETTER), key_serializer="raw", value_serializer="raw")
    item_codec = codec("catalog_item")
    dead_codec = codec("dead_letter")
    store = CatalogStore(res)

    @app.agent(source, name="update_catalog")
    async def update_catalog(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.worker.batch_max, within=s.worker.batch_within_s):
            now_ms = int(time.time() * 1000)
            changes: list[tuple[CatalogChange, RawRecord]] = []
            dead: list[Dead] = []
            for e in batch:
                m = e.message
                try:
                    changes.append((validate_catalog(item_codec.decode(m.value), now_ms), RawRecord.of(m)))
                except (DecodeError, InvalidEvent) as exc:
                    dead.append(Dead(RawRecord.of(m), exc.reason, str(exc)))
                except Exception as exc:  # noqa: BLE001 - anything else in a record is still its fault
                    dead.append(Dead(RawRecord.of(m), "invalid_event", f"{type(exc).__name__}: {exc}"))
            dead += await fold(store, changes)
            for d in dead:
                await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms)))
            if dead:
                log.warning("catalog: dead-lettered %d records: %s", len(dead), sorted({d.reason for d in dead}))
                pipe = res.redis.pipeline(transaction=False)
                for d in dead:
                    pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
                await retrying("dead-letter count", pipe.execute)

    @app.timer(interval=max(0.2, s.recs.content_rebuild_s / 2))
    @timed("rebuild_content_model")
    async def rebuild_content_model() -> None:
        try:
            await store.rebuild_if_due(s.recs.content_rebuild_s)
        except Exception:  # a failed rebuild keeps the previous lists; retried on the next tick
            log.exception("content model rebuild failed")

    return []
