"""Redis bytes per user of the profile state, at ``--users`` synthetic users.

    .venv/bin/python -m bench.memory --users 100000 --events-per-user 8 [--layouts packed,legacy,texthash,blobhash]
    .venv/bin/python -m bench.memory --users 100000 --events-per-user 8 --replicate 10 --sweep   # 1M users

Each synthetic user gets a demo session history (``--events-per-user`` events on average) folded by
the real ``fold_user``. Layout ``packed`` is what the worker writes (one string per user, written with
the real compare-and-set script of ``ProfileStore``); the others are written only to compare, from the
same folded profiles, one after the other in the same run:
``legacy`` = the first version's three keys per user (counts hash, recent list, profile hash with text
fields; floats at 6 significant digits as that version kept them), ``texthash`` = one small hash per
user with short field names and text values (listpack-encoded), ``blobhash`` = the packed value as
the only field of a hash. Analytics and segment sets are not per user and are left out. Reports
MEMORY USAGE summed over every user key (exact per key, includes Redis' key overhead), the used_memory
delta (noisy when the Redis is shared with other work), and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np

from aura import bootstrap
from aura.demo import Storefront
from aura.keys import RedisKeys
from aura.settings import get_settings
from aura.state import profile_codec
from aura.state.profile_codec import ACTION_CODES
from aura.state.profiles import ItemAttrs, Profile, ProfileConfig
from bench.pipeline import bench_settings, cleanup_redis
from schemas.events import Behavior
from streams import profiles
from streams.intake import Accepted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--events-per-user", type=float, default=12.0)
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--layouts", default="packed", help="comma list of packed,legacy,texthash,blobhash")
    ap.add_argument("--replicate", type=int, default=1,
                    help="write each folded profile under this many user ids (e.g. 100k folded x 10 = 1M users with "
                         "the same distribution, without folding 8M events)")
    ap.add_argument("--sweep", action="store_true",
                    help="time a dry-run idle sweep (streams/lifecycle.py: SCAN + read + decide) over the packed keys")
    ap.add_argument("--keep", action="store_true", help="leave the bench prefix's other keys in Redis")
    a = ap.parse_args()
    s = bench_settings(get_settings())
    keys = RedisKeys(s.redis.prefix)
    r = bootstrap.redis_sync(s)
    cfg = ProfileConfig.from_settings(s)
    shop = Storefront(seed=5, n_users=a.users, n_items=a.items, user_prefix="m")
    items = {it.item_id: ItemAttrs(it.category, it.brand, it.price) for it in shop.items}
    script = r.register_script(profiles.APPLY_LUA)
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
    if a.replicate > 1:
        folded = list(state.items())
        state = {u if k == 0 else f"{u}r{k}": p for k in range(a.replicate) for u, p in folded}
    n = len(state)
    print(f"users={n} events={off} fold={fold_s:.1f}s avg_recent_items="
          f"{sum(len(p.recent) for p in state.values()) / n:.1f} "
          f"avg_affinity_keys={sum(len(p.aff) for p in state.values()) / n:.1f} "
          f"avg_packed_value={sum(len(profile_codec.pack(p)) for p in state.values()) / n:.0f} bytes")
    for layout in a.layouts.split(","):
        measure(r, keys, state, layout, script, a.sweep and layout == "packed", s, cfg)
    print(f"bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if not a.keep:
        cleanup_redis(s)


def legacy_keys(keys: RedisKeys, u: str) -> list[str]:
    """The first version's key names (three per user)."""
    return [f"{keys.prefix}:user:{{{u}}}:counts", f"{keys.prefix}:user:{{{u}}}:recent",
            f"{keys.prefix}:user:{{{u}}}:profile"]


def layout_keys(keys: RedisKeys, u: str, layout: str) -> list[str]:
    if layout == "legacy":
        return legacy_keys(keys, u)
    return [keys.user_state(u) if layout == "packed" else f"{keys.prefix}:{layout[0]}:{{{u}}}"]


