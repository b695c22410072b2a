"""The hybrid ranking over the state in Redis, in stages, for one request or a batch of users: what the
API's requests (aura/ranking/reader.py) and the worker's pool refresher (streams/usercands.py) share.

``Ranker.compute`` takes three round trips and eleven commands: (1) one pipeline of nine
(``first_commands``): the placement's weights and served model, the user's recent items, seen items,
MF factors (scored against this process's item factors: aura/ranking/factors.py), batch model
candidates, neighbours and identity hash (demographic cohorts; explicit preferences, applied by
aura/ranking/preferences.py), the global lists; (2) ONE read-only
script call (``KNN_LUA``) that sums the recency kNN of every weighted list source over the recent items'
neighbour lists (and the context item's) inside Redis and returns one merged list per source (in Redis
Cluster, where those lists live in different slots: one pipelined ZREVRANGE per list, merged here),
plus, when weighed and present, the "users like you" script and the cohorts' lists, concurrently;
(3) ONE HMGET of the best candidates' compact filter records (``recs_item_filters``), best first (a
second one only when the filters dropped too many). Raw replies (no per-pair Python callbacks), numpy
arrays. The stages (``first_commands`` -> ``plan`` -> ``second`` / ``queue_second`` -> ``absorb`` ->
``choose`` -> ``finish``) are public so that the worker ranks a chunk of users in three pipelines.
Writers of that state: streams/usersignals.py, streams/itemsignals.py, streams/catalog.py, streams/neighbours.py,
streams/cohorts.py, jobs/ease.py; this module owns none of it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aura.keys import RedisKeys
from aura.ranking.blend import method_weights, seq_item, users_knn
from aura.ranking.factors import ItemFactors
from aura.ranking.preferences import of_hash, personalise
from aura.ranking.request import Request, Result, pool_head, result_of
from aura.ranking.scripts import FIRST_LUA, KNN_LUA, USERS_LUA
from aura.ranking.vector import Candidates, flat_scores, float_array, normalise_vec, pick_pool, rank_pool, rank_scores
from aura.state.cohorts import cohorts_from_hash
from aura.state.cooccurrence import USER_MF
from aura.state.pools import Pool, pool_size

LIST_SOURCES = ("cooc", "content", "bought", "ease")  # read from the recent items' neighbour lists
FIRST_USER_READS = 7  # ``first_commands`` of a request with a user: the placement and six per-user reads
BATCH_TTL_S = 1.0  # a placement's batch lists name (the model version activated there) is re-read this often
USER_NEIGHBOURS = 20  # "users like you" read per request (streams/neighbours.py)
NEIGHBOUR_ITEMS = 10  # most recent items of each neighbour


@dataclass
class Plan:
    """One request between its round trips (``Ranker.plan`` -> ``absorb`` -> ``choose``)."""

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


class Ranker:
    """Reads the state a ranking needs and ranks, in stages; stateless between requests."""

    def __init__(self, redis: Any, keys: RedisKeys, candidates: int = 200, list_k: int = 50,
                 factors: ItemFactors | None = None) -> None:
        self.redis, self.keys, self.candidates, self.list_k = redis, keys, candidates, list_k
        # the MF item factors the user's MF candidates are scored against (shared by the bounded view)
        self.factors = factors if factors is not None else ItemFactors(redis, keys)
        # Redis Cluster: the neighbour lists of different items live in different slots, which one
        # script may not read: there the lists are read with one pipelined ZREVRANGE each.
        self.cluster = type(redis).__name__ == "RedisCluster"
        self.knn_script = None if self.cluster else redis.register_script(KNN_LUA)
        self.users_script = None if self.cluster else redis.register_script(USERS_LUA)
        self.users = True  # read "users like you" when weighed (a bounded first pass skips it)
        self.recent_cap = 0  # recent items read at most (0: as the request asks)
        self.first_script: Any = None  # ``FIRST_LUA``: round trips (1) and (2) in one call (``bounded``)
        # placement -> the name of the batch lists its ``ease`` source reads (the version activated there,
        # field ``batch`` of ``recs_placement``; "ease" when none): re-read every ``BATCH_TTL_S`` (shared
        # with the bounded view)
        self.batch_lists: dict[str, str] = {}
        self.batch_at: dict[str, float] = {}

    async def prepare(self, placements: Iterable[str]) -> None:
        """The process's caches before a ranking: the placements' batch lists, the MF item factors."""
        await self.factors.refresh()
        await self.resolve_batch(placements)

    async def resolve_batch(self, placements: Iterable[str]) -> None:
        """Refresh the batch lists name of the placements read longer than ``BATCH_TTL_S`` ago (one
        pipeline, about once a second per placement and process; nothing otherwise)."""
        now = time.monotonic()
        stale = [p for p in dict.fromkeys(placements) if now - self.batch_at.get(p, -BATCH_TTL_S) >= BATCH_TTL_S]
        if not stale:
            return
        pipe = self.redis.pipeline(transaction=False)
        for p in stale:
            pipe.execute_command("HGET", self.keys.recs_placement(p), "batch")
        for p, name in zip(stale, await pipe.execute(), strict=True):
            self.batch_lists[p], self.batch_at[p] = name or "ease", now

    def lists_of(self, req: Request) -> str:
        """The batch lists ``req`` reads: the placement's activated version's unless the request names one."""
        return self.batch_lists.get(req.placement, "ease") if req.batch_model == "ease" else req.batch_model

    def list_key(self, item: str, src: str, req: Request) -> str:
        return self.keys.recs_item_similar(item, self.lists_of(req) if src == "ease" else src)

    def bounded(self, candidates: int, list_k: int, recent: int) -> Ranker:
        """The same ranking at a bounded cost (the first pass of a user without a pool): at most
        ``candidates`` ids of each per-user, cohort and global list, the first ``list_k`` entries of each
        neighbour list, the ``recent`` newest items, no "users like you". Shares the connection and the
        scripts. With lists and a history shorter than the bounds (and no "users" weight) it answers
        exactly as the whole ranking."""
        view = copy.copy(self)
        # at least one of each (a bound of 0 would read ZREVRANGE 0 -1: every entry)
        view.candidates, view.list_k = max(min(candidates, self.candidates), 1), max(min(list_k, self.list_k), 1)
        view.recent_cap, view.users = max(recent, 1), False
        view.first_script = None if self.cluster else self.redis.register_script(FIRST_LUA)
        return view

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
                        req: Request) -> dict[str, tuple[list[str], np.ndarray]]:
        """Per source, the recency kNN over the recent items' neighbour lists (ids, scores)."""
        decay = req.recent_decay
        factors = [(decay ** r) * w for r, (_item, w) in enumerate(recent)]
        keys = [self.list_key(item, src, req) for src in sources for item, _w in recent]
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
        """Round trip (1): the placement, the user's recent items, seen items, MF factors, batch candidates,
        neighbours and attributes, the trending and popular lists (layout read by ``plan``)."""
        k, n, uid = self.keys, self.candidates, req.user_id
        cmds: list[tuple[Any, ...]] = [("HMGET", k.recs_placement(req.placement), "weights", "model_id", "version")]
        if uid:
            cmds += [("LRANGE", k.recs_user_seq(uid), 0, self.recent_of(req) - 1),
                     ("ZRANGE", k.recs_user_seen(uid), 0, -1),
                     ("HGET", k.recs_user_state(uid), USER_MF),  # the user's MF factors
                     ("ZREVRANGE", k.recs_user_batch(uid, self.lists_of(req)), 0, n - 1, "WITHSCORES"),
                     ("ZREVRANGE", k.recs_user_nbrs(uid), 0, USER_NEIGHBOURS - 1, "WITHSCORES"),
                     ("HGETALL", k.user_attrs(uid))]  # demographics (cohorts) for the cold start
        cmds += [("ZREVRANGE", tk, 0, n - 1) for tk in self.trend_keys(req)]
        cmds.append(("ZREVRANGE", k.recs_popular(), 0, n - 1))
        return cmds

    def recent_of(self, req: Request) -> int:
        """Recent items read for ``req`` (at least one; at most ``recent_cap`` when bounded)."""
        n = max(req.recent_n, 1)
        return min(n, self.recent_cap) if self.recent_cap else n

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
            pl.recent = [seq_item(x) for x in raw[1][: min(req.recent_n, self.recent_of(req))]]
            pl.seen = raw[2]
            if weights.get("mf", 0) > 0 and raw[3]:
                c.add("mf", *self.factors.top(raw[3], self.candidates))
            if req.batch_model and weights.get("ease", 0) > 0:
                c.add("ease", *flat_scores(raw[4]))
            if self.users and weights.get("users", 0) > 0 and raw[5]:
                ids, sims = flat_scores(raw[5])
                pl.neighbours = list(zip(ids, sims.tolist(), strict=True))
            attrs = raw[6]
            if attrs and not isinstance(attrs, dict):
                attrs = dict(zip(attrs[0::2], attrs[1::2], strict=True))
            if weights.get("cohort", 0) > 0 and attrs:
                pl.cohorts = cohorts_from_hash(attrs)
            prefs = of_hash(attrs)  # explicit preferences: blocked items, categories, brands, price range
            if prefs.blocked or prefs.excluded or prefs.soft:
                pl.req = req = dataclasses.replace(req, filters=personalise(req.filters, prefs))
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
            calls.append(self.knn_lists(pl.list_sources, pl.recent, req))
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
            keys = [self.list_key(item, src, req) for src in pl.list_sources for item, _w in pl.recent]
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
        head, ids, scores = pool_head(req, pool)
        records = await self.redis.execute_command("HMGET", k.recs_item_filters(), *ids)
        ranked = rank_pool(ids, scores, records, set(), f, req.diversity, req.limit)
        if len(ranked) < req.limit and len(ids_all) > len(ids):  # the filters dropped many: the whole pool
            rest = sorted(set(range(len(ids_all))) - set(head.tolist()))
            more = sorted(zip([ids_all[j] for j in rest], pool_scores[rest].tolist(), strict=True),
                          key=lambda t: (-t[1], t[0]))
            records += await self.redis.execute_command("HMGET", k.recs_item_filters(), *[i for i, _ in more])
            ranked = rank_pool(ids + [i for i, _ in more], scores + [x for _, x in more], records, set(), f,
                               req.diversity, req.limit)
        return result_of(pool, ranked)

    async def compute(self, req: Request, first_raw: list[Any] | None = None) -> Result:
        """The whole ranking from the state: three round trips (see the module docstring); a bounded
        view answers a request without an item on screen in two (``FIRST_LUA``, then the HMGET), or in
        one when ``first_raw`` holds the ``FIRST_LUA`` reply already (read with the pool: ``COLD_LUA``)."""
        await self.prepare((req.placement,))
        if self.first_script is not None and req.user_id and not req.context_item:
            return await self.compute_first(req, first_raw)
        pipe = self.redis.pipeline(transaction=False)
        for cmd in self.first_commands(req):
            pipe.execute_command(*cmd)
        pl = self.plan(req, await pipe.execute())
        await self.second(pl)
        return await self.finish(pl.req, self.choose(pl))


    def first_reads(self, req: Request) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the bounded view's ``FIRST_LUA`` for ``req`` (also the tail of ``COLD_LUA``'s)."""
        keys = [cmd[1] for cmd in self.first_commands(req)]
        templates = [half for src in LIST_SOURCES for half in self.list_key("\0", src, req).split("\0")]
        return keys, [self.recent_of(req), min(req.recent_n, self.recent_of(req)), self.candidates, self.list_k,
                      req.recent_decay, len(self.trend_keys(req)), USER_MF, *templates]

    async def compute_first(self, req: Request, raw: list[Any] | None = None) -> Result:
        """Round trips (1) and (2) of a bounded view in ONE script call (``FIRST_LUA``: every list source
        summed in Redis, the weighed ones kept; none when ``raw`` is its reply already), the cohorts'
        lists when weighed and known, then (3)."""
        if raw is None:
            keys, args = self.first_reads(req)
            raw = await self.first_script(keys=keys, args=args)
        lists = raw[FIRST_USER_READS + len(self.trend_keys(req)) + 1:]  # after the user's, trending, popular
        pl = self.plan(req, raw[:FIRST_USER_READS + len(self.trend_keys(req)) + 1])
        knn = {src: (flat[0::2], float_array(flat[1::2])) for src, flat in zip(LIST_SOURCES, lists, strict=True)
               if src in pl.list_sources}
        cohort = await self.cohort_lists(pl.cohorts, self.candidates) if pl.cohorts else None
        self.absorb(pl, knn, None, cohort)
        return await self.finish(pl.req, self.choose(pl))
