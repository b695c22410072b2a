"""The whole ranking of many users at once, in three pipelines instead of three round trips per user:
what the campaign drainer needs to personalise every message of a pass (streams/campaign_drain.py).

The same stages and answers as ``Ranker.compute`` (aura/ranking/ranker.py): (1) one pipeline of every
user's ``first_commands`` (the placement, trending and popular lists read once for all), (2) one
pipeline of every user's ``queue_second`` scripts, (3) one pipeline of every user's head of filter
records (``pool_head``). A user whose filters dropped so many of the head that it cannot fill the
request takes ``Ranker.finish``'s second read on its own (rare: the head holds 3x the limit).
Redis Cluster (the kNN script may not read lists of other slots): one ``compute`` per user.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aura.ranking.ranker import Ranker
from aura.ranking.request import Request, Result, pool_head, result_of
from aura.ranking.vector import rank_pool
from aura.state.pools import Pool

CLUSTER_CONCURRENCY = 32  # users ranked at once in Redis Cluster (one ``compute`` each)
PER_USER = 6  # the user's own commands among ``first_commands`` (recent, seen, MF factors, batch, neighbours, attrs)


async def compute_many(ranker: Ranker, reqs: list[Request]) -> list[Result]:
    """``Ranker.compute`` of every request (with a user and no item on screen), in order."""
    if not reqs:
        return []
    if ranker.cluster:
        gate = asyncio.Semaphore(CLUSTER_CONCURRENCY)

        async def one(r: Request) -> Result:
            async with gate:
                return await ranker.compute(r)

        return list(await asyncio.gather(*(one(r) for r in reqs)))
    await ranker.prepare({r.placement for r in reqs})
    pipe = ranker.redis.pipeline(transaction=False)
    shared: dict[tuple[Any, ...], int] = {}  # a command every request reads (placement, global lists): its reply
    layout: list[list[int]] = []  # per request: the position of each of its commands' replies
    n = 0
    for r in reqs:
        slots: list[int] = []
        for j, cmd in enumerate(ranker.first_commands(r)):
            own = 1 <= j <= PER_USER
            if own or cmd not in shared:
                pipe.execute_command(*cmd)
                if not own:
                    shared[cmd] = n
                slots.append(n)
                n += 1
            else:
                slots.append(shared[cmd])
        layout.append(slots)
    raw = await pipe.execute()
    plans = [ranker.plan(r, [raw[s] for s in slots]) for r, slots in zip(reqs, layout, strict=True)]
    pipe = ranker.redis.pipeline(transaction=False)
    for p in plans:
        ranker.queue_second(pipe, p)
    replies = await pipe.execute() if len(pipe) else []
    pools: list[Pool] = []
    pos = 0
    for p in plans:
        k = ranker.queued_replies(p)
        ranker.absorb_queued(p, replies[pos:pos + k])
        pos += k
        pools.append(ranker.choose(p))
    heads = [pool_head(p.req, pool) if pool.ids else None for p, pool in zip(plans, pools, strict=True)]
    pipe = ranker.redis.pipeline(transaction=False)
    for h in heads:
        if h is not None:
            pipe.execute_command("HMGET", ranker.keys.recs_item_filters(), *h[1])
    records = iter(await pipe.execute() if len(pipe) else [])
    out: list[Result] = []
    for p, pool, h in zip(plans, pools, heads, strict=True):
        if h is None:
            out.append(Result(items=[], strategy=pool.strategy, weights=pool.weights, model=pool.model))
            continue
        _head, ids, scores = h
        req = p.req
        ranked = rank_pool(ids, scores, next(records), set(), req.filters, req.diversity, req.limit)
        if len(ranked) < req.limit and len(pool.ids) > len(ids):  # the head could not fill it: the whole pool
            out.append(await ranker.finish(req, pool))
            continue
        out.append(result_of(pool, ranked))
    return out