def write(pipe: Any, keys: RedisKeys, u: str, p: Profile, layout: str, script: Any) -> None:
    p.version = 1
    if layout == "packed":
        script(keys=[keys.user_state(u)], args=profiles.lua_args(None, p), client=pipe)
        return
    (k,) = layout_keys(keys, u, layout) if layout != "legacy" else [None]
    if layout == "blobhash":
        pipe.hset(k, "d", profile_codec.pack(p))
    elif layout == "texthash":  # one hash, short names, text values
        h = {f"c{ACTION_CODES.index(a) if a in ACTION_CODES else a}": n for a, n in p.counts.items()}
        h |= {f"o{part}": off for part, off in p.fences.items()}
        doc = profile_codec.durable_doc(p)
        doc = {k2[0] if not k2.startswith("a:") else "a" + profile_codec._aff_key(k2[2:]): v for k2, v in doc.items()
               if v not in ("", "0")}
        for k2 in list(doc):
            if k2.startswith("a") and len(k2) > 1 or k2 == "e":
                doc[k2] = f"{float(doc[k2]):.7g}"
        h |= {"v": 1, "f": p.first_seen, "l": p.last_seen, "r": "\x1f".join(p.recent), **doc}
        pipe.hset(k, mapping=h)
    else:  # legacy: three keys, text fields (as written before this format)
        ck, rk, pk = legacy_keys(keys, u)
        counts = {**p.counts, "first_seen": p.first_seen, "last_seen": p.last_seen, "_v": 1,
                  **{f"_off:{part}": off for part, off in p.fences.items()}}
        pipe.hset(ck, mapping=counts)
        if p.recent:
            pipe.rpush(rk, *p.recent)
        doc = {k2: (f"{float(v):.6g}" if k2 == "eng" or k2.startswith("a:") else v)
               for k2, v in profile_codec.durable_doc(p).items()}
        pipe.hset(pk, mapping=doc)


def time_sweep(s: Any, keys: RedisKeys, cfg: ProfileConfig, n: int) -> None:
    """A dry-run pass of the idle sweep over the packed keys (reads and decisions, no writes)."""
    import asyncio

    from streams import lifecycle

    class ReadOnly(profiles.ProfileStore):
        def __init__(self, redis: Any) -> None:  # reads only: no Cassandra statements
            self.redis, self.keys, self.cfg = redis, keys, cfg

    async def run() -> tuple[float, Any]:
        redis = bootstrap.redis_async(s)
        t0 = time.monotonic()
        res = await lifecycle.sweep(ReadOnly(redis), int(time.time() * 1000),
                                    s.profiles.lifecycle_sweep_batch, dry_run=True)
        took = time.monotonic() - t0
        await redis.aclose()
        return took, res

    took, res = asyncio.run(run())
    print(f"[packed] idle sweep dry run: {res.scanned} profiles in {took:.1f} s ({res.scanned / took:,.0f}/s), "
          f"{res.changed} would move to at-risk/churned (of {n})")


def measure(r: Any, keys: RedisKeys, state: dict[str, Profile], layout: str, script: Any, sweep: bool = False,
            s: Any = None, cfg: Any = None) -> None:
    before = r.info("memory")["used_memory"]
    pipe = r.pipeline(transaction=False)
    for i, (u, p) in enumerate(state.items()):
        write(pipe, keys, u, p, layout, script)
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    after = r.info("memory")["used_memory"]
    users = list(state)
    n = len(users)
    width = len(layout_keys(keys, users[0], layout))
    per_kind = [0] * width
    pipe = r.pipeline(transaction=False)
    for i, u in enumerate(users):
        for k in layout_keys(keys, u, layout):
            pipe.memory_usage(k, samples=0)
        if i % 2000 == 1999 or i == n - 1:
            for j, x in enumerate(pipe.execute()):
                per_kind[j % width] += x or 0
    total = sum(per_kind)
    if sweep:
        time_sweep(s, keys, cfg, n)
    enc = r.object("encoding", layout_keys(keys, users[0], layout)[-1])
    print(f"[{layout}] redis MEMORY USAGE: {total / n:.0f} bytes/user -> {total / n * 1e6 / 2**30:.3f} GiB per "
          f"1M users; used_memory delta {(after - before) / n:.0f} bytes/user (noisy if the Redis is shared); "
          f"keys/user {width}, encoding of the last key: {enc}"
          + (f"; by key: counts={per_kind[0] / n:.0f} recent={per_kind[1] / n:.0f} profile={per_kind[2] / n:.0f}"
             if width == 3 else ""))
    pipe = r.pipeline(transaction=False)
    for i, u in enumerate(users):
        pipe.unlink(*layout_keys(keys, u, layout))
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


if __name__ == "__main__":
    main()
