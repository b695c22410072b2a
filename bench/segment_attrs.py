"""What segment rules over identity attributes cost the profile fold: per batch, the read of the
users' states (and, with attribute rules, of the attributes the rules name, in the same pipeline)
plus the pure fold and segment evaluation, timed with the built-in rules alone and with two
attribute segments added, alternately in one run (the built-in rules read exactly what they read
before attribute rules existed). Writes are left out: they do not change with attribute rules.

    python -m bench.segment_attrs --users 20000 --batch 2000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from dataclasses import replace

from aura import bootstrap
from aura.keys import RedisKeys
from aura.settings import Settings
from aura.state.profiles import ProfileConfig
from schemas.events import Behavior
from streams.intake import Accepted
from streams.profiles import ProfileStore, fold_user

ATTR_RULES = {"gold": [["attr.plan", "==", "gold"]],
              "teams": [["attr.plan", "in", ["gold", "platinum"]], ["attr.seats", ">=", 10], ["orders", ">=", 1]]}


async def one_pass(store: ProfileStore, batches: list[list[Accepted]]) -> float:
    """Microseconds per event of read + fold + evaluation over every batch."""
    events = 0
    t0 = time.perf_counter()
    for batch in batches:
        by_user: dict[str, list[Accepted]] = {}
        for a in batch:
            by_user.setdefault(a.event.user_id, []).append(a)
        users = sorted(by_user)
        states, attrs = await store.read_with_attrs(users)
        for u in users:
            fold_user(states[u], by_user[u], store.cfg, lambda _i: None, attrs.get(u))
        events += len(batch)
    return (time.perf_counter() - t0) * 1e6 / events


async def main(users: int, batch: int, runs: int) -> None:
    s = Settings().replace(redis_prefix=f"bench-segattrs-{uuid.uuid4().hex[:6]}")
    keys = RedisKeys(s.redis.prefix)
    redis = bootstrap.redis_async(s)
    base = ProfileConfig.from_settings(s)
    plans = ["gold", "silver", "platinum", "free"]
    try:
        pipe = redis.pipeline(transaction=False)
        for i in range(users):
            pipe.hset(keys.user_attrs(f"u{i}"), mapping={"x:plan": json.dumps(plans[i % 4]), "x:seats": str(i % 50),
                                                          "x:email": json.dumps(f"u{i}@example.com")})
        await pipe.execute()
        now = int(time.time() * 1000)
        evs = [Accepted(Behavior(event_id=f"e{n}", event_type="view", user_id=f"u{n % users}", item_id="i1",
                                 event_time=now + n), 0, n) for n in range(users * 2)]
        batches = [evs[i:i + batch] for i in range(0, len(evs), batch)]
        stores = {"built-in rules": _store(redis, keys, base.rules, base),
                  "with 2 attribute segments": _store(redis, keys, {**base.rules, **ATTR_RULES}, base)}
        got: dict[str, list[float]] = {k: [] for k in stores}
        for _ in range(runs):
            for name, store in stores.items():
                got[name].append(await one_pass(store, batches))
        medians = {k: statistics.median(v) for k, v in got.items()}
        for k, v in got.items():
            print(f"{k}: median {medians[k]:.1f} us/event (runs: {', '.join(f'{x:.1f}' for x in v)})")  # noqa: T201
        a, b = medians.values()
        print(f"ratio with attributes / without: {b / a:.2f}")  # noqa: T201
    finally:
        async for k in redis.scan_iter(match=f"{s.redis.prefix}:*", count=1000):
            await redis.delete(k)
        await redis.aclose()


class _NoSession:
    """Stands in for Cassandra: the timed path prepares statements but never writes."""

    def prepare(self, _cql: str) -> None:
        return None


def _store(redis: object, keys: RedisKeys, rules: dict, base: ProfileConfig) -> ProfileStore:
    return ProfileStore(redis, _NoSession(), keys, replace(base, rules=rules))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main(args.users, args.batch, args.runs))
