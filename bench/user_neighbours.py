"""Does the "users like you" source help? MovieLens-100K, on the state a `bench.movielens --keep` run
left in Redis (same split, same live state), with the user neighbours folded in-process by the same
store the worker uses (streams/neighbours.NeighbourStore, batches of 500 in time order, events keyed
to 12 partitions by user as in Kafka).

    .venv/bin/python -m bench.user_neighbours --prefix mlXXXXXXXX [--weights 0.1,0.3,1] [--users 0]

Then asks the API (in-process TestClient, auth off) for the hybrid at the default weights, the hybrid
with each ``users`` weight, and the ``users`` source alone; HR@10 and NDCG@10 as bench.movielens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
import zlib
from types import SimpleNamespace

from aura.settings import Settings
from bench.movielens import load, say
from jobs.algos import evaluate, leave_last_out


def fold_neighbours(s: Settings, train: list[tuple[str, str, int]], batch: int = 500) -> float:
    from aura.bootstrap import redis_async
    from aura.keys import RedisKeys
    from schemas.events import Behavior
    from streams.intake import Accepted
    from streams.neighbours import NeighbourStore

    offsets: dict[int, int] = {}
    events = []
    for n, (u, i, t) in enumerate(sorted(train, key=lambda r: r[2])):
        p = zlib.crc32(u.encode()) % 12
        offsets[p] = offsets.get(p, -1) + 1
        events.append(Accepted(Behavior(f"n{n}", "rating", u, i, t * 1000), p, offsets[p]))

    async def run() -> float:
        r = redis_async(s)
        keys = RedisKeys(s.redis.prefix)
        for pattern in ("recs:user:*:nbrs", "recs:user:*:nbstate", "recs:item:*:actors"):
            async for key in r.scan_iter(f"{s.redis.prefix}:{pattern}", count=1000):
                await r.delete(key)
        store = NeighbourStore(SimpleNamespace(settings=s, keys=keys, redis=r))
        t0 = time.monotonic()
        for start in range(0, len(events), batch):
            await store.apply(events[start:start + batch])
        await r.aclose()
        return time.monotonic() - t0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--weights", default="0.1,0.3,1")
    ap.add_argument("--users", type=int, default=0)
    ap.add_argument("--skip-fold", action="store_true")
    a = ap.parse_args(argv)
    s = Settings().replace(redis_prefix=a.prefix, topic_prefix=a.prefix, consumer_group=f"{a.prefix}-worker",
                 cassandra_keyspace="aura_bench_ml", auth_enabled=False)
    rows, _catalog = load()
    train, test = leave_last_out(rows)
    if not a.skip_fold:
        secs = fold_neighbours(s, train)
        say(f"user neighbours folded over {len(train)} events in {secs:.1f}s ({len(train) / secs:,.0f}/s)")
    from fastapi.testclient import TestClient

    from aura.bootstrap import redis_sync
    from aura.keys import RedisKeys
    from aura.ranking.blend import DEFAULT_WEIGHTS
    from serving.app import create_app

    redis, keys = redis_sync(s), RedisKeys(a.prefix)
    variants: dict[str, dict[str, float] | None] = {"hybrid (default weights)": None}
    for w in a.weights.split(","):
        variants[f"hybrid + users={w}"] = {**DEFAULT_WEIGHTS["default"], "users": float(w)}
    variants["users alone"] = {"users": 1.0}
    users = sorted(test, key=int)[: a.users or None]
    with TestClient(create_app(s)) as client:
        for name, weights in variants.items():
            placement = "default"
            if weights is not None:
                placement = f"bench-{uuid.uuid4().hex[:6]}"
                redis.hset(keys.recs_placement(placement), "weights", json.dumps(weights))
            recs = {}
            for u in users:
                r = client.post("/v1/recommendations/generate", json={
                    "user_id": u, "method": "hybrid", "limit": 10, "context": {"placement": placement},
                    "filters": {"exclude_seen": True, "in_stock_only": False}})
                r.raise_for_status()
                recs[u] = [x["item_id"] for x in r.json()["items"]]
            m = evaluate(recs, {u: test[u] for u in users}, 10)
            say(f"{name:28s} HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
