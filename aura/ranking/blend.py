"""The hybrid ranking over plain dicts: the sources, the per-placement blend weights, the request's filters
and diversity, and the pure functions of the ranking (``recency_knn`` -> ``normalise`` -> ``blend`` ->
``apply_filters`` -> ``diversify``: ``rank``), with the plain-Python twins of the Lua scripts
(``users_knn``, ``similar_reference``: the Redis Cluster path and the tests' reference).

The request path runs the vectorized twin (aura/ranking/vector.py, tested equal to this); the weights
helpers (``method_weights``) are shared by both. Pure: no I/O.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from aura.state.catalog import parse_filter_record

METHODS = ("hybrid", "collaborative", "content", "trending", "popular")
SOURCES = ("cooc", "ease", "mf", "content", "bought", "users", "cohort", "trending", "popular")

# Blend weights per placement, chosen a priori (see docs/recommendations.md); the model registry can
# override them per placement (``recs_placement`` hash, field ``weights``).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "default": {"cooc": 1.0, "ease": 1.0, "mf": 0.3, "content": 0.15, "cohort": 0.1, "trending": 0.05,
                "popular": 0.02},
    "product_page": {"cooc": 1.0, "content": 0.5, "bought": 0.5, "ease": 0.5, "mf": 0.1, "trending": 0.02},
    "cart": {"bought": 1.0, "cooc": 0.5, "ease": 0.3, "trending": 0.05},
    "homepage": {"cooc": 0.8, "ease": 1.0, "mf": 0.5, "content": 0.1, "cohort": 0.3, "trending": 0.2,
                 "popular": 0.05},
}
METHOD_SOURCES: dict[str, tuple[str, ...]] = {
    "hybrid": SOURCES,
    "collaborative": ("cooc", "ease", "mf", "bought", "users"),
    "content": ("content",),
    "trending": ("trending",),
    "popular": ("popular",),
}


@dataclass(frozen=True)
class Soft:
    """The user's explicit preferences as score multipliers (aura/ranking/preferences.py builds them):
    per category and brand weight ``w`` in (-1, 1] a factor ``1 + strength * w`` (the item's categories
    multiply), and ``outside_price`` for an item priced outside the user's range. Never drops an item."""

    categories: dict[str, float] = field(default_factory=dict)
    brands: dict[str, float] = field(default_factory=dict)
    min_price: float | None = None
    max_price: float | None = None
    strength: float = 0.5
    outside_price: float = 0.5

    def factor(self, meta: dict[str, Any] | None) -> float:
        if meta is None:
            return 1.0
        f = 1.0
        for c in meta.get("categories") or ():
            w = self.categories.get(c)
            if w is not None:
                f *= 1.0 + self.strength * w
        w = self.brands.get(meta.get("brand") or "")
        if w is not None:
            f *= 1.0 + self.strength * w
        price = meta.get("price")
        if price is not None and ((self.min_price is not None and price < self.min_price)
                                  or (self.max_price is not None and price > self.max_price)):
            f *= self.outside_price
        return f


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
    soft: Soft | None = None  # the user's explicit preferences (multipliers)


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
    if meta is None:  # not in the catalog: only allowed without attribute filters
        return not (f.categories or f.min_price is not None or f.max_price is not None)
    if meta.get("deleted"):  # deleted from the catalog: never shown
        return False
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
        if f.soft is not None:
            s *= f.soft.factor(m)
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


# ------------------------------------------------------------ state read by the dict ranking


def meta_of(raw: list[str | None]) -> dict[str, Any] | None:
    """HMGET categories, price, available, deleted of an item's ``meta`` hash -> the attributes filters
    need (the hash form; the request path reads the compact filter records of aura/state/catalog.py)."""
    cats, price, available, deleted = raw
    if deleted == "1" or (cats is None and price is None and available is None):
        return None
    return {"categories": json.loads(cats or "[]"), "price": float(price) if price else None,
            "available": available != "0"}


def seq_item(raw: str) -> tuple[str, float]:
    """A ``recs_user_seq`` entry ``"item|weight|time|bought"`` (written by streams/usersignals.py) -> (item,
    weight)."""
    item, w, _t, _b = raw.rsplit("|", 3)
    return item, float(w)


def users_knn(neighbours: list[tuple[str, float]], seqs: list[list[str]], decay: float) -> dict[str, float]:
    """``USERS_LUA`` in Python (the Redis Cluster path, and its reference in tests)."""
    out: dict[str, float] = {}
    for (_v, sim), seq in zip(neighbours, seqs, strict=True):
        f = sim
        for e in seq:
            item, w = seq_item(e)
            out[item] = out.get(item, 0.0) + f * w
            f *= decay
    return out


# ----------------------------------------------------------------- similar items, and weights


def similar_reference(item_id: str, lists: list[tuple[float, list[tuple[str, float]]]],
                      records: dict[str, str | None], limit: int) -> list[tuple[str, float]]:
    """Similar items / also bought in plain Python (the two-round-trip code of the route before
    ``SIMILAR_LUA``; the Redis Cluster path runs it): ``lists`` = (weight, the source's top entries)."""
    merged: dict[str, float] = {}
    for w, lst in lists:
        for i, s in normalise(dict(lst)).items():
            merged[i] = merged.get(i, 0.0) + w * s
    merged.pop(item_id, None)
    if merged:  # hide deleted / unavailable items
        order = sorted(merged, key=lambda i: -merged[i])[: limit * 3]
        metas = [parse_filter_record(records.get(i)) for i in order]
        merged = {i: merged[i] for i, m in zip(order, metas, strict=True) if m is None or m["available"]}
    return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def similar_read(limit: int) -> int:
    """Entries read per neighbour list for ``limit`` similar items."""
    return max(limit * 3, 50)


@functools.lru_cache(maxsize=1024)
def parsed_json(text: str) -> Any:
    """``json.loads`` of the few distinct weight texts every request reads (placements' and pools'
    weights), parsed once per process. Callers must not change the value (``parsed_weights`` copies)."""
    return json.loads(text)


def parsed_weights(text: str) -> dict[str, float]:
    return dict(parsed_json(text))


def method_weights(raw: str | None, placement: str, method: str) -> dict[str, float]:
    """The placement's blend weights (registry override or default), restricted to the method."""
    base = parsed_json(raw) if raw else DEFAULT_WEIGHTS.get(placement, DEFAULT_WEIGHTS["default"])
    allowed = METHOD_SOURCES[method]
    w = {k: v for k, v in base.items() if k in allowed}
    if not w:  # a single-source method always uses its source
        w = {k: 1.0 for k in allowed}
    return w
