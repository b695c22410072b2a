"""Hybrid ranking over precomputed state: candidates from several sources, blended with per-placement
weights, filtered, boosted and diversified.

The pure part (``recency_knn``, ``blend``, ``apply_filters``, ``diversify``, ``rank``) works on plain
dicts and is unit-tested; ``Candidates`` is its vectorized twin (numpy ``bincount`` over one candidate
index), tested equal to it. ``Recommender`` does the I/O in three Redis
round trips and eleven commands: (1) one pipeline of nine: the placement's weights and served
model, the user's recent items, seen items, model candidates, neighbours and attributes (demographic
cohorts), the global lists; (2) ONE read-only script call (``KNN_LUA``) that sums the recency kNN of
every weighted list source over the recent items' neighbour lists (and the context item's) inside
Redis and returns one merged list per source (in Redis Cluster, where those lists live in different
slots: one pipelined ZREVRANGE per list, merged here), plus, when weighed and present, the "users
like you" script and the cohorts' lists, concurrently; (3) ONE HMGET of the best candidates' compact
filter records (``recs_item_filters``), best first (a second one only when the filters dropped too
many). Raw replies (no per-pair Python callbacks), numpy arrays. Writers of that state:
streams/cooccurrence.py, streams/catalog.py, streams/neighbours.py, streams/cohorts.py, jobs/ease.py;
this module owns none of it.

Per-user pools (issue 6): the stages of ``compute`` (``first_commands`` -> ``plan`` -> ``second`` /
``queue_second`` -> ``absorb`` -> ``choose`` -> ``finish``) are shared with streams/usercands.py, which
ranks each active user's pool (the best ``pool_size(10)`` candidates after the blend and the seen/id
filters) with them and stores it. ``recommend`` serves a request the pool answers exactly
(``precomputable``) from it in ONE script call (``CANDS_LUA``: the placement, the pool's head, the
head's filter records, the user's fence) when the pool was ranked from the user's current state and the
placement's current weights (``from_precomputed``), and takes the whole ranking otherwise. Similar
items / also bought: ONE script call (``SIMILAR_LUA``; ``Recommender.similar``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aura.layout import RedisKeys
from streams import itemfilters
from streams.cohorts import cohorts_from_hash

METHODS = ("hybrid", "collaborative", "content", "trending", "popular")
SOURCES = ("cooc", "ease", "mf", "content", "bought", "users", "cohort", "trending", "popular")

# Blend weights per placement, chosen a priori (see docs/recommenders.md); the model registry can
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


# ------------------------------------------------------------------- pure: the vectorized merge


RANK_SCORES = 1.0 / (1.0 + np.arange(10_000, dtype=np.float64))  # rank-based scores of ordered lists


def rank_scores(n: int) -> np.ndarray:
    return RANK_SCORES[:n] if n <= len(RANK_SCORES) else 1.0 / (1.0 + np.arange(n, dtype=np.float64))


def normalise_vec(v: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``normalise`` over the items a source proposed (``present``); the others stay 0."""
    if not present.any():
        return v
    vals = v[present]
    top = vals.max()
    if top <= 0 or not math.isfinite(top):
        lo = vals.min()
        span = (top - lo) or 1.0
        return np.where(present, (v - lo) / span, 0.0)
    return v / top


