"""The worker's CPU on analytics, this tree against an older one side by side in one run.

    .venv/bin/python -m bench.analytics_cost [--data movielens|demo] [--events 30000] [--batch 2000]
        [--runs 5] [--against e4e1522] [--no-redis]

Two costs, both as CPU seconds of this process (``time.process_time``: the machine is shared):

- the fold of the profiles owner's count step, per 10,000 events: streams/analytics.py ``fold``
  plus the script arguments of every contribution (``lua_call``), batch after batch;
- a pass of the aggregates publisher over N touched buckets: aura/state/analytics.py
  ``read_buckets`` of every bucket the events touched, per grain, against the real Redis (the
  buckets are written first by the apply script under a fresh key prefix, deleted afterwards).
  Only the client's CPU is counted, not Redis's.

The older tree's ``streams/analytics.py`` and ``aura/state/analytics.py`` are loaded from git
(``--against``) as separate modules; every run checks that both trees give the same contributions,
script arguments and bucket totals (metric order included). Data: the MovieLens-100K ratings in
time order (bench/movielens.py ``load``; months of event time, so a batch touches many buckets), or
demo storefront events (every metric kind) with their event times stretched over 180 days. Events
go to 12 partitions by user, through the profile fold (streams/profiles.py) for their facts.
Prints medians of ``--runs`` per tree and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import types
import uuid
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from aura import bootstrap
from aura.keys import RedisKeys
from aura.settings import get_settings
from aura.state import analytics as state_new
from aura.state.profiles import ItemAttrs, Profile, ProfileConfig
from schemas.events import Behavior
from streams import analytics as fold_new
from streams import profiles
from streams.intake import Accepted

REPO_ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 12
DAY = 86_400_000


def old_modules(rev: str) -> tuple[types.ModuleType, types.ModuleType]:
    """``aura/state/analytics.py`` and ``streams/analytics.py`` of ``rev`` as modules of their own (the
    old fold imports the old state module)."""

    def load(name: str, path: str, subst: tuple[str, str] | None = None) -> types.ModuleType:
        src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO_ROOT, check=True, capture_output=True,
                             text=True).stdout
        if subst:
            src = src.replace(*subst)
        mod = types.ModuleType(name)
        mod.__file__ = f"{rev}:{path}"
        sys.modules[name] = mod  # dataclasses look their module up
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 (the repository's own code)
        return mod

    state = load("bench_old_state_analytics", "aura/state/analytics.py")
    fold = load("bench_old_streams_analytics", "streams/analytics.py",
                ("from aura.state.analytics import", "from bench_old_state_analytics import"))
    return state, fold


def movielens(n: int) -> tuple[list[Accepted], dict[str, str]]:
    from bench.movielens import load

    rows, catalog = load()
    offsets = [0] * PARTITIONS
    out = []
    for u, i, t in sorted(rows, key=lambda r: r[2])[:n]:
        p = zlib.crc32(u.encode()) % PARTITIONS
        out.append(Accepted(Behavior(f"{u}-{i}", "rating", u, i, t * 1000, value=1.0,
                                     raw={"event_type": "rating"}), p, offsets[p]))
        offsets[p] += 1
    return out, {i: (c["categories"] or [""])[0] for i, c in catalog.items()}


def demo(n: int) -> tuple[list[Accepted], dict[str, str]]:
    from bench.fold_floor import records
    from schemas.codec import codec
    from streams.intake import split

    now = int(time.time() * 1000)
    accepted, _dead = split(records(n, 20_000, seed=7), codec("behavior_event"), now)
    t0 = min(a.event.event_time for a in accepted)
    span = max(1, max(a.event.event_time for a in accepted) - t0)
    stretch = 180 * DAY / span  # the same order of events, over 180 days
    base = now - 200 * DAY
    out = [Accepted(replace(a.event, event_time=base + int((a.event.event_time - t0) * stretch)), a.partition,
                    a.offset) for a in accepted]
    return out, {}


def facts_of(acc: list[Accepted], categories: dict[str, str], batch: int) -> list[list[profiles.Fact]]:
    """The facts of each batch, as the profile fold hands them to the analytics fold."""
    cfg = ProfileConfig.from_settings(get_settings())
    users: dict[str, Profile] = {}
    lookup = {i: ItemAttrs(category=c) for i, c in categories.items() if c}
    out = []
    for start in range(0, len(acc), batch):
        by_user: dict[str, list[Accepted]] = {}
        for a in acc[start:start + batch]:
            by_user.setdefault(a.event.user_id, []).append(a)
        facts: list[profiles.Fact] = []
        for u, evs in by_user.items():
            facts += profiles.fold_user(users.setdefault(u, Profile()), evs, cfg, lookup.get)
        out.append(facts)
    return out


TTLS = {"minute": 172_800, "hour": 1_296_000, "day": 34_560_000}


def fold_cost(mod: Any, batches: list[list[profiles.Fact]], keys: RedisKeys) -> tuple[float, float, list[Any]]:
    """CPU seconds of the fold and of the script arguments over every batch, and the arguments."""
    args = []
    t_fold = t_args = 0.0
    for facts in batches:
        t0 = time.process_time()
        contributions = mod.fold(facts, {})
        t1 = time.process_time()
        args.append([mod.lua_call(keys, contributions[p], None, TTLS) for p in sorted(contributions)])
        t_fold += t1 - t0
        t_args += time.process_time() - t1
    return t_fold, t_args, args


async def write(r: Any, keys: RedisKeys, args: list[Any]) -> None:
    script = r.register_script(fold_new.APPLY_LUA)
    for batch in args:
        pipe = r.pipeline(transaction=False)
        for k, a in batch:
            await script(keys=k, args=a, client=pipe)
        assert all(await pipe.execute())
        await r.delete(*{k[0] for k, _a in batch})  # the fences: the next batch expects none again


async def read_cost(mod: Any, r: Any, keys: RedisKeys, touched: dict[str, list[int]]) -> tuple[float, list[Any]]:
    out: list[Any] = []
    t = time.process_time()
    for grain, starts in touched.items():
        out += await mod.read_buckets(r, keys, PARTITIONS, grain, starts)
    return time.process_time() - t, out


async def clean(r: Any, prefix: str) -> None:
    batch = []
    async for k in r.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(k)
        if len(batch) >= 1000:
            await r.delete(*batch)
            batch = []
    if batch:
        await r.delete(*batch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=("movielens", "demo"), default="movielens")
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--against", default="e4e1522", help="the older tree (a git revision)")
    ap.add_argument("--no-redis", action="store_true", help="the fold only")
    a = ap.parse_args()
    state_old, fold_old = old_modules(a.against)
    acc, categories = (movielens if a.data == "movielens" else demo)(a.events)
    batches = facts_of(acc, categories, a.batch)
    n = sum(len(f) for f in batches)
    keys = RedisKeys(f"benchan{uuid.uuid4().hex[:8]}")
    trees = {"old": (fold_old, state_old), "new": (fold_new, state_new)}

    fold_s: dict[str, list[float]] = {k: [] for k in trees}
    split_s: dict[str, list[tuple[float, float]]] = {k: [] for k in trees}
    ref = None
    for _ in range(a.runs):
        for name, (fmod, _smod) in trees.items():
            t_fold, t_args, args = fold_cost(fmod, batches, keys)
            fold_s[name].append(t_fold + t_args)
            split_s[name].append((t_fold, t_args))
            if ref is None:
                ref = args
            elif args != ref:
                raise SystemExit(f"the {name} fold's script arguments differ from the old tree's")
    assert ref is not None
    touched: dict[str, set[int]] = {g: set() for g in state_new.GRAINS}
    for batch in ref:
        for k, _args in batch:
            for key in k[1:]:
                parts = key.split(":")
                if parts[3] in touched:
                    touched[parts[3]].add(int(parts[4]))
    per_grain = {g: sorted(s) for g, s in touched.items()}
    print(f"{a.data}: {n} events, {len(batches)} batches of {a.batch}, {PARTITIONS} partitions; touched buckets "
          + ", ".join(f"{g} {len(s)}" for g, s in per_grain.items())
          + f"; {a.runs} runs, against {a.against}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, secs in fold_s.items():
        fold_only = statistics.median(x[0] for x in split_s[name]) / n * 1e4
        args_only = statistics.median(x[1] for x in split_s[name]) / n * 1e4
        runs = ", ".join(f"{s / n * 1e4:.3f}" for s in secs)
        print(f"  fold + script arguments, {name}: {statistics.median(secs) / n * 1e4:.3f} s CPU per 10,000 events "
              f"(fold {fold_only:.3f}, arguments {args_only:.3f}; runs {runs})")
    alone = {k: statistics.median(x[0] for x in v) for k, v in split_s.items()}
    both = statistics.median(fold_s["old"]) / statistics.median(fold_s["new"])
    print(f"  fold + arguments ratio old/new: {both:.2f} (fold alone {alone['old'] / alone['new']:.2f})")
    if a.no_redis:
        return

    async def publisher() -> None:
        r = bootstrap.redis_async(get_settings())
        try:
            await write(r, keys, ref)
            read_s: dict[str, list[float]] = {k: [] for k in trees}
            want = None
            for _ in range(a.runs):
                for name, (_fmod, smod) in trees.items():
                    secs, got = await read_cost(smod, r, keys, per_grain)
                    read_s[name].append(secs)
                    plain = [(b.grain, b.start, list(b.metrics.items()), list(b.users.items())) for b in got]
                    if want is None:
                        want = plain
                    elif plain != want:
                        raise SystemExit(f"the {name} reader's totals differ from the old tree's")
            nb = sum(len(s) for s in per_grain.values())
            for name, secs in read_s.items():
                print(f"  publisher read of {nb} touched buckets, {name}: {statistics.median(secs):.3f} s CPU "
                      f"({statistics.median(secs) / nb * 1e6:.0f} us per bucket; runs "
                      f"{', '.join(f'{s:.3f}' for s in secs)})")
            print(f"  read ratio old/new: {statistics.median(read_s['old']) / statistics.median(read_s['new']):.2f}")
        finally:
            await clean(r, keys.prefix)
            await r.aclose()

    asyncio.run(publisher())


if __name__ == "__main__":
    main()
