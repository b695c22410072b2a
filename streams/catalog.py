"""The content catalog and the content-similarity model.

Owns ``recs_item_meta`` / ``recs_item_filters`` (compact per-item filter records, one shared hash:
streams/itemfilters.py) / ``recs_catalog_ids`` / ``recs_catalog_version`` / ``recs_item_similar(.., content)``
in Redis and the ``catalog_items`` Cassandra table. The agent ``update_catalog`` folds upserts and
deletes from ``catalog.items`` (last event time wins, so replays and reordering are harmless: the
Cassandra write uses ``USING TIMESTAMP`` = event time) and marks the content model dirty; a debounced
timer rebuilds the TF-IDF model over title, categories, tags and text from the whole catalog in
Redis and writes each item's top-K similar items. ``ContentModel`` is the pure numpy/scipy part.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import faust
import numpy as np
from scipy import sparse

from aura.layout import Tables
from aura.state.catalog import FILTER_DELETED, filter_record
from schemas.codec import DecodeError, codec
from schemas.events import InvalidEvent, validate_catalog
from streams.loopstats import timed

if TYPE_CHECKING:
    from streams.runtime import Resources

log = logging.getLogger(__name__)

TOKEN = re.compile(r"[a-z0-9]+")
STOP = frozenset("a an and the of in on for to with by at from is are was it its this that or as be".split())
FIELD_WEIGHTS = {"title": 1.0, "category": 2.0, "tag": 1.5, "text": 0.5}


# ------------------------------------------------------------------------------ pure: TF-IDF


def tokens(item: dict[str, Any]) -> Counter[str]:
    """Weighted terms of one item: title and text words, ``cat:`` and ``tag:`` terms."""
    terms: Counter[str] = Counter()
    for w in TOKEN.findall((item.get("title") or "").lower()):
        if w not in STOP:
            terms[w] += FIELD_WEIGHTS["title"]
    for c in item.get("categories") or []:
        terms[f"cat:{c.lower()}"] += FIELD_WEIGHTS["category"]
    for t in item.get("tags") or []:
        terms[f"tag:{t.lower()}"] += FIELD_WEIGHTS["tag"]
    for w in TOKEN.findall((item.get("text") or "").lower()):
        if w not in STOP:
            terms[w] += FIELD_WEIGHTS["text"]
    return terms


class ContentModel:
    """TF-IDF (sublinear tf, smoothed idf, L2-normalised rows); cosine similarity between items."""

    kind = "content_tfidf"

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.X = sparse.csr_matrix((0, 0))

    def fit(self, items: dict[str, dict[str, Any]]) -> ContentModel:
        self.ids = sorted(items)
        docs = [tokens(items[i]) for i in self.ids]
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.keys())
        self.vocab = {t: k for k, t in enumerate(sorted(df))}
        n = len(docs)
        self.idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in sorted(df)])
        rows, cols, vals = [], [], []
        for r, d in enumerate(docs):
            for t, tf in d.items():
                rows.append(r)
                cols.append(self.vocab[t])
                vals.append((1.0 + math.log(tf)) if tf >= 1 else tf)
        X = sparse.csr_matrix((vals, (rows, cols)), shape=(n, len(self.vocab)))
        X = X.multiply(self.idf).tocsr()
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.X = sparse.diags(1.0 / norms) @ X
        self.X = self.X.tocsr()
        return self

    def similar_all(self, k: int, block: int = 512) -> dict[str, list[tuple[str, float]]]:
        """Top-``k`` cosine neighbours of every item (blockwise, never the full N x N at once)."""
        out: dict[str, list[tuple[str, float]]] = {}
        n = len(self.ids)
        XT = self.X.T.tocsc()
        for start in range(0, n, block):
            S = (self.X[start:start + block] @ XT).toarray()
            for r in range(S.shape[0]):
                S[r, start + r] = -1.0
            kk = min(k, n - 1)
            if kk <= 0:
                for r in range(S.shape[0]):
                    out[self.ids[start + r]] = []
                continue
            idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
            for r in range(S.shape[0]):
                cand = idx[r][np.argsort(-S[r, idx[r]])]
                out[self.ids[start + r]] = [(self.ids[c], float(S[r, c])) for c in cand if S[r, c] > 0]
        return out

    def similar(self, item: str, k: int) -> list[tuple[str, float]]:
        row = self.ids.index(item)
        s = (self.X[row] @ self.X.T).toarray().ravel()
        s[row] = -1
        order = np.argsort(-s)[:k]
        return [(self.ids[c], float(s[c])) for c in order if s[c] > 0]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        X = self.X.tocsr()
        vocab = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=object)
        np.savez_compressed(buf, ids=np.array(self.ids, dtype=object), vocab=vocab, idf=self.idf, data=X.data,
                            indices=X.indices, indptr=X.indptr, shape=np.array(X.shape))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ContentModel:
        z = np.load(io.BytesIO(data), allow_pickle=True)
        m = cls()
        m.ids = [str(x) for x in z["ids"]]
        m.vocab = {str(t): k for k, t in enumerate(z["vocab"])}
        m.idf = z["idf"]
        m.X = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return m


# ---------------------------------------------------------------------------- pure: the state


def meta_fields(change_item: dict[str, Any], event_time: int) -> dict[str, str]:
    """A catalog item -> the flat Redis hash the API and the agents read."""
    item = change_item
    stock = item.get("stock")
    return {
        "title": item.get("title") or "",
        "categories": json.dumps(list(item.get("categories") or [])),
        "tags": json.dumps(list(item.get("tags") or [])),
        "brand": item.get("brand") or "",
        "price": "" if item.get("price") is None else repr(float(item["price"])),
        "stock": "" if stock is None else str(int(stock)),
        "available": "1" if item.get("available", True) and (stock is None or stock > 0) else "0",
        "text": (item.get("text") or "")[:5000],
        "metadata": json.dumps(dict(item.get("metadata") or {})),
        "event_time": str(event_time),
    }


def parse_meta(raw: dict[str, str]) -> dict[str, Any]:
    """The Redis hash -> the item document (API responses, content model input)."""
    return {
        "title": raw.get("title", ""),
        "categories": json.loads(raw.get("categories") or "[]"),
        "tags": json.loads(raw.get("tags") or "[]"),
        "brand": raw.get("brand") or None,
        "price": float(raw["price"]) if raw.get("price") else None,
        "stock": int(raw["stock"]) if raw.get("stock") else None,
        "available": raw.get("available", "1") == "1",
        "text": raw.get("text") or None,
        "metadata": json.loads(raw.get("metadata") or "{}"),
        "event_time": int(raw["event_time"]) if raw.get("event_time") else None,
    }


def latest(changes: list[Any], stored_times: dict[str, int | None]) -> dict[str, Any]:
    """Per item, the newest change of the batch that is newer than what is stored (pure)."""
    out: dict[str, Any] = {}
    for ch in changes:
        cur = out.get(ch.item_id)
        if cur is None or ch.event_time >= cur.event_time:
            out[ch.item_id] = ch
    return {i: ch for i, ch in out.items() if stored_times.get(i) is None or ch.event_time >= stored_times[i]}


# ------------------------------------------------------------------------------------ the store


class CatalogStore:
    """Catalog state in Redis (hot) and Cassandra (durable); the content model rebuild."""

    def __init__(self, res: Resources) -> None:
        self.res, self.keys, self.redis = res, res.keys, res.redis
        self.upsert = res.session.prepare(
            f"INSERT INTO {Tables.CATALOG_ITEMS} (item_id, title, categories, tags, brand, price, stock, available, "
            "text, metadata, deleted, event_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self.built_version: str | None = None
        self.dirty_since: float | None = None

    async def apply(self, changes: list[Any]) -> int:
        if not changes:
            return 0
        ids = sorted({c.item_id for c in changes})
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hget(self.keys.recs_item_meta(i), "event_time")
        stored = {i: (int(t) if t else None) for i, t in zip(ids, await pipe.execute(), strict=True)}
        winners = latest(changes, stored)
        pipe = self.redis.pipeline(transaction=False)
        rows = []
        for item_id, ch in winners.items():
            key = self.keys.recs_item_meta(item_id)
            pipe.delete(key)
            if ch.event_type == "delete":
                pipe.hset(key, mapping={"deleted": "1", "event_time": str(ch.event_time)})
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
        await self.sync_trending(winners)
        if rows:
            from cassandra.concurrent import execute_concurrent_with_args

            await asyncio.get_running_loop().run_in_executor(
                None, lambda: execute_concurrent_with_args(self.res.session, self.upsert, rows, concurrency=64,
                                                           raise_on_first_error=True))
            self.dirty_since = self.dirty_since or time.monotonic()
        return len(winners)

    async def sync_trending(self, winners: dict[str, Any]) -> None:
        """Interactions may precede an item's catalog entry: copy its global trending score into its
        categories' sets on upsert; drop it from the global lists on delete (absolute, idempotent)."""
        ids = sorted(winners)
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for item_id in ids:  # the item's own log-score (written atomically with its increments)
            pipe.hget(self.keys.recs_item_state(item_id), "tr")
        scores = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for item_id, score in zip(ids, scores, strict=True):
            ch = winners[item_id]
            if ch.event_type == "delete":
                pipe.zrem(self.keys.recs_trending(), item_id)
                pipe.zrem(self.keys.recs_popular(), item_id)
            elif score is not None:
                for c in ch.item.get("categories") or []:
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
            None, lambda: model.similar_all(self.res.settings.recs_topk))
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


