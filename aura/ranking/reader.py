"""The API's reads of the ranking: ``Recommender`` serves a request from the user's precomputed candidate
pool when the pool answers it exactly, and takes the whole ranking (aura/ranking/ranker.py) otherwise;
similar items / also bought.

Per-user pools: the worker (streams/usercands.py) ranks each active user's pool (the best
``pool_size(10)`` candidates after the blend and the seen/id filters; aura/state/pools.py) with the
``Ranker`` stages and stores it. ``recommend`` serves a request the pool answers exactly
(``precomputable``) from it in ONE script call (``CANDS_LUA``: the placement, the pool's head, the
head's filter records, the user's fence and explicit preferences) when the pool was ranked from the
user's current state and the placement's current weights (``from_precomputed``); a request that finds
no usable pool marks the user as wanting one and is answered by a bounded first pass (``Ranker.bounded``:
the heads of the lists, the newest items, no "users like you"), so that a user's first request does
not pay for the whole ranking: the pool read and the first pass's reads are ONE script call
(``COLD_LUA``, the reads only made on a miss), then one HMGET of the best candidates' filter records.
Similar items / also bought: ONE script call (``SIMILAR_LUA``; ``Recommender.similar``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aura.keys import RedisKeys
from aura.ranking.blend import method_weights, normalise, parsed_json, parsed_weights, similar_read, similar_reference
from aura.ranking.factors import ItemFactors
from aura.ranking.preferences import PREF_FIELDS, parse, personalise
from aura.ranking.ranker import Ranker
from aura.ranking.request import Request, Result, needs_whole_pool
from aura.ranking.scripts import CANDS_LUA, COLD_LUA, SIMILAR_LUA
from aura.ranking.vector import flat_scores, rank_pool
from aura.state.pools import CANDS_FIELDS, CANDS_LIMIT, CANDS_REST, CANDS_SEP, pool_size, wanted_member


def precomputable(req: Request) -> bool:
    """Whether the stream's pool for (user, placement) answers ``req`` exactly: a hybrid request without
    an item on screen, categories or id filters, seen items excluded, default recency settings and a
    pool of the same size. Price and stock filters, boosts and diversity work on the pool as usual."""
    f = req.filters
    return bool(req.user_id and req.method == "hybrid" and not req.context_item and not req.preferred_categories
                and f.categories is None and f.exclude_seen and not f.exclude_ids and f.include_ids is None
                and pool_size(req.limit) == pool_size(CANDS_LIMIT) and req.recent_n == 10
                and req.recent_decay == 0.8 and req.batch_model == "ease")


class Recommender(Ranker):
    """Reads precomputed state and ranks; one per API process (stateless between requests)."""

    def __init__(self, redis: Any, keys: RedisKeys, candidates: int = 200, list_k: int = 50,
                 wanted_placements: Iterable[str] = (), wanted_max: int = 0, refresh_ms: int = 0,
                 first_pass: tuple[int, int, int] | None = None, factors: ItemFactors | None = None) -> None:
        super().__init__(redis, keys, candidates=candidates, list_k=list_k, factors=factors)
        # pools on demand: a request of these placements that finds no usable pool marks the user as
        # wanting one (``CANDS_LUA``), bounded to ``wanted_max`` (0 or no placements: never marks)
        self.wanted_placements = frozenset(wanted_placements) if wanted_max > 0 else frozenset()
        self.wanted_max = wanted_max
        self.refresh_ms = refresh_ms  # a pool served older than this is marked for re-ranking (0: never)
        # similar items: the filter hash lives in its own slot, so the Cluster path has two round trips
        self.similar_script = None if self.cluster else redis.register_script(SIMILAR_LUA)
        # the stream's per-user pool: its hash is in the user's slot, the placement and filter hashes
        # elsewhere, so the Cluster path has two round trips
        self.cands_script = None if self.cluster else redis.register_script(CANDS_LUA)
        # the pool read that also brings the first pass's reads on a miss (placements with a first pass)
        self.cold_script = None if self.cluster else redis.register_script(COLD_LUA)
        # the bounded first pass (candidates, list_k, recent; ``Ranker.bounded``) of a request that found
        # no usable pool and marked it wanted: the worker's pool serves the next ones (None: whole ranking)
        self.first_pass = self.bounded(*first_pass) if first_pass and self.wanted_placements else None

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

    async def recommend(self, req: Request) -> Result:
        """The user's precomputed candidate pool (streams/usercands.py) when it answers this request
        exactly; when it could but there is no usable pool yet (the request marked it wanted), the
        bounded first pass (``first_pass``); else the whole ranking (``compute``)."""
        if precomputable(req):
            first = self.first_pass if req.placement in self.wanted_placements else None
            got = await self.from_precomputed(req, first=first)
            if isinstance(got, Result):
                return got
            if first is not None:  # marked wanted: the pool answers the next ones
                return await first.compute(req, got)  # with the reads the pool call brought (None: read now)
        return await self.compute(req)

    async def from_precomputed(self, req: Request, whole: bool = False,
                               first: Ranker | None = None) -> Result | list[Any] | None:
        """The pool the stream kept for (user, placement): ONE script call (placement, the pool's head
        and the head's filter records, the user's recommender fence; Redis Cluster: a pipeline, then one
        HMGET). None when there is no pool, when it was ranked before the user's last applied event (its
        fence ``off`` is not the user's ``_off``: the stream has not re-ranked it yet) or with other
        weights than the placement's current ones. ``whole``: read the whole pool (boosts and diversity
        look at every candidate; the filters dropped so many of the head that it cannot fill the page).
        ``first`` (the bounded first pass): on a miss, the same call reads what it needs (``COLD_LUA``)
        and that reply is returned instead of None, for ``first.compute``."""
        k = self.keys
        whole = whole or needs_whole_pool(req)
        head = pool_size(req.limit) if whole else max(3 * req.limit, 30)
        uid = req.user_id or ""
        ckey = k.recs_user_cands(uid, req.placement)
        mark = self.wanted_max if req.placement in self.wanted_placements else 0
        member = wanted_member(req.placement, uid)
        now_ms = int(time.time() * 1000)
        cold: list[Any] | None = None
        if self.cands_script is not None:
            keys = [k.recs_placement(req.placement), ckey, k.recs_item_filters(), k.recs_user_state(uid),
                    k.recs_cands_wanted(), k.user_attrs(uid)]
            args = [head, member, now_ms, mark, self.refresh_ms, int(whole)]
            if first is not None and mark and not whole:
                fkeys, fargs = first.first_reads(req)
                reply = await self.cold_script(keys=keys + fkeys, args=args + fargs)
                batch_read = first.lists_of(req)  # the batch lists the first pass's keys name
            else:
                reply = await self.cands_script(keys=keys, args=args)
            p, c, records, prefs_raw = reply[:4]
            cold = reply[4] if len(reply) > 4 else None
            marked = True
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.execute_command("HMGET", k.recs_placement(req.placement), "weights", "model_id", "version", "batch")
            pipe.execute_command("HMGET", ckey, *CANDS_FIELDS, "time", *CANDS_REST)
            pipe.execute_command("HGET", k.recs_user_state(uid), "_off")
            pipe.execute_command("HMGET", k.user_attrs(uid), *PREF_FIELDS)
            p, c, off, prefs_raw = await pipe.execute()
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
        wraw, model_id, version, batch = p
        self.batch_lists[req.placement], self.batch_at[req.placement] = batch or "ease", time.monotonic()
        if cold is not None and batch_read != self.lists_of(req):  # the placement's batch lists changed
            cold = None  # meanwhile: the first pass reads again with the current ones
        stored_weights, strategy, ids_blob, scores_blob, sources_blob, used, ranked_at, current, rest_len = c
        if ids_blob is None or ranked_at != (current or "-1"):  # none, or ranked before the user's last event
            if mark and not marked:  # (Redis Cluster: the wanted set is in its own slot)
                await self.mark_wanted(member, now_ms)
            return cold
        if parsed_json(stored_weights) != method_weights(wraw, req.placement, req.method):
            if mark:  # ranked with the placement's former weights: wanted again (rare)
                await self.mark_wanted(member, now_ms)
            return None
        weights = parsed_weights(used)  # the weights the ranking used ({"popular": 1} when nothing else answered)
        model = f"{model_id}:{version}" if model_id else ""
        if not ids_blob:
            return Result(items=[], strategy=strategy, weights=weights, model=model)
        ids = ids_blob.split(CANDS_SEP, head)  # the head (and the rest of the head, unsplit)
        more = len(ids) > head or int(rest_len or 0) > 0  # the pool holds more than the ids read
        if len(ids) > head:
            ids.pop()
        if records is None:
            records = await self.redis.execute_command("HMGET", k.recs_item_filters(), *ids)
        filters = personalise(req.filters, parse(*prefs_raw)) if any(prefs_raw) else req.filters
        ranked = rank_pool(ids, list(map(float, scores_blob.split(",", head)[:head])), records, set(), filters,
                           req.diversity, req.limit)
        if len(ranked) < req.limit and more and not whole:  # the filters dropped many: the whole pool, read
            return await self.from_precomputed(req, whole=True)  # again in one call (the same ranking)
        where = [ids.index(i) for i, _s in ranked]
        sources = sources_blob.split(CANDS_SEP, max(where, default=0) + 1)
        items = [(i, s, sources[j].split(",")) for (i, s), j in zip(ranked, where, strict=True)]
        return Result(items=items, strategy=strategy, weights=weights, model=model)

