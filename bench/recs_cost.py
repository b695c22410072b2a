"""Cost of one recommendation request: Redis commands and API-process CPU, per route.

    .venv/bin/python -m bench.recs_cost [--n 2000] [--repeat 3] [--skip-seed]

Seeds MovieLens-sized state under the Redis prefix ``benchrc`` (2,000 items in 20 categories with
catalog ``meta`` hashes and filter records; per item top-100 ``cooc``, ``content`` and ``ease``
neighbours and top-100 ``bought``; 1,000 users with a 50-item sequence, 100 seen items, 200 MF and
200 EASE candidates; popular and trending lists over the catalog), then measures, in-process:

- ``generate`` (the ``Recommender`` only): CPU per request and Redis commands per request; without
  ``--pools``: the whole ranking, and the bounded first pass the API answers a pool-able request with
  when it finds no pool (``AURA_RECS_FIRST_PASS_*``);
- the routes through the ASGI app (no HTTP server, auth disabled so that only the recommendation
  logic and FastAPI's own work are counted): hybrid ``/users/{u}``, ``/similar/{i}``, ``/also-bought/{i}``.

``--pools``: the measured users' hybrid candidate pools are first ranked with the stream's code
(streams/usercands.py, CPU per user printed), so the hybrid cases read the pools (without it they
measure the whole ranking, plus the one call that finds no pool).

CPU is ``time.process_time`` of this process (Redis' own CPU is not included). Commands are counted
by wrapping redis-py's pipeline ``execute`` and the client's ``execute_command``. Prints medians of
``--repeat`` runs. The same file runs against an older checkout (``PYTHONPATH=<tree>``) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from typing import Any

from aura.settings import Settings

N_USERS, N_ITEMS, N_CATS = 1000, 2000, 20


def seed(s: Settings) -> None:
    import numpy as np

    from aura.bootstrap import redis_sync
    from aura.keys import RedisKeys
    from aura.state.cooccurrence import USER_MF, encode_vector

    r, k, rng = redis_sync(s), RedisKeys(s.redis.prefix), random.Random(7)
    for key in r.scan_iter(f"{s.redis.prefix}:*", count=1000):
        r.delete(key)
    items = [f"i{n}" for n in range(N_ITEMS)]
    filters_key = getattr(k, "recs_item_filters", lambda: None)()
    pipe = r.pipeline(transaction=False)
    for n, i in enumerate(items):
        cats = [f"c{n % N_CATS}"] + ([f"c{(n * 7) % N_CATS}"] if n % 3 == 0 else [])
        price, avail = 5 + n % 50, n % 17 != 0
        pipe.hset(k.recs_item_meta(i), mapping={"title": f"item {n}", "categories": json.dumps(cats),
                                               "price": repr(float(price)), "available": "1" if avail else "0"})
        if filters_key:
            pipe.hset(filters_key, i, f"{int(avail)}|{float(price)!r}|" + "\x1f".join(cats))
        for src in ("cooc", "content", "ease", "bought"):
            pipe.zadd(k.recs_item_similar(i, src), {j: rng.random() for j in rng.sample(items, 100) if j != i})
        if n % 200 == 0:
            pipe.execute()
    pipe.zadd(k.recs_popular(), {i: rng.random() * 1000 for i in items})
    pipe.zadd(k.recs_trending(), {i: rng.random() * 10 for i in items})
    nrng = np.random.default_rng(7)  # MF factors (32 and a bias) of every item
    for start in range(0, len(items), 1000):
        pipe.hset(k.recs_mf_items(), mapping={i: encode_vector(nrng.standard_normal(33).astype(np.float32) * 0.1)
                                              for i in items[start:start + 1000]})
    for u in range(N_USERS):
        user = f"u{u}"
        hist = rng.sample(items, 100)
        pipe.rpush(k.recs_user_seq(user), *[f"{i}|1|{10_000 - n}|0" for n, i in enumerate(hist[:50])])
        pipe.zadd(k.recs_user_seen(user), {i: n for n, i in enumerate(hist)})
        pipe.hset(k.recs_user_state(user), USER_MF, encode_vector(nrng.standard_normal(32).astype(np.float32) * 0.1))
        pipe.zadd(k.recs_user_batch(user, "ease"), {i: rng.random() for i in rng.sample(items, 200)})
        if u % 100 == 0:
            pipe.execute()
    pipe.execute()
    r.close()


class Counter:
    """Counts Redis commands sent by redis.asyncio (pipelines and direct calls)."""

    def __init__(self) -> None:
        import redis.asyncio.client as c

        self.n = 0
        real_exec, real_cmd = c.Pipeline.execute, c.Redis.execute_command
        counter = self

        async def execute(pipe: Any, *a: Any, **kw: Any) -> Any:
            counter.n += len(pipe.command_stack)
            return await real_exec(pipe, *a, **kw)

        async def execute_command(client: Any, *a: Any, **kw: Any) -> Any:
            counter.n += 1
            return await real_cmd(client, *a, **kw)

        c.Pipeline.execute = execute  # type: ignore[method-assign]
        c.Redis.execute_command = execute_command  # type: ignore[method-assign]


def measure_generate(s: Settings, users: list[str], n: int, counter: Counter,
                     first_pass: bool = False) -> dict[str, float]:
    from aura.bootstrap import redis_async
    from aura.keys import RedisKeys
    from aura.ranking.reader import Recommender
    from aura.ranking.request import Request

    async def run() -> dict[str, float]:
        r = redis_async(s)
        if first_pass:  # as the API builds it: pools on demand, the bounded first pass on a miss
            rec = Recommender(r, RedisKeys(s.redis.prefix), candidates=s.recs.candidates, wanted_placements=["default"],
                              wanted_max=s.recs.user_cands_wanted_max,
                              first_pass=(s.recs.first_pass_candidates, s.recs.first_pass_list_k,
                                          s.recs.first_pass_recent))
        else:
            rec = Recommender(r, RedisKeys(s.redis.prefix), candidates=s.recs.candidates)
        reqs = [Request(users[u % len(users)]) for u in range(n)]
        for q in reqs[:100]:
            await rec.recommend(q)
        c0, cpu, wall = counter.n, time.process_time(), time.perf_counter()
        for q in reqs:
            await rec.recommend(q)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await r.aclose()
        return {"cpu_ms": cpu / n * 1000, "wall_ms": wall / n * 1000, "commands": (counter.n - c0) / n}

    return asyncio.run(run())


def measure_route(s: Settings, paths: list[str], n: int, counter: Counter) -> dict[str, float]:
    from bench.http_load import asgi_get
    from serving.app import create_app

    app = create_app(s)

    async def call(path: str) -> int:
        return await asgi_get(app, path)

    async def run() -> dict[str, float]:
        async with app.router.lifespan_context(app):
            for i in range(100):
                status = await call(paths[i % len(paths)])
                assert status == 200, status
            c0, cpu, wall = counter.n, time.process_time(), time.perf_counter()
            for i in range(n):
                await call(paths[i % len(paths)])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            return {"cpu_ms": cpu / n * 1000, "wall_ms": wall / n * 1000, "commands": (counter.n - c0) / n}

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-seed", action="store_true")
    ap.add_argument("--prefix", default="", help="measure on existing state (e.g. a `bench.movielens --keep` "
                    "run's prefix: users 1..943, items 1..1682) instead of seeding")
    ap.add_argument("--pools", action="store_true", help="first rank the measured users' hybrid pools with the "
                    "stream's code (streams/usercands.py; prints its CPU per user), so the hybrid cases read them")
    a = ap.parse_args(argv)
    p = a.prefix or "benchrc"
    s = Settings().replace(redis_prefix=p, topic_prefix=p, consumer_group=p, auth_enabled=False)
    import aura.ranking.reader as code

    print(f"code: {os.path.dirname(os.path.dirname(os.path.dirname(code.__file__)))}; load average {os.getloadavg()}")
    if not (a.skip_seed or a.prefix):
        t = time.perf_counter()
        seed(s)
        print(f"seeded {N_USERS} users, {N_ITEMS} items in {time.perf_counter() - t:.1f}s")
    counter = Counter()
    users = [str(u) for u in range(1, 944, 3)] if a.prefix else [f"u{u}" for u in range(0, N_USERS, 7)]
    items = [str(i) for i in range(1, 1683, 7)] if a.prefix else [f"i{i}" for i in range(0, N_ITEMS, 7)]
    if a.pools:
        from bench.http_load import seed_pools

        seed_pools(s, users)
    cases: dict[str, Any] = {
        "generate (Recommender only, hybrid)": lambda: measure_generate(s, users, a.n, counter),
        "generate (hybrid, no pool: first pass)": lambda: measure_generate(s, users, a.n, counter, True),
        "GET /recommendations/users/{u} (hybrid)": lambda: measure_route(
            s, [f"/v1/recommendations/users/{u}?limit=10" for u in users], a.n, counter),
        "GET /recommendations/similar/{i}": lambda: measure_route(
            s, [f"/v1/recommendations/similar/{i}?limit=10" for i in items], a.n, counter),
        "GET /recommendations/also-bought/{i}": lambda: measure_route(
            s, [f"/v1/recommendations/also-bought/{i}?limit=10" for i in items], a.n, counter),
    }
    for name, fn in cases.items():
        runs = [fn() for _ in range(a.repeat)]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"{name:42s} {med['cpu_ms']:.3f} ms CPU/request, {med['commands']:.1f} Redis commands/request "
              f"(sequential wall {med['wall_ms']:.3f} ms)", flush=True)
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