def register(app: faust.App, res: Resources, catalog_topic: str, deadletter_topic: str) -> None:
    s = res.settings
    source = app.topic(catalog_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    deadletters = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")
    from streams.runtime import retrying

    item_codec = codec("catalog_item")
    dead_codec = codec("dead_letter")
    store = CatalogStore(res)

    @app.agent(source, name="update_catalog")
    async def update_catalog(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.batch_max, within=s.batch_within_s):
            now_ms = int(time.time() * 1000)
            changes = []
            dead = 0
            for e in batch:
                m = e.message
                try:
                    changes.append(validate_catalog(item_codec.decode(m.value), now_ms))
                except (DecodeError, InvalidEvent) as exc:
                    dead += 1
                    await deadletters.send(key=m.key, value=dead_codec.encode({
                        "reason": exc.reason, "detail": str(exc)[:2000], "source_topic": m.topic,
                        "source_partition": m.partition, "source_offset": m.offset, "key": m.key,
                        "value": m.value, "dead_at": now_ms}))
                    await retrying("dead-letter count", res.redis.hincrby, res.keys.deadletter_count(), exc.reason, 1)
            await retrying("catalog", store.apply, changes)
            if dead:
                log.warning("catalog: dead-lettered %d records", dead)

    @app.timer(interval=max(0.2, s.recs_content_rebuild_s / 2))
    @timed("rebuild_content_model")
    async def rebuild_content_model() -> None:
        try:
            await store.rebuild_if_due(s.recs_content_rebuild_s)
        except Exception:  # a failed rebuild keeps the previous lists; retried on the next tick
            log.exception("content model rebuild failed")
