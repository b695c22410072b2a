"""Redis bytes per user of the profile state, at ``--users`` synthetic users.

    .venv/bin/python -m bench.memory --users 100000

Each synthetic user gets a demo session history (``--events-per-user`` events on average) folded by
the real ``fold_user`` and written with the real compare-and-set script of ``ProfileStore`` (the
same keys and encoding the worker writes; analytics and segment sets are not per user and are left
out). Reports MEMORY USAGE summed over every user key (exact per key, includes Redis' key overhead)
and the used_memory delta (noisy: the Redis is shared), and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from aura import bootstrap
from aura.demo import Storefront
from aura.layout import RedisKeys
from aura.settings import get_settings
from bench.pipeline import bench_settings, cleanup_redis
from schemas.events import Behavior
from streams import profiles
from streams.intake import Accepted
from streams.profiles import ItemAttrs, Profile, ProfileConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--events-per-user", type=float, default=12.0)
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--keep", action="store_true", help="leave the keys in Redis")
    a = ap.parse_args()
    s = bench_settings(get_settings())
    keys = RedisKeys(s.redis_prefix)
    r = bootstrap.redis_sync(s)
    cfg = ProfileConfig.from_settings(s)
    shop = Storefront(seed=5, n_users=a.users, n_items=a.items, user_prefix="m")
    items = {it.item_id: ItemAttrs(it.category, it.brand, it.price) for it in shop.items}
    script = r.register_script(profiles.APPLY_LUA)
    before = r.info("memory")["used_memory"]
    state: dict[str, Profile] = {}
    rng = np.random.default_rng(1)
    t0 = time.monotonic()
    n_events = int(a.users * a.events_per_user)
    off = 0
    start = int(time.time() * 1000) - 20 * 24 * 3600 * 1000
    for ev in shop.events(start):
        ev["user_id"] = shop.users[int(rng.integers(a.users))] if len(state) >= a.users else shop.users[len(state)]
        ctx = ev.get("context") or {}
        b = Behavior(event_id=ev["event_id"], event_type=ev["event_type"], user_id=ev["user_id"],
                     item_id=ev.get("item_id"), event_time=ev["event_time"], placement=ctx.get("placement"),
                     items=tuple(ev.get("items") or ()), raw=ev,
                     revenue=sum(x["quantity"] * x["unit_price"] for x in (ev.get("order") or {}).get("lines", [])))
        p = state.setdefault(b.user_id, Profile())
        profiles.fold_user(p, [Accepted(b, 0, off)], cfg, items.get)
        off += 1
        if off >= n_events and len(state) >= a.users:
            break
    fold_s = time.monotonic() - t0
    pipe = r.pipeline(transaction=False)
    for i, (u, p) in enumerate(state.items()):
        p.version = 1
        script(keys=[keys.user_counts(u), keys.user_recent(u), keys.user_profile(u)],
               args=profiles.lua_args(None, p), client=pipe)
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    after = r.info("memory")["used_memory"]
    per_kind = [0, 0, 0]
    pipe = r.pipeline(transaction=False)
    users = list(state)
    for i, u in enumerate(users):
        for k in (keys.user_counts(u), keys.user_recent(u), keys.user_profile(u)):
            pipe.memory_usage(k, samples=0)
        if i % 2000 == 1999 or i == len(users) - 1:
            got = pipe.execute()
            for j, x in enumerate(got):
                per_kind[j % 3] += x or 0
    total = sum(per_kind)
    n = len(state)
    recent = sum(len(p.recent) for p in state.values()) / n
    print(f"users={n} events={off} fold={fold_s:.1f}s avg_recent_items={recent:.1f} "
          f"avg_affinity_keys={sum(len(p.aff) for p in state.values()) / n:.1f}")
    print(f"redis MEMORY USAGE: {total / n:.0f} bytes/user -> {total / n * 1e6 / 2**30:.2f} GiB per 1M users")
    print("bytes/user by key: " + ", ".join(f"{name}={v / n:.0f}" for name, v in
                                            zip(("counts", "recent", "profile"), per_kind, strict=True)))
    print(f"redis used_memory delta: {(after - before) / n:.0f} bytes/user (shared instance: noisy)")
    print(f"bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if not a.keep:
        cleanup_redis(s)


if __name__ == "__main__":
    main()