class Candidates:
    """Every source's scores over ONE candidate index, merged with numpy.

    ``add`` appends a chunk (item ids, scores, times a factor) to a source; ``scores`` sums a source's
    chunks per item (``np.bincount``) and says which items the source proposed. ``blend`` is the
    vectorized ``blend``: normalise each source to a maximum of 1, weighted sum.
    """

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.chunks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.ids: list[str] = []

    def add(self, source: str, ids: Sequence[str], scores: Any, factor: float = 1.0) -> None:
        if not len(ids):
            return
        ix = self.index
        fresh = dict.fromkeys(ids)
        if fresh.keys().isdisjoint(ix):  # all new (often: the first lists): no per-item test in Python
            new: Any = fresh
        else:
            new = [i for i in fresh if i not in ix]
        if new:
            ix.update(zip(new, range(len(ix), len(ix) + len(new)), strict=True))
        idx = np.fromiter(map(ix.__getitem__, ids), dtype=np.intp, count=len(ids))
        sc = np.asarray(scores, dtype=np.float64)
        self.chunks.setdefault(source, []).append((idx, sc * factor if factor != 1.0 else sc))

    def has(self, source: str) -> bool:
        return bool(self.chunks.get(source))

    def scores(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(summed scores over the whole index, proposed-by-this-source mask)."""
        n = len(self.index)
        parts = self.chunks.get(source)
        if not parts:
            return np.zeros(n), np.zeros(n, dtype=bool)
        if len(parts) == 1:
            idx = parts[0][0]
            w = parts[0][1]
        else:
            idx = np.concatenate([p[0] for p in parts])
            w = np.concatenate([p[1] for p in parts])
        present = np.zeros(n, dtype=bool)
        present[idx] = True
        return np.bincount(idx, weights=w, minlength=n), present

    def blend(self, weights: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weighted sum of the normalised sources (``weights`` > 0 only); the presence mask of each."""
        self.ids = list(self.index)
        total = np.zeros(len(self.index))
        masks: dict[str, np.ndarray] = {}
        for name, w in weights.items():
            if w <= 0 or not self.has(name):
                continue
            v, present = self.scores(name)
            total += w * normalise_vec(v, present)
            masks[name] = present
        return total, masks


def pick_pool(total: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Indexes of the ``size`` best-scored candidates among ``mask``."""
    cand = np.flatnonzero(mask)
    if len(cand) > size:
        cand = cand[np.argpartition(-total[cand], size - 1)[:size]]
    return cand


def rank_pool(pool: list[str], scores: list[float], records: list[str | None], seen: set[str], f: Filters,
              d: Diversity, limit: int) -> list[tuple[str, float]]:
    """``apply_filters`` -> sort -> ``diversify`` over the pool, with the compact filter records.

    Without boosts or diversity the records are decoded lazily, in score order, until ``limit`` items
    passed (the same answer as the full pass: the order does not depend on the filters)."""
    order = sorted(range(len(pool)), key=lambda j: (-scores[j], pool[j]))
    if not (f.boost_items or f.boost_categories or d.max_per_category is not None or d.mmr_lambda is not None):
        out: list[tuple[str, float]] = []
        for j in order:
            item = pool[j]
            if passes(item, itemfilters.decode(records[j]), seen, f):
                out.append((item, scores[j]))
                if len(out) >= limit:
                    break
        return out
    meta = {pool[j]: itemfilters.decode(records[j]) for j in order}
    kept = apply_filters({pool[j]: scores[j] for j in order}, meta, seen, f)
    ranked = sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))
    return diversify(ranked, meta, limit, d)


# ------------------------------------------------------------------------------------------ I/O


def parse_pairs(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    return {i: float(s) for i, s in pairs}


def meta_of(raw: list[str | None]) -> dict[str, Any] | None:
    """HMGET categories, price, available, deleted of an item's ``meta`` hash -> the attributes filters
    need (the hash form; the request path reads the compact records of ``streams/itemfilters.py``)."""
    cats, price, available, deleted = raw
    if deleted == "1" or (cats is None and price is None and available is None):
        return None
    return {"categories": json.loads(cats or "[]"), "price": float(price) if price else None,
            "available": available != "0"}


def seq_item(raw: str) -> tuple[str, float]:
    """A ``recs_user_seq`` entry ``"item|weight|time|bought"`` (streams/cooccurrence.SeqEntry) -> (item, weight)."""
    item, w, _t, _b = raw.rsplit("|", 3)
    return item, float(w)


def float_array(values: list[Any]) -> np.ndarray:
    """Scores from a reply: floats (RESP3 doubles) or decimal strings (RESP2); numpy's own string
    parsing is several times slower than ``float``."""
    if values and isinstance(values[0], str):
        values = list(map(float, values))
    return np.array(values, dtype=np.float64)


def flat_scores(flat: list[Any]) -> tuple[list[str], np.ndarray]:
    """A raw ``ZREVRANGE ... WITHSCORES`` reply -> ids, scores. RESP3 (``protocol=3``): [member, score]
    pairs with float scores; RESP2: member, score, member, score ... as strings."""
    if flat and isinstance(flat[0], list):
        return [p[0] for p in flat], np.fromiter((p[1] for p in flat), dtype=np.float64, count=len(flat))
    return flat[0::2], float_array(flat[1::2])


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
    model: str = ""  # "<model id>:<version>" active for the placement ("" when none)


LIST_SOURCES = ("cooc", "content", "bought", "ease")  # read from the recent items' neighbour lists
USER_NEIGHBOURS = 20  # "users like you" read per request (streams/neighbours.py)
NEIGHBOUR_ITEMS = 10  # most recent items of each neighbour

# "Users like you did lately": KEYS are the neighbours' sequences (recs_user_seq), ARGV = items per
# neighbour, decay, then each neighbour's similarity; returns [item, sum_v sim_v * decay**pos * w, ...].
USERS_LUA = """
local m, decay = tonumber(ARGV[1]), tonumber(ARGV[2])
local acc, order = {}, {}
for i, key in ipairs(KEYS) do
  local f = tonumber(ARGV[2 + i])
  for _, e in ipairs(redis.call('LRANGE', key, 0, m - 1)) do
    local item, w = string.match(e, '^(.*)|([^|]*)|[^|]*|[^|]*$')
    if item then
      local v = acc[item]
      if v == nil then order[#order + 1] = item; v = 0 end
      acc[item] = v + f * tonumber(w)
    end
    f = f * decay
  end
end
local flat = {}
for _, j in ipairs(order) do
  flat[#flat + 1] = j
  flat[#flat + 1] = {double = acc[j]}
end
return flat
"""


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

# The recency kNN of every list source in ONE read-only script call: KEYS are the neighbour lists,
# source-major (``n_src`` blocks of ``n_rec`` keys, newest recent item first); ARGV = list_k, n_src,
# n_rec, then the factor ``decay**r * weight_r`` of each recent item. Returns per source a flat
# [item, score, ...] of ``sum_r factor_r * sim(r, item)`` over the top ``list_k`` of each list (the
# same sums, in the same order, as ``recency_knn``; scores as RESP3 doubles, parsed by hiredis; a RESP2
# client gets them as exact decimal strings).
KNN_LUA = """
local k, ns, nr = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for s = 0, ns - 1 do
  local acc, order = {}, {}
  for r = 1, nr do
    local f = tonumber(ARGV[3 + r])
    local lst = redis.call('ZREVRANGE', KEYS[s * nr + r], 0, k - 1, 'WITHSCORES')
    for i = 1, #lst, 2 do
      local j = lst[i]
      local v = acc[j]
      if v == nil then
        order[#order + 1] = j
        acc[j] = f * tonumber(lst[i + 1])
      else
        acc[j] = v + f * tonumber(lst[i + 1])
      end
    end
  end
  local flat = {}
  for _, j in ipairs(order) do
    flat[#flat + 1] = j
    flat[#flat + 1] = {double = acc[j]}
  end
  out[s + 1] = flat
end
return out
"""


# Similar items / also bought in ONE read-only script call (issue 6): KEYS are the item's neighbour
# lists (one per source, all ``{item}``-tagged) and last the filter-record hash; ARGV = the item, the
# entries read per list, how many of the best to check against the filter records, then each source's
# weight. Per source the list is normalised to a maximum of 1 (``normalise``: the same branches), the
# weighted scores are summed in source order, the item itself is dropped, the candidates are ordered
# by score (ties: first proposed first, as Python's stable sort), the first ``keep`` are checked
# against their filter records (deleted "-" and unavailable "0|..." dropped; unknown items kept), and
# the survivors are returned flat [item, score, ...] in that order. The final (-score, id) order and
# the cut to ``limit`` happen in Python (Lua compares strings with the server's locale). The same
# answer as ``similar_reference`` (the former two-round-trip code; tested on random data).
SIMILAR_LUA = """
local item, n, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ns = #KEYS - 1
local acc, order = {}, {}
for s = 1, ns do
  local w = tonumber(ARGV[3 + s])
  local lst = redis.call('ZREVRANGE', KEYS[s], 0, n - 1, 'WITHSCORES')
  local m = #lst / 2
  if m > 0 then
    -- ZREVRANGE: the first score is the maximum, the last the minimum
    local top, lo = tonumber(lst[2]), tonumber(lst[2 * m])
    local shift, span = 0, top
    if top <= 0 or top == math.huge then
      shift, span = lo, top - lo
      if span == 0 then span = 1 end
    end
    for i = 1, m do
      local j = lst[2 * i - 1]
      local x = w * ((tonumber(lst[2 * i]) - shift) / span)
      local v = acc[j]
      if v == nil then
        order[#order + 1] = j
        acc[j] = 0 + x
      else
        acc[j] = v + x
      end
    end
  end
end
local cand = {}
for idx, j in ipairs(order) do
  if j ~= item then cand[#cand + 1] = idx end
end
if #cand == 0 then return {} end
table.sort(cand, function(a, b)
  local sa, sb = acc[order[a]], acc[order[b]]
  if sa ~= sb then return sa > sb end
  return a < b
end)
local head = {}
for i = 1, math.min(keep, #cand) do head[i] = order[cand[i]] end
local recs = redis.call('HMGET', KEYS[ns + 1], unpack(head))
local flat = {}
for i, j in ipairs(head) do
  local r = recs[i]
  if not r or string.sub(r, 1, 2) == '1|' then
    flat[#flat + 1] = j
    flat[#flat + 1] = {double = acc[j]}
  end
end
return flat
"""


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
        metas = [itemfilters.decode(records.get(i)) for i in order]
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


class Recommender:
    """Reads precomputed state and ranks; one per API process (stateless between requests)."""

    def __init__(self, redis: Any, keys: RedisKeys, candidates: int = 200, list_k: int = 50,
                 wanted_placements: Iterable[str] = (), wanted_max: int = 0, refresh_ms: int = 0) -> None:
        self.redis, self.keys, self.candidates, self.list_k = redis, keys, candidates, list_k
        # pools on demand: a request of these placements that finds no usable pool marks the user as
        # wanting one (``CANDS_LUA``), bounded to ``wanted_max`` (0 or no placements: never marks)
        self.wanted_placements = frozenset(wanted_placements) if wanted_max > 0 else frozenset()
        self.wanted_max = wanted_max
        self.refresh_ms = refresh_ms  # a pool served older than this is marked for re-ranking (0: never)
        # Redis Cluster: the neighbour lists of different items live in different slots, which one
        # script may not read: there the lists are read with one pipelined ZREVRANGE each.
        self.cluster = type(redis).__name__ == "RedisCluster"
        self.knn_script = None if self.cluster else redis.register_script(KNN_LUA)
        self.users_script = None if self.cluster else redis.register_script(USERS_LUA)
        # similar items: the filter hash lives in its own slot, so the Cluster path has two round trips
        self.similar_script = None if self.cluster else redis.register_script(SIMILAR_LUA)
        # the stream's per-user pool: its hash is in the user's slot, the placement and filter hashes
        # elsewhere, so the Cluster path has two round trips
        self.cands_script = None if self.cluster else redis.register_script(CANDS_LUA)

    async def similar(self, item_id: str, sources: dict[str, float], limit: int) -> list[tuple[str, float]]:
        """The blend of an item's neighbour lists without deleted / unavailable items, best first:
        ONE script call (``SIMILAR_LUA``); in Redis Cluster a pipeline of the lists, then one HMGET."""
        keys = [self.keys.recs_item_similar(item_id, src) for src in sources]
        if self.similar_script is not None:
            flat = await self.similar_script(keys=[*keys, self.keys.recs_item_filters()],
                                             args=[item_id, similar_read(limit), limit * 3, *sources.values()])
            pairs = zip(flat[0::2], map(float, flat[1::2]), strict=True)
            return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("ZREVRANGE", key, 0, similar_read(limit) - 1, "WITHSCORES")
        lists = []
        for w, flat in zip(sources.values(), await pipe.execute(), strict=True):
            ids, scores = flat_scores(flat)
            lists.append((w, list(zip(ids, scores.tolist(), strict=True))))
        merged: dict[str, float] = {}
        for w, lst in lists:
            for i, s in normalise(dict(lst)).items():
                merged[i] = merged.get(i, 0.0) + w * s
        merged.pop(item_id, None)
        order = sorted(merged, key=lambda i: -merged[i])[: limit * 3]
        records = await self.redis.execute_command("HMGET", self.keys.recs_item_filters(), *order) if order else []
        return similar_reference(item_id, lists, dict(zip(order, records, strict=True)), limit)

    async def mark_wanted(self, member: str, now_ms: int) -> None:
        """Mark (placement, user) as wanting a pool outside ``CANDS_LUA`` (Redis Cluster; changed weights)."""
        key = self.keys.recs_cands_wanted()
        pipe = self.redis.pipeline(transaction=False)
        pipe.execute_command("ZADD", key, now_ms, member)
        pipe.execute_command("ZREMRANGEBYRANK", key, 0, -self.wanted_max - 1)
        await pipe.execute()

    async def cohort_lists(self, cohorts: list[str], n: int) -> tuple[list[str], np.ndarray]:
        """The popular items of the user's cohorts: rank-based scores, summed over the cohorts."""
        pipe = self.redis.pipeline(transaction=False)
        for co in cohorts:
            pipe.execute_command("ZREVRANGE", self.keys.recs_cohort_popular(co), 0, n - 1)
        merged: dict[str, float] = {}
        for lst in await pipe.execute():
            for r, i in enumerate(lst):
                merged[i] = merged.get(i, 0.0) + 1.0 / (1 + r)
        return list(merged), np.array(list(merged.values()), dtype=np.float64)

    async def users_lists(self, neighbours: list[tuple[str, float]], decay: float) -> tuple[list[str], np.ndarray]:
        """What the user's neighbours did lately (ids, scores)."""
        keys = [self.keys.recs_user_seq(v) for v, _s in neighbours]
        if self.users_script is not None:
            flat = await self.users_script(keys=keys, args=[NEIGHBOUR_ITEMS, decay, *[s for _v, s in neighbours]])
            return flat[0::2], float_array(flat[1::2])
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("LRANGE", key, 0, NEIGHBOUR_ITEMS - 1)
        merged = users_knn(neighbours, await pipe.execute(), decay)
        return list(merged), np.array(list(merged.values()), dtype=np.float64)

    async def knn_lists(self, sources: list[str], recent: list[tuple[str, float]],
                        decay: float) -> dict[str, tuple[list[str], np.ndarray]]:
        """Per source, the recency kNN over the recent items' neighbour lists (ids, scores)."""
        factors = [(decay ** r) * w for r, (_item, w) in enumerate(recent)]
        keys = [self.keys.recs_item_similar(item, src) for src in sources for item, _w in recent]
        if self.knn_script is not None:
            flats = await self.knn_script(keys=keys, args=[self.list_k, len(sources), len(recent), *factors])
            return {src: (flat[0::2], float_array(flat[1::2])) for src, flat in zip(sources, flats, strict=True)}
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("ZREVRANGE", key, 0, self.list_k - 1, "WITHSCORES")
        lists = await pipe.execute()
        out = {}
        for a, src in enumerate(sources):
            c = Candidates()
            for r, f in enumerate(factors):
                c.add(src, *flat_scores(lists[a * len(recent) + r]), factor=f)
            v, _present = c.scores(src)
            out[src] = (list(c.index), v)
        return out

    async def weights_for(self, placement: str, method: str) -> dict[str, float]:
        raw = await self.redis.hget(self.keys.recs_placement(placement), "weights")
        return method_weights(raw, placement, method)

    # ------------------------------------------------------------------ the request, in stages

    def first_commands(self, req: Request) -> list[tuple[Any, ...]]:
        """Round trip (1): the placement, the user's recent items, seen items, model candidates,
        neighbours and attributes, the trending and popular lists (layout read by ``plan``)."""
        k, n, uid = self.keys, self.candidates, req.user_id
        cmds: list[tuple[Any, ...]] = [("HMGET", k.recs_placement(req.placement), "weights", "model_id", "version")]
        if uid:
            cmds += [("LRANGE", k.recs_user_seq(uid), 0, max(req.recent_n, 1) - 1),
                     ("ZRANGE", k.recs_user_seen(uid), 0, -1),
                     ("ZREVRANGE", k.recs_user_mf(uid), 0, n - 1, "WITHSCORES"),
                     ("ZREVRANGE", k.recs_user_batch(uid, req.batch_model), 0, n - 1, "WITHSCORES"),
                     ("ZREVRANGE", k.recs_user_nbrs(uid), 0, USER_NEIGHBOURS - 1, "WITHSCORES"),
                     ("HGETALL", k.user_attrs(uid))]  # demographics (cohorts) for the cold start
        cmds += [("ZREVRANGE", tk, 0, n - 1) for tk in self.trend_keys(req)]
        cmds.append(("ZREVRANGE", k.recs_popular(), 0, n - 1))
        return cmds

    def trend_keys(self, req: Request) -> list[str]:
        cats = req.filters.categories or (frozenset(req.preferred_categories) if req.preferred_categories else None)
        return [self.keys.recs_trending(c) for c in sorted(cats)] if cats else [self.keys.recs_trending()]

    def plan(self, req: Request, raw: list[Any]) -> Plan:
        """The replies of round trip (1) -> the candidates known so far and what round trip (2) reads."""
        n_trend = len(self.trend_keys(req))
        wraw, model_id, version = raw[0]
        weights = method_weights(wraw, req.placement, req.method)
        c = Candidates()
        pl = Plan(req=req, weights=weights, model=f"{model_id}:{version}" if model_id else "", c=c,
                  asked=dict(weights))
        if req.user_id:
            pl.recent = [seq_item(x) for x in raw[1][: req.recent_n]]
            pl.seen = raw[2]
            if weights.get("mf", 0) > 0:
                c.add("mf", *flat_scores(raw[3]))
            if req.batch_model and weights.get("ease", 0) > 0:
                c.add("ease", *flat_scores(raw[4]))
            if weights.get("users", 0) > 0 and raw[5]:
                ids, sims = flat_scores(raw[5])
                pl.neighbours = list(zip(ids, sims.tolist(), strict=True))
            attrs = raw[6]
            if weights.get("cohort", 0) > 0 and attrs:
                pl.cohorts = cohorts_from_hash(attrs if isinstance(attrs, dict) else dict(zip(attrs[0::2], attrs[1::2],
                                                                                              strict=True)))
            pos = 7
        else:
            pos = 1
        trend_lists, pl.popular = raw[pos:pos + n_trend], raw[pos + n_trend]
        if weights.get("trending", 0) > 0:
            if len(trend_lists) == 1:  # log-scores: rank-based scores (comparable across categories)
                c.add("trending", trend_lists[0], rank_scores(len(trend_lists[0])))
            else:
                trend: dict[str, float] = {}
                for lst in trend_lists:
                    for r, i in enumerate(lst):
                        trend[i] = max(trend.get(i, 0.0), 1.0 / (1 + r))
                c.add("trending", list(trend), list(trend.values()))
        if weights.get("popular", 0) > 0:
            c.add("popular", pl.popular, rank_scores(len(pl.popular)))
        # the item on screen counts as the newest interaction
        if req.context_item:
            pl.recent = [(req.context_item, 2.0), *[r for r in pl.recent if r[0] != req.context_item]]
        pl.list_sources = [s for s in LIST_SOURCES if weights.get(s, 0) > 0] if pl.recent else []
        return pl

    def absorb(self, pl: Plan, knn: dict[str, tuple[list[str], np.ndarray]] | None,
               users: tuple[list[str], np.ndarray] | None, cohort: tuple[list[str], np.ndarray] | None) -> None:
        """The replies of round trip (2) into the candidates (the EASE source: user-level batch
        candidates + 0.5 x the recency kNN over the batch model's item lists)."""
        c = pl.c
        for src, (ids, scores) in (knn or {}).items():
            c.add("ease:knn" if src == "ease" else src, ids, scores)
        if users is not None:
            c.add("users", *users)
        if cohort is not None:
            c.add("cohort", *cohort)
        if c.has("ease:knn"):
            if c.has("ease"):
                b, bp = c.scores("ease")
                kv, kp = c.scores("ease:knn")
                merged = normalise_vec(b, bp) + 0.5 * normalise_vec(kv, kp)
                present = bp | kp
                idx = np.flatnonzero(present)
                c.chunks["ease"] = [(idx, merged[idx])]
            else:
                c.chunks["ease"] = c.chunks["ease:knn"]
            del c.chunks["ease:knn"]

    async def second(self, pl: Plan) -> None:
        """Round trip (2): the kNN script over the recent items' neighbour lists and, when weighed and
        known, "users like you" and the cohorts' lists (concurrently)."""
        req = pl.req
        calls = []
        if pl.list_sources:
            calls.append(self.knn_lists(pl.list_sources, pl.recent, req.recent_decay))
        if pl.neighbours:
            calls.append(self.users_lists(pl.neighbours, req.recent_decay))
        if pl.cohorts:
            calls.append(self.cohort_lists(pl.cohorts, self.candidates))
        done = await asyncio.gather(*calls) if len(calls) > 1 else [await calls[0]] if calls else []
        self.absorb(pl, done.pop(0) if pl.list_sources else None, done.pop(0) if pl.neighbours else None,
                    done.pop(0) if pl.cohorts else None)

    def queue_second(self, pipe: Any, pl: Plan) -> None:
        """Round trip (2) queued on a pipeline (the stream's batch: streams/usercands.py), scripts only
        (no Redis Cluster); ``absorb_queued`` reads the replies in the same order."""
        req = pl.req
        if pl.list_sources:
            factors = [(req.recent_decay ** r) * w for r, (_item, w) in enumerate(pl.recent)]
            keys = [self.keys.recs_item_similar(item, src) for src in pl.list_sources for item, _w in pl.recent]
            pipe.evalsha(self.knn_script.sha, len(keys), *keys,  # type: ignore[union-attr]
                         self.list_k, len(pl.list_sources), len(pl.recent), *factors)
            pipe.scripts.add(self.knn_script)
        if pl.neighbours:
            keys = [self.keys.recs_user_seq(v) for v, _s in pl.neighbours]
            pipe.evalsha(self.users_script.sha, len(keys), *keys,  # type: ignore[union-attr]
                         NEIGHBOUR_ITEMS, req.recent_decay, *[s for _v, s in pl.neighbours])
            pipe.scripts.add(self.users_script)
        for co in pl.cohorts:
            pipe.execute_command("ZREVRANGE", self.keys.recs_cohort_popular(co), 0, self.candidates - 1)

    def absorb_queued(self, pl: Plan, replies: list[Any]) -> None:
        pos = 0
        knn = users = cohort = None
        if pl.list_sources:
            knn = {src: (flat[0::2], float_array(flat[1::2]))
                   for src, flat in zip(pl.list_sources, replies[pos], strict=True)}
            pos += 1
        if pl.neighbours:
            users = (replies[pos][0::2], float_array(replies[pos][1::2]))
            pos += 1
        if pl.cohorts:
            merged: dict[str, float] = {}
            for lst in replies[pos:pos + len(pl.cohorts)]:
                for r, i in enumerate(lst):
                    merged[i] = merged.get(i, 0.0) + 1.0 / (1 + r)
            cohort = (list(merged), np.array(list(merged.values()), dtype=np.float64))
        self.absorb(pl, knn, users, cohort)

    def queued_replies(self, pl: Plan) -> int:
        return int(bool(pl.list_sources)) + int(bool(pl.neighbours)) + len(pl.cohorts)

    def choose(self, pl: Plan) -> Pool:
        """Blend, drop the id filters and seen items, and keep the pool of the best candidates."""
        req, c, weights = pl.req, pl.c, pl.weights
        personal = any(c.has(s) for s in ("cooc", "ease", "mf", "content", "bought", "users"))
        strategy = req.method if personal else f"{req.method}:cold_start"
        if not any(c.has(s) for s in weights if weights[s] > 0):
            c = pl.c = Candidates()
            c.add("popular", pl.popular, rank_scores(len(pl.popular)))
            weights = pl.weights = {"popular": 1.0}
        total, masks = c.blend(weights)
        pool = Pool(ids=[], scores=np.zeros(0), masks=masks, strategy=strategy, weights=weights, model=pl.model,
                    index=c.index, asked=pl.asked)
        if not masks:
            return pool
        mask = np.logical_or.reduce(list(masks.values()))
        f = req.filters
        index = c.index
        drop = [index[i] for i in f.exclude_ids if i in index]  # id filters before the pool: no wasted slot
        if f.exclude_seen:
            drop += [index[i] for i in pl.seen if i in index]
        mask[drop] = False
        if f.include_ids is not None:
            allow = np.zeros_like(mask)
            allow[[c.index[i] for i in f.include_ids if i in c.index]] = True
            mask &= allow
        pool_idx = pick_pool(total, mask, pool_size(req.limit))
        pool.ids = [c.ids[j] for j in pool_idx]
        pool.scores = total[pool_idx]
        return pool

    async def finish(self, req: Request, pool: Pool) -> Result:
        """Round trip (3): the pool's filter records, best first: ONE HMGET of a first chunk, enough when
        the filters drop little; the rest of the pool only when they drop more (or boosts/diversity
        need it all)."""
        f, k = req.filters, self.keys
        if not pool.ids:
            return Result(items=[], strategy=pool.strategy, weights=pool.weights, model=pool.model)
        ids_all, pool_scores = pool.ids, pool.scores
        whole = needs_whole_pool(req)
        first = len(ids_all) if whole else max(3 * req.limit, 30)
        head = np.arange(len(ids_all))
        if first < len(ids_all):  # the head of the order (-score, id): every item scoring >= the first-th best
            threshold = np.partition(pool_scores, len(ids_all) - first)[len(ids_all) - first]
            head = np.flatnonzero(pool_scores >= threshold)
        best = sorted(zip([ids_all[j] for j in head], pool_scores[head].tolist(), strict=True),
                      key=lambda t: (-t[1], t[0]))
        ids, scores = [i for i, _ in best], [x for _, x in best]
        records = await self.redis.execute_command("HMGET", k.recs_item_filters(), *ids)
        ranked = rank_pool(ids, scores, records, set(), f, req.diversity, req.limit)
        if len(ranked) < req.limit and len(ids_all) > len(ids):  # the filters dropped many: the whole pool
            rest = sorted(set(range(len(ids_all))) - set(head.tolist()))
            more = sorted(zip([ids_all[j] for j in rest], pool_scores[rest].tolist(), strict=True),
                          key=lambda t: (-t[1], t[0]))
            records += await self.redis.execute_command("HMGET", k.recs_item_filters(), *[i for i, _ in more])
            ranked = rank_pool(ids + [i for i, _ in more], scores + [x for _, x in more], records, set(), f,
                               req.diversity, req.limit)
        names = [s for s in SOURCES if s in pool.masks]
        items = [(i, s, [name for name in names if pool.masks[name][pool.index[i]]]) for i, s in ranked]
        return Result(items=items, strategy=pool.strategy, weights=pool.weights, model=pool.model)

    async def compute(self, req: Request) -> Result:
        """The whole ranking from the state: three round trips (see the module docstring)."""
        pipe = self.redis.pipeline(transaction=False)
        for cmd in self.first_commands(req):
            pipe.execute_command(*cmd)
        pl = self.plan(req, await pipe.execute())
        await self.second(pl)
        return await self.finish(req, self.choose(pl))

    async def recommend(self, req: Request) -> Result:
        """The user's precomputed candidate pool (streams/usercands.py) when it answers this request
        exactly, else the whole ranking (``compute``)."""
        if precomputable(req):
            got = await self.from_precomputed(req)
            if got is not None:
                return got
        return await self.compute(req)

    async def from_precomputed(self, req: Request, whole: bool = False) -> Result | None:
        """The pool the stream kept for (user, placement): ONE script call (placement, the pool's head
        and the head's filter records, the user's recommender fence; Redis Cluster: a pipeline, then one
        HMGET). None when there is no pool, when it was ranked before the user's last applied event (its
        fence ``off`` is not the user's ``_off``: the stream has not re-ranked it yet) or with other
        weights than the placement's current ones. ``whole``: read the whole pool (boosts and diversity
        look at every candidate; the filters dropped so many of the head that it cannot fill the page)."""
        k = self.keys
        whole = whole or needs_whole_pool(req)
        first = pool_size(req.limit) if whole else max(3 * req.limit, 30)
        uid = req.user_id or ""
        ckey = k.recs_user_cands(uid, req.placement)
        mark = self.wanted_max if req.placement in self.wanted_placements else 0
        member = wanted_member(req.placement, uid)
        now_ms = int(time.time() * 1000)
        if self.cands_script is not None:
            p, c, records = await self.cands_script(keys=[k.recs_placement(req.placement), ckey,
                                                          k.recs_item_filters(), k.recs_user_state(uid),
                                                          k.recs_cands_wanted()],
                                                    args=[first, member, now_ms, mark, self.refresh_ms,
                                                          int(whole)])
            marked = True
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.execute_command("HMGET", k.recs_placement(req.placement), "weights", "model_id", "version")
            pipe.execute_command("HMGET", ckey, *CANDS_FIELDS, "time", *CANDS_REST)
            pipe.execute_command("HGET", k.recs_user_state(uid), "_off")
            p, c, off = await pipe.execute()
            ids_rest, scores_rest, sources_rest = c[-3:]
            ranked_ms = c[-4]
            c = c[:len(CANDS_FIELDS)]
            if whole and c[2] and ids_rest:
                c[2:5] = [c[2] + CANDS_SEP + ids_rest, c[3] + "," + scores_rest, c[4] + CANDS_SEP + sources_rest]
            c = [*c, off, len(ids_rest or "")]
            records = None
            marked = False
            if mark and self.refresh_ms and c[2] is not None and c[6] == (off or "-1") and \
                    int(ranked_ms or 0) + self.refresh_ms <= now_ms:
                await self.mark_wanted(member, now_ms)  # served, and re-ranked behind (Cluster: one more call)
        wraw, model_id, version = p
        stored_weights, strategy, ids_blob, scores_blob, sources_blob, used, ranked_at, current, rest_len = c
        if ids_blob is None or ranked_at != (current or "-1"):  # none, or ranked before the user's last event
            if mark and not marked:  # (Redis Cluster: the wanted set is in its own slot)
                await self.mark_wanted(member, now_ms)
            return None
        if parsed_json(stored_weights) != method_weights(wraw, req.placement, req.method):
            if mark:  # ranked with the placement's former weights: wanted again (rare)
                await self.mark_wanted(member, now_ms)
            return None
        weights = parsed_weights(used)  # the weights the ranking used ({"popular": 1} when nothing else answered)
        model = f"{model_id}:{version}" if model_id else ""
        if not ids_blob:
            return Result(items=[], strategy=strategy, weights=weights, model=model)
        ids = ids_blob.split(CANDS_SEP, first)  # the head (and the rest of the head, unsplit)
        more = len(ids) > first or int(rest_len or 0) > 0  # the pool holds more than the ids read
        if len(ids) > first:
            ids.pop()
        if records is None:
            records = await self.redis.execute_command("HMGET", k.recs_item_filters(), *ids)
        ranked = rank_pool(ids, list(map(float, scores_blob.split(",", first)[:first])), records, set(), req.filters,
                           req.diversity, req.limit)
        if len(ranked) < req.limit and more and not whole:  # the filters dropped many: the whole pool, read
            return await self.from_precomputed(req, whole=True)  # again in one call (the same ranking)
        where = [ids.index(i) for i, _s in ranked]
        sources = sources_blob.split(CANDS_SEP, max(where, default=0) + 1)
        items = [(i, s, sources[j].split(",")) for (i, s), j in zip(ranked, where, strict=True)]
        return Result(items=items, strategy=strategy, weights=weights, model=model)


# ------------------------------------------------------- the per-user pool kept by the stream

CANDS_FIELDS = ("weights", "strategy", "ids", "scores", "sources", "used", "off")
CANDS_REST = ("ids_rest", "scores_rest", "sources_rest")  # the pool beyond its head (absent when none)
CANDS_SEP = "\x1f"
CANDS_LIMIT = 10  # the stream ranks as for limit 10: the pool of ``pool_size(10)`` serves limits up to 15
CANDS_HEAD = 45  # ids kept in the pool's head fields: what a request of limit <= 15 reads (3 * limit)

# The precomputed pool in ONE read-only call: KEYS = the placement hash, the user's pool hash, the filter
# records, the user's recommender state (its fence ``_off``); ARGV = how many of the pool's first ids to
# read records for. Returns {placement HMGET, pool HMGET + the user's fence + the length of the pool's
# rest, the head's records}. The pool's ids are stored best first, ``CANDS_SEP``-separated: its first
# ``CANDS_HEAD`` in ``ids`` (with ``scores``, ``sources``), the others in ``ids_rest`` (``CANDS_REST``), so
# that a plain request copies ~1 KB out of Redis instead of the whole pool (~10 KB); ARGV[6] = '1' reads
# the whole pool (the rest appended to the head). The pool and the state share the user's hash tag; the
# placement and filter hashes do not (Redis Cluster: ``from_precomputed``'s other path).
#
# Pools on demand: KEYS[5] = the wanted set (``recs_cands_wanted``), ARGV[2] = this request's member
# (``wanted_member``), ARGV[3] = now (ms), ARGV[4] = the set's bound (0: do not mark), ARGV[5] = the age
# (ms) after which a usable pool is re-ranked (0: never). When there is no usable pool (none, or ranked
# before the user's last applied event: its ``off`` is not the user's ``_off``), or the pool served is
# older than that age (it does not see lists republished since: served, and refreshed behind), the
# request marks (placement, user) as wanted (ZADD, then the oldest beyond the bound dropped): the
# worker ranks that pool on its next tick (streams/usercands.py). A hit on a young pool writes nothing.
CANDS_LUA = """
local p = redis.call('HMGET', KEYS[1], 'weights', 'model_id', 'version')
local c = redis.call('HMGET', KEYS[2], 'weights', 'strategy', 'ids', 'scores', 'sources', 'used', 'off')
c[#c + 1] = redis.call('HGET', KEYS[4], '_off')
c[#c + 1] = redis.call('HSTRLEN', KEYS[2], 'ids_rest')
if ARGV[6] == '1' and c[3] and c[9] > 0 then
  local r = redis.call('HMGET', KEYS[2], 'ids_rest', 'scores_rest', 'sources_rest')
  c[3] = c[3] .. '\\31' .. r[1]
  c[4] = c[4] .. ',' .. r[2]
  c[5] = c[5] .. '\\31' .. r[3]
end
local ids = c[3]
local bound = tonumber(ARGV[4] or '0')
local want = bound > 0 and (not ids or c[7] ~= (c[8] or '-1'))
if bound > 0 and not want and tonumber(ARGV[5]) > 0 then
  want = tonumber(redis.call('HGET', KEYS[2], 'time') or '0') + tonumber(ARGV[5]) <= tonumber(ARGV[3])
end
if want then
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[2])
  local n = redis.call('ZCARD', KEYS[5])
  if n > bound then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, n - bound - 1) end
end
if not ids or ids == '' then return {p, c, {}} end
local first, head, pos = tonumber(ARGV[1]), {}, 1
while #head < first do
  local e = string.find(ids, '\\31', pos, true)
  if e then
    head[#head + 1] = string.sub(ids, pos, e - 1)
    pos = e + 1
  else
    head[#head + 1] = string.sub(ids, pos)
    break
  end
end
return {p, c, redis.call('HMGET', KEYS[3], unpack(head))}
"""


WANTED_SEP = "\x1f"


def wanted_member(placement: str, user_id: str) -> str:
    """The wanted set's member for (placement, user): the placement first (a configured placement has
    no separator; a user id may)."""
    return f"{placement}{WANTED_SEP}{user_id}"


def parse_wanted(member: str) -> tuple[str, str]:
    placement, _, user = member.partition(WANTED_SEP)
    return placement, user


def pool_size(limit: int) -> int:
    """Candidates kept after the blend, before the filter records are read."""
    return max(limit * 20, 300)


def needs_whole_pool(req: Request) -> bool:
    """Boosts and diversity look at the whole pool (the records of every candidate)."""
    f = req.filters
    return bool(f.boost_items or f.boost_categories or req.diversity.max_per_category is not None
                or req.diversity.mmr_lambda is not None)


def precomputable(req: Request) -> bool:
    """Whether the stream's pool for (user, placement) answers ``req`` exactly: a hybrid request without
    an item on screen, categories or id filters, seen items excluded, default recency settings and a
    pool of the same size. Price and stock filters, boosts and diversity work on the pool as usual."""
    f = req.filters
    return bool(req.user_id and req.method == "hybrid" and not req.context_item and not req.preferred_categories
                and f.categories is None and f.exclude_seen and not f.exclude_ids and f.include_ids is None
                and pool_size(req.limit) == pool_size(CANDS_LIMIT) and req.recent_n == 10
                and req.recent_decay == 0.8 and req.batch_model == "ease")


def pool_record(pool: Pool) -> dict[str, str] | None:
    """A pool as the stream stores it (hash fields ``CANDS_FIELDS``, and ``CANDS_REST`` when it holds
    more than ``CANDS_HEAD`` ids): ids best first in the order (-score, id), scores as exact decimal
    text, each item's sources; None when an id contains the separator (such a user is served by the
    whole ranking)."""
    order = sorted(zip(pool.ids, pool.scores.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
    ids = [i for i, _s in order]
    text = CANDS_SEP.join(ids)
    if text.count(CANDS_SEP) != max(len(ids) - 1, 0):
        return None
    names = [s for s in SOURCES if s in pool.masks]
    idx = np.fromiter(map(pool.index.__getitem__, ids), dtype=np.intp, count=len(ids))
    code = np.zeros(len(ids), dtype=np.intp)  # bit b: proposed by names[b]
    for b, n in enumerate(names):
        code |= pool.masks[n][idx].astype(np.intp) << b
    spelled = {c: ",".join(n for b, n in enumerate(names) if c >> b & 1) for c in set(code.tolist())}
    scores = [repr(s) for _i, s in order]
    sources = list(map(spelled.__getitem__, code.tolist()))
    h = CANDS_HEAD
    record = {"weights": json.dumps(pool.asked), "used": json.dumps(pool.weights), "strategy": pool.strategy,
              "ids": CANDS_SEP.join(ids[:h]), "scores": ",".join(scores[:h]), "sources": CANDS_SEP.join(sources[:h])}
    if len(ids) > h:
        record.update(ids_rest=CANDS_SEP.join(ids[h:]), scores_rest=",".join(scores[h:]),
                      sources_rest=CANDS_SEP.join(sources[h:]))
    return record


def pool_ids(record: dict[str, str]) -> list[str]:
    """Every id of a stored pool (``pool_record``'s fields, as HGETALL returns them), best first."""
    head, rest = record.get("ids") or "", record.get("ids_rest") or ""
    return (head.split(CANDS_SEP) if head else []) + (rest.split(CANDS_SEP) if rest else [])


@dataclass
class Plan:
    """One request between its round trips (``Recommender.plan`` -> ``absorb`` -> ``choose``)."""

    req: Request
    weights: dict[str, float]
    model: str
    c: Candidates
    recent: list[tuple[str, float]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    neighbours: list[tuple[str, float]] = field(default_factory=list)
    cohorts: list[str] = field(default_factory=list)
    popular: list[str] = field(default_factory=list)
    list_sources: list[str] = field(default_factory=list)
    asked: dict[str, float] = field(default_factory=dict)  # the placement's weights for the method


@dataclass
class Pool:
    """The best candidates after the blend (unordered), their scores and each source's presence mask."""

    ids: list[str]
    scores: np.ndarray
    masks: dict[str, np.ndarray]
    strategy: str
    weights: dict[str, float]
    model: str
    index: dict[str, int]
    asked: dict[str, float]  # the placement's weights for the method (``method_weights``)
