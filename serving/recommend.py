"""Hybrid ranking over precomputed state: candidates from several sources, blended with per-placement
weights, filtered, boosted and diversified.

The pure part (``recency_knn``, ``blend``, ``apply_filters``, ``diversify``, ``rank``) works on plain
dicts and is unit-tested; ``Recommender`` does the I/O: one Redis pipeline for the user's state and
the global lists, one for the neighbour lists of the user's recent items (and of the context item),
one for the attributes of the blended candidates. Writers of that state: streams/cooccurrence.py,
streams/catalog.py, jobs/ease.py; this module owns none of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aura.layout import RedisKeys
from streams.cooccurrence import SeqEntry

METHODS = ("hybrid", "collaborative", "content", "trending", "popular")
SOURCES = ("cooc", "ease", "mf", "content", "bought", "trending", "popular")

# Blend weights per placement, chosen a priori (see docs/recommenders.md); the model registry can
# override them per placement (``recs_placement`` hash, field ``weights``).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "default": {"cooc": 1.0, "ease": 1.0, "mf": 0.3, "content": 0.15, "trending": 0.05, "popular": 0.02},
    "product_page": {"cooc": 1.0, "content": 0.5, "bought": 0.5, "ease": 0.5, "mf": 0.1, "trending": 0.02},
    "cart": {"bought": 1.0, "cooc": 0.5, "ease": 0.3, "trending": 0.05},
    "homepage": {"cooc": 0.8, "ease": 1.0, "mf": 0.5, "content": 0.1, "trending": 0.2, "popular": 0.05},
}
METHOD_SOURCES: dict[str, tuple[str, ...]] = {
    "hybrid": SOURCES,
    "collaborative": ("cooc", "ease", "mf", "bought"),
    "content": ("content",),
    "trending": ("trending",),
    "popular": ("popular",),
}


@dataclass
class Filters:
    exclude_seen: bool = True
    exclude_ids: frozenset[str] = frozenset()
    include_ids: frozenset[str] | None = None  # only these (an allow-list)
    categories: frozenset[str] | None = None   # only items in one of these
    exclude_categories: frozenset[str] = frozenset()
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool = True
    boost_items: dict[str, float] = field(default_factory=dict)       # item -> multiplier
    boost_categories: dict[str, float] = field(default_factory=dict)  # category -> multiplier


@dataclass
class Diversity:
    max_per_category: int | None = None
    mmr_lambda: float | None = None  # 1.0 = pure relevance; lower trades relevance for variety


# ---------------------------------------------------------------------------------- pure parts


def recency_knn(recent: list[tuple[str, float]], lists: list[list[tuple[str, float]]],
                decay: float = 0.8) -> dict[str, float]:
    """Item-kNN from the user's recent items (newest first): ``sum_r decay**r * w_r * sim(r, j)``."""
    out: dict[str, float] = {}
    for r, ((_item, w), neigh) in enumerate(zip(recent, lists, strict=True)):
        f = (decay ** r) * w
        for j, s in neigh:
            out[j] = out.get(j, 0.0) + f * s
    return out


def normalise(scores: dict[str, float]) -> dict[str, float]:
    """Scale to a maximum of 1 (sources have different units)."""
    if not scores:
        return {}
    top = max(scores.values())
    if top <= 0 or not math.isfinite(top):
        lo = min(scores.values())
        span = (top - lo) or 1.0
        return {k: (v - lo) / span for k, v in scores.items()}
    return {k: v / top for k, v in scores.items()}


