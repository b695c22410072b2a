"""Profile search latency: the indexed copy (this tree) against the Redis scan (an older tree), side by side.

    .venv/bin/python -m bench.profile_search --old-tree <worktree of the scan's commit> [--users 50000] [--reps 40]

Seeds ``--users`` profiles under the Redis prefix ``bpsearch`` (profile state: last event spread
over 60 days, segments buyer ~10 % / vip ~1 % and their member sets; identity hash: country of 20,
plan of 5, age 18-80)
and copies them into the searchable table with the backfill job (jobs/profile_search.py, the rows
the stream writes), in the keyspace ``aura_bench_psearch``. Then starts one ``aura api`` of each tree
on the same data and, for each search, alternates old and new ``--reps`` times, timing what a client
needs for the first page of up to 50 matches: one request to the index; to the scan, requests
following its cursor until 50 matches are found or the scan ends (its pages are bounded by the
profiles and SCAN calls they look at, so a selective search takes several). Prints p50/p99 (ms)
and the median ratio of each pair. The shared Redis holds other keys too: the scan walks them all.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from aura import bootstrap
from aura.keys import keys_for
from aura.settings import REPO_ROOT, Settings
from aura.state.profile_codec import pack
from aura.state.profiles import Profile
from bench.http_load import _free_port, make_key, start_api
from infra.migrate import drop_topics, migrate
from jobs.profile_search import Backfill

DAY = 24 * 3600 * 1000
COUNTRIES = ["US", "FR", "DE", "SE", "ES", "IT", "NL", "BE", "PL", "PT", "GB", "IE", "DK", "NO", "FI",
             "AT", "CH", "CZ", "GR", "HU"]
PLANS = ["free", "basic", "plus", "gold", "team"]


def seed(s: Settings, n: int, now: int) -> int:
    """Seed Redis (deterministic: a rerun writes the same data) and, once, the index; returns the
    seeding's "now" (a rerun keeps the first one, so Redis and the index agree)."""
    redis = bootstrap.redis_sync(s)
    keys = keys_for(s)
    marker = keys.prefix + ":bench:seeded"
    seeded, _, then = (redis.get(marker) or "").partition(":")
    now = int(then) if seeded == str(n) else now
    rng = random.Random(7)
    pipe = redis.pipeline(transaction=False)
    for i in range(n):
        u = f"bp{i:06d}"
        last = now - int(rng.random() * 60 * DAY)
        segs = [x for x, p in (("buyer", 0.10), ("vip", 0.01)) if rng.random() < p]
        for seg in segs:  # the member sets the scan pages through for a segment search
            pipe.sadd(keys.segment_members(seg), u)
        p = Profile(counts={"view": rng.randint(1, 40)}, first_seen=last - DAY, last_seen=last, version=1,
                    stage=rng.choice(["new", "active", "reactivated"]), segments=segs, eng=rng.random() * 50,
                    eng_t=last)
        pipe.execute_command("SET", keys.user_state(u), pack(p))
        pipe.hset(keys.user_attrs(u), mapping={"x:country": f'"{rng.choice(COUNTRIES)}"',
                                               "x:plan": f'"{rng.choice(PLANS)}"', "x:age": str(rng.randint(18, 80))})
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    if seeded == str(n):
        print(f"{n} profiles already in the index")  # noqa: T201
        return now
    session = bootstrap.cassandra_session(s)
    try:
        t0 = time.perf_counter()
        Backfill(s, session, redis).run(batch=1000, restart=True)
        print(f"backfill of {n} profiles: {time.perf_counter() - t0:.1f} s")  # noqa: T201
    finally:
        session.cluster.shutdown()
    redis.set(marker, f"{n}:{now}")
    return now


def first_matches(client: httpx.Client, base: str, params: dict[str, Any], old: bool, want: int = 50
                  ) -> tuple[float, int, int]:
    """(ms, matches, requests) to get the first ``want`` matches (old: following the scan's cursor)."""
    t0 = time.perf_counter()
    found = requests = 0
    cursor: Any = 0 if old else None
    while True:
        q = {**params, "limit": want}
        if cursor:
            q["cursor"] = cursor
        r = client.get(f"{base}/v1/profiles", params=q)
        requests += 1
        if r.status_code != 200:
            return math.nan, r.status_code, requests
        page = r.json()
        found += len(page["profiles"])
        cursor = page["next_cursor"]
        if not old or found >= want or not cursor:
            return (time.perf_counter() - t0) * 1000, found, requests


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench.profile_search")
    ap.add_argument("--old-tree", type=Path, required=True, help="checkout with the Redis-scan search")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    s = Settings().replace(cassandra_keyspace="aura_bench_psearch", redis_prefix="bpsearch", topic_prefix="bpsearch")
    migrate(s)
    drop_topics(s, "bpsearch")  # the API needs none of them
    now = seed(s, args.users, int(time.time() * 1000))
    token = make_key(s)
    work = Path(tempfile.mkdtemp(prefix="bench-psearch-"))
    ports = {"old": _free_port(), "new": _free_port()}
    procs = {"old": start_api(s, ports["old"], 1, work / "old.log", tree=args.old_tree.resolve()),
             "new": start_api(s, ports["new"], 1, work / "new.log", tree=REPO_ROOT)}
    searches = {
        "no filter (list)": {},
        "segment=vip (~1 %)": {"segment": "vip"},
        "attribute country:SE (5 %)": {"attribute": "country:SE"},
        "country:SE and plan:gold (1 %)": {"attribute": ["country:SE", "plan:gold"]},
        "active_since now-1d (~1.7 %)": {"active_since": now - DAY},
    }
    new_only = {"age 30..35, buyer (new only)": {"attribute_min": "age:30", "attribute_max": "age:35",
                                                 "segment": "buyer"},
                "lifecycle=at-risk, country:SE (new only)": {"lifecycle": "at-risk", "attribute": "country:SE"}}
    print(f"load average before: {os.getloadavg()}")  # noqa: T201
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            for name, params in {**searches, **new_only}.items():
                times: dict[str, list[float]] = {"old": [], "new": []}
                info: dict[str, tuple[int, int]] = {}
                errors = {"old": 0, "new": 0}
                sides = ["old", "new"] if name in searches else ["new"]
                for _ in range(3):  # warm-up (prepared statements, connections)
                    for side in sides:
                        first_matches(client, f"http://127.0.0.1:{ports[side]}", params, side == "old")
                for _ in range(args.reps):
                    for side in sides:
                        ms, found, reqs = first_matches(client, f"http://127.0.0.1:{ports[side]}", params,
                                                        side == "old")
                        if math.isnan(ms):
                            errors[side] += 1
                            continue
                        times[side].append(ms)
                        info[side] = (found, reqs)
                line = f"{name}: new p50 {statistics.median(times['new']):.1f} / p99 {pct(times['new'], 0.99):.1f} ms"
                line += f" ({info['new'][0]} matches, 1 request)"
                if times["old"]:
                    ratio = statistics.median(o / n for o, n in zip(times["old"], times["new"], strict=False))
                    line += (f"; old scan p50 {statistics.median(times['old']):.1f} / p99 {pct(times['old'], 0.99):.1f}"
                             f" ms ({info['old'][0]} matches, {info['old'][1]} requests); old/new x{ratio:.1f}")
                if any(errors.values()):
                    line += f"; failed requests {errors}"
                print(line, flush=True)  # noqa: T201
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=30)
        print(f"load average after: {os.getloadavg()}")  # noqa: T201


if __name__ == "__main__":
    main()