def blend(sources: dict[str, dict[str, float]], weights: dict[str, float],
          normalised: bool = False) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Weighted sum of normalised source scores; also which sources proposed each item."""
    scores: dict[str, float] = {}
    why: dict[str, list[str]] = {}
    for name, raw in sources.items():
        w = weights.get(name, 0.0)
        if w <= 0 or not raw:
            continue
        for item, s in (raw if normalised else normalise(raw)).items():
            scores[item] = scores.get(item, 0.0) + w * s
            why.setdefault(item, []).append(name)
    return scores, why


def passes(item: str, meta: dict[str, Any] | None, seen: set[str], f: Filters) -> bool:
    if f.exclude_seen and item in seen:
        return False
    if item in f.exclude_ids:
        return False
    if f.include_ids is not None and item not in f.include_ids:
        return False
    if meta is None:  # not in the catalog (unknown or deleted): only allowed without attribute filters
        return not (f.categories or f.min_price is not None or f.max_price is not None)
    if f.in_stock_only and not meta.get("available", True):
        return False
    cats = set(meta.get("categories") or [])
    if f.categories is not None and not (cats & f.categories):
        return False
    if cats & f.exclude_categories:
        return False
    price = meta.get("price")
    if f.min_price is not None and (price is None or price < f.min_price):
        return False
    return not (f.max_price is not None and (price is None or price > f.max_price))


def apply_filters(scores: dict[str, float], meta: dict[str, dict[str, Any] | None], seen: set[str],
                  f: Filters) -> dict[str, float]:
    """Drop what may not be shown, then apply boosts (multipliers)."""
    out = {}
    for item, s in scores.items():
        m = meta.get(item)
        if not passes(item, m, seen, f):
            continue
        s *= f.boost_items.get(item, 1.0)
        for c in (m or {}).get("categories") or []:
            s *= f.boost_categories.get(c, 1.0)
        out[item] = s
    return out


def diversify(ranked: list[tuple[str, float]], meta: dict[str, dict[str, Any] | None], limit: int,
              d: Diversity) -> list[tuple[str, float]]:
    """Category caps and/or MMR with category-overlap (Jaccard) as the item-item similarity."""
    def cats(i: str) -> set[str]:
        return set((meta.get(i) or {}).get("categories") or [])

    pool = list(ranked)
    if d.mmr_lambda is not None and pool:
        top = max(s for _, s in pool) or 1.0
        chosen: list[tuple[str, float]] = []
        while pool and len(chosen) < limit * 3:
            def mmr(c: tuple[str, float]) -> float:
                ci = cats(c[0])
                red = max((len(ci & cats(x)) / (len(ci | cats(x)) or 1) for x, _ in chosen), default=0.0)
                return d.mmr_lambda * c[1] / top - (1 - d.mmr_lambda) * red  # type: ignore[operator]
            best = max(pool[: limit * 10], key=mmr)
            pool.remove(best)
            chosen.append(best)
        pool = chosen + pool
    if d.max_per_category is None:
        return pool[:limit]
    out: list[tuple[str, float]] = []
    per: dict[str, int] = {}
    for item, s in pool:
        main = sorted(cats(item))[:1]
        if main and per.get(main[0], 0) >= d.max_per_category:
            continue
        if main:
            per[main[0]] = per.get(main[0], 0) + 1
        out.append((item, s))
        if len(out) >= limit:
            break
    return out


def rank(sources: dict[str, dict[str, float]], weights: dict[str, float], meta: dict[str, dict[str, Any] | None],
         seen: set[str], f: Filters, d: Diversity, limit: int,
         normalised: bool = False) -> list[tuple[str, float, list[str]]]:
    """blend -> filter/boost -> sort -> diversify: the whole ranker (pure)."""
    scores, why = blend(sources, weights, normalised)
    kept = apply_filters(scores, meta, seen, f)
    ranked = sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(i, s, why.get(i, [])) for i, s in diversify(ranked, meta, limit, d)]


# ------------------------------------------------------------------------------------------ I/O


def parse_pairs(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    return {i: float(s) for i, s in pairs}


def meta_of(raw: list[str | None]) -> dict[str, Any] | None:
    """HMGET categories, price, available, deleted -> the attributes filters need."""
    cats, price, available, deleted = raw
    if deleted == "1" or (cats is None and price is None and available is None):
        return None
    return {"categories": json.loads(cats or "[]"), "price": float(price) if price else None,
            "available": available != "0"}


@dataclass
class Request:
    user_id: str | None
    method: str = "hybrid"
    limit: int = 10
    placement: str = "default"
    context_item: str | None = None
    preferred_categories: list[str] = field(default_factory=list)
    filters: Filters = field(default_factory=Filters)
    diversity: Diversity = field(default_factory=Diversity)
    recent_n: int = 10
    recent_decay: float = 0.8
    batch_model: str = "ease"


@dataclass
class Result:
    items: list[tuple[str, float, list[str]]]
    strategy: str
    weights: dict[str, float]


class Recommender:
    """Reads precomputed state and ranks; one per API process (stateless between requests)."""

    def __init__(self, redis: Any, keys: RedisKeys, candidates: int = 200, list_k: int = 50) -> None:
        self.redis, self.keys, self.candidates, self.list_k = redis, keys, candidates, list_k

    async def weights_for(self, placement: str, method: str) -> dict[str, float]:
        raw = await self.redis.hget(self.keys.recs_placement(placement), "weights")
        base = json.loads(raw) if raw else DEFAULT_WEIGHTS.get(placement, DEFAULT_WEIGHTS["default"])
        allowed = METHOD_SOURCES[method]
        w = {k: v for k, v in base.items() if k in allowed}
        if not w:  # a single-source method always uses its source
            w = {k: 1.0 for k in allowed}
        return w

    async def recommend(self, req: Request) -> Result:
        k, n = self.keys, self.candidates
        weights = await self.weights_for(req.placement, req.method)
        cats = req.filters.categories or (frozenset(req.preferred_categories) if req.preferred_categories else None)
        pipe = self.redis.pipeline(transaction=False)
        uid = req.user_id
        if uid:
            pipe.lrange(k.recs_user_seq(uid), 0, max(req.recent_n, 1) - 1)
            pipe.zrange(k.recs_user_seen(uid), 0, -1)
            pipe.zrevrange(k.recs_user_mf(uid), 0, n - 1, withscores=True)
            pipe.zrevrange(k.recs_user_batch(uid, req.batch_model), 0, n - 1, withscores=True)
        trend_keys = [k.recs_trending(c) for c in sorted(cats)] if cats else [k.recs_trending()]
        for tk in trend_keys:
            pipe.zrevrange(tk, 0, n - 1, withscores=True)
        pipe.zrevrange(k.recs_popular(), 0, n - 1, withscores=True)
        raw = await pipe.execute()
        if uid:
            seq = [SeqEntry.decode(x) for x in raw[0]]
            seen = set(raw[1])
            mf, batch = parse_pairs(raw[2]), parse_pairs(raw[3])
            rest = raw[4:]
        else:
            seq, seen, mf, batch, rest = [], set(), {}, {}, raw
        trend: dict[str, float] = {}
        for lst in rest[: len(trend_keys)]:
            for rank_, (i, _s) in enumerate(lst):  # log-scores: use rank-based scores across categories
                trend[i] = max(trend.get(i, 0.0), 1.0 / (1 + rank_))
        popular = {i: 1.0 / (1 + r) for r, (i, _s) in enumerate(rest[len(trend_keys)])}

        recent = [(e.item, e.weight) for e in seq[: req.recent_n]]
        if req.context_item:  # the item on screen counts as the newest interaction
            recent = [(req.context_item, 2.0), *[r for r in recent if r[0] != req.context_item]]
        list_sources = [s for s in ("cooc", "content", "bought", "ease") if weights.get(s, 0) > 0]
        sources: dict[str, dict[str, float]] = {"mf": mf, "trending": trend, "popular": popular}
        if req.batch_model and batch:
            sources["ease"] = batch
        if recent and list_sources:
            pipe = self.redis.pipeline(transaction=False)
            for src in list_sources:
                for item, _w in recent:
                    pipe.zrevrange(k.recs_item_similar(item, src), 0, self.list_k - 1, withscores=True)
            raw = await pipe.execute()
            for a, src in enumerate(list_sources):
                lists = raw[a * len(recent):(a + 1) * len(recent)]
                knn = recency_knn(recent, [[(i, float(s)) for i, s in lst] for lst in lists], req.recent_decay)
                if src == "ease" and "ease" in sources:  # user-level batch candidates + item lists
                    merged = normalise(sources["ease"])
                    for i, s in normalise(knn).items():
                        merged[i] = merged.get(i, 0.0) + 0.5 * s
                    sources["ease"] = merged
                else:
                    sources[src] = knn
        sources = {s: v for s, v in sources.items() if weights.get(s, 0) > 0 and v}
        strategy = req.method if any(sources.get(s) for s in ("cooc", "ease", "mf", "content", "bought")) \
            else f"{req.method}:cold_start"
        if not any(sources.values()):
            sources = {"popular": popular}
            weights = {"popular": 1.0}
        # candidates: the best of the blend (before filters, enough to survive them)
        sources = {name: normalise(v) for name, v in sources.items()}
        scores, _ = blend(sources, weights, normalised=True)
        pool = sorted(scores, key=lambda i: -scores[i])[: max(req.limit * 20, 300)]
        if req.filters.exclude_seen:
            pool = [i for i in pool if i not in seen]
        if req.filters.include_ids:
            pool += [i for i in req.filters.include_ids if i not in scores]
        pipe = self.redis.pipeline(transaction=False)
        for i in pool:
            pipe.hmget(k.recs_item_meta(i), ["categories", "price", "available", "deleted"])
        metas = dict(zip(pool, [meta_of(m) for m in await pipe.execute()], strict=True))
        pool_set = set(pool)
        trimmed = {name: {i: v for i, v in src.items() if i in pool_set} for name, src in sources.items()}
        items = rank(trimmed, weights, metas, seen, req.filters, req.diversity, req.limit, normalised=True)
        return Result(items=items, strategy=strategy, weights=weights)
