"""HTTP load benchmark of the API: wrk (saturation) and vegeta (fixed request rates) on loopback.

    .venv/bin/python -m bench.http_load [--workers 2] [--duration 10] [--rates 500,1000] [--repeat 3]

What it does: seeds Redis state under the prefix ``bench`` (users' activity and recent items,
catalog metadata, item neighbours, popular and trending lists), creates a ``read`` API key with no
practical rate limit, starts ``aura api --workers N`` on a free port, then for each endpoint runs

- saturation: ``wrk -t1 -c<connections> -d<duration>s --latency`` (closed loop: throughput, p50/p99);
- fixed rates: ``vegeta attack -rate=<r>/s`` (open loop, so queueing delay counts: p50/p99 and the
  success ratio at that rate),

each ``--repeat`` times, and prints the medians. Endpoints rotate over many users/items (similar
items: every 7th of the 2,000 items in turn, so each of 286 items comes back every 286 requests). The
API authenticates and rate-limits every request (one Redis Lua call), as in production. The similar
items rows print the response cache's hit rate (``aura_api_cache_total`` from ``/metrics``, every
worker summed, over each phase); "cache off" runs against a second API started with
``AURA_API_CACHE_MS=0`` (the miss path: one Redis script call per request).

``--ab VAR=VALUE[,VAR=VALUE]`` starts a second API with that environment (B) and alternates each
endpoint's saturation runs between the two (A, B, A, B...), printing the median of the per-pair B/A
throughput ratios: a setting's effect measured side by side, on the same machine state.
``--b-tree PATH`` runs B from another checkout of Aura (e.g. a ``git worktree`` of an older commit) with
the same settings: two versions of the code measured side by side (saturation and fixed rates, A and B
alternating).

Tools: ``apt-get install -y wrk`` (Debian) and ``go install github.com/tsenart/vegeta/v12@v12.13.0``
(binary in ~/go/bin). The load generator runs on the same machine as the API: on a 2-core box it
takes CPU from the server, so saturation figures are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from aura.settings import REPO_ROOT, Settings, settings_env
from aura.state import profile_codec
from aura.state.profiles import Profile

N_USERS = 2000
N_ITEMS = 2000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(s: Settings) -> None:
    """Materialized state as the stream would leave it (enough for every benchmarked route)."""
    from aura.bootstrap import redis_sync
    from aura.keys import RedisKeys

    r = redis_sync(s)
    k = RedisKeys(s.redis.prefix)
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for i in range(N_ITEMS):
        item = f"i{i}"
        pipe.hset(k.recs_item_meta(item), mapping={"categories": json.dumps([f"c{i % 20}"]), "price": str(5 + i % 50),
                                                  "available": "1", "title": f"item {i}"})
        if hasattr(k, "recs_item_filters"):  # the compact filter records the API reads with one HMGET
            from aura.state.catalog import filter_record

            pipe.hset(k.recs_item_filters(), item, filter_record(
                {"categories": [f"c{i % 20}"], "price": 5 + i % 50, "available": True}))
        pipe.delete(k.recs_item_similar(item, "cooc"))
        pipe.zadd(k.recs_item_similar(item, "cooc"), {f"i{(i * 7 + j * 13) % N_ITEMS}": 50 - j for j in range(1, 50)})
    pipe.zadd(k.recs_popular(), {f"i{i}": N_ITEMS - i for i in range(500)})
    pipe.zadd(k.recs_trending(), {f"i{(i * 3) % N_ITEMS}": 500 - i for i in range(500)})
    for u in range(N_USERS):
        user = f"u{u}"
        items = [f"i{(u * 11 + j * 17) % N_ITEMS}" for j in range(10)]
        pipe.delete(k.recs_user_seq(user), k.recs_user_seen(user))
        profile_codec.write_sync(pipe, k, user, Profile(counts={"view": 8, "click": 2}, first_seen=now - 86_400_000,
                                                   last_seen=now, recent=items, version=1))
        pipe.rpush(k.recs_user_seq(user), *[f"{it}|1|{now - j * 1000}|0" for j, it in enumerate(items)])
        pipe.zadd(k.recs_user_seen(user), {it: now - j for j, it in enumerate(items)})
        if u % 200 == 0:
            pipe.execute()
    pipe.execute()
    r.close()
    seed_pools(s, [f"u{u}" for u in range(N_USERS) if u % 7 != 1])


def seed_pools(s: Settings, users: list[str]) -> None:
    """The users' hybrid candidate pools, ranked by the stream's own code (streams/usercands.py) over the
    seeded state, as a worker leaves them after the users' last events. Users ``u % 7 == 1`` get none:
    their requests measure what a request costs when the pool is missing or stale (the bounded first
    pass; the whole ranking from an older checkout). No worker
    runs here, so these users never get a pool."""
    import asyncio
    from types import SimpleNamespace

    try:
        from streams.usercands import UserCands
    except ImportError:  # an older checkout (side-by-side runs): no pools
        return
    from aura.bootstrap import redis_async
    from aura.keys import RedisKeys

    async def run() -> int:
        r = redis_async(s)
        try:
            cands = UserCands(SimpleNamespace(settings=s, keys=RedisKeys(s.redis.prefix), redis=r))
            for u in users:
                await r.delete(cands.keys.recs_user_cands(u, "default"))
            cands.pending = {u: (-1, -1e9) for u in users}  # no recommender fence in the seed: ranked at once
            return await getattr(cands, "rank", cands.refresh)(budget_s=1e9)  # (rank: pools on demand, no asks here)
        finally:
            await r.aclose()

    cpu, wall = time.process_time(), time.perf_counter()
    n = asyncio.run(run())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"ranked {n} users' candidate pools with the stream's code: {wall:.1f} s, "
          f"{cpu / max(n, 1) * 1000:.2f} ms CPU per user in this process (Redis' script time not included)")


def make_key(s: Settings) -> str:
    from aura.apikeys import KeyStore
    from aura.bootstrap import cassandra_session

    session = cassandra_session(s)
    try:
        _rec, token = KeyStore(s, session).create("bench", ["read"], 1e7, 10_000_000)
    finally:
        session.cluster.shutdown()
    return token


def start_api(s: Settings, port: int, workers: int, log: Path,
              extra_env: dict[str, str] | None = None, tree: Path = REPO_ROOT) -> subprocess.Popen[bytes]:
    """``aura api`` of the checkout ``tree`` (its own code first on the path) with the settings ``s``."""
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(tree), **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "aura.cli", "api", "--port", str(port), "--workers", str(workers)],
                            cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"API exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code in (200, 503):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("API did not start")


def endpoints(base: str) -> dict[str, list[str]]:
    users = [f"u{u}" for u in range(0, N_USERS, 7)]
    items = [f"i{i}" for i in range(0, N_ITEMS, 7)]
    return {
        "health (open; pings Redis, Cassandra, Kafka)": [f"{base}/v1/health"],
        "profile activity": [f"{base}/v1/profiles/{u}/activity" for u in users],
        "recommendations (hybrid)": [f"{base}/v1/recommendations/users/{u}?limit=10" for u in users],
        "recommendations (hybrid, no pool: first pass)": [f"{base}/v1/recommendations/users/u{u}?limit=10"
                                                             for u in range(1, N_USERS, 7)],
        "similar items": [f"{base}/v1/recommendations/similar/{i}?limit=10" for i in items],
        NO_CACHE: [f"{base}/v1/recommendations/similar/{i}?limit=10" for i in items],
    }


# rows measured against a second API started with other settings (the miss path of the response cache)
NO_CACHE = "similar items, cache off (AURA_API_CACHE_MS=0)"
ROW_SETTINGS: dict[str, dict[str, Any]] = {NO_CACHE: {"api_cache_ms": 0}}


def cache_counts(base: str) -> tuple[float, float]:
    """(hits, misses) of the API's response cache so far, every worker summed (``aura_api_cache_total``)."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    got = {"hit": 0.0, "miss": 0.0}
    for line in text.splitlines():
        if line.startswith("aura_api_cache_total{"):
            labels, _, value = line.rpartition(" ")
            for result in got:
                if f'result="{result}"' in labels:
                    got[result] += float(value)
    return got["hit"], got["miss"]


def hit_rate(before: tuple[float, float], after: tuple[float, float]) -> str:
    hits, misses = after[0] - before[0], after[1] - before[1]
    if hits + misses <= 0:
        return "no cache lookups"
    return f"cache hit rate {hits / (hits + misses):.1%} ({hits:.0f} of {hits + misses:.0f})"


def wrk(urls: list[str], token: str, duration: int, connections: int, workdir: Path) -> dict[str, float]:
    script = workdir / "rotate.lua"
    paths = [u.split("/", 3)[3] for u in urls]
    script.write_text("local paths = {" + ",".join(json.dumps("/" + p) for p in paths) + "}\n"
                      "local i = 0\nrequest = function()\n  i = i + 1\n"
                      "  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n")
    base = "/".join(urls[0].split("/", 3)[:3])
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
                          "-H", f"X-API-Key: {token}", base], capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = {}
    non2xx = 0.0
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            res["p" + parts[0].rstrip("%")] = _ms(parts[1])
        elif "Non-2xx or 3xx responses" in line:
            non2xx = float(parts[-1])
        elif "requests in" in line:
            res["requests"] = float(parts[0])
    res["non2xx"] = non2xx
    return res


def _ms(v: str) -> float:
    for suffix, f in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * f
    return float(v)


def vegeta(urls: list[str], token: str, rate: int, duration: int, workdir: Path, binary: str) -> dict[str, float]:
    targets = workdir / "targets.txt"
    targets.write_text("".join(f"GET {u}\n" for u in urls))
    attack = subprocess.run([binary, "attack", f"-rate={rate}/s", f"-duration={duration}s", f"-targets={targets}",
                             "-header", f"X-API-Key: {token}", "-timeout=5s", "-max-workers=512"],
                            capture_output=True, check=True).stdout
    rep = json.loads(subprocess.run([binary, "report", "-type=json"], input=attack, capture_output=True,
                                    check=True).stdout)
    lat = rep["latencies"]
    return {"p50": lat["50th"] / 1e6, "p99": lat["99th"] / 1e6, "throughput": rep["throughput"],
            "success": rep["success"], "codes": rep.get("status_codes", {})}


async def asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """One GET through the ASGI app, in-process (no HTTP server); returns the status."""
    p, _, q = path.partition("?")
    scope = {"type": "http", "method": "GET", "path": p, "raw_path": p.encode(), "query_string": q.encode(),
             "headers": [(b"host", b"bench"), *(headers or [])], "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    await app(scope, receive, send)
    return int(sent[0]["status"])


def cpu_cost(s: Settings, token: str, paths: list[str], n: int = 2000) -> dict[str, float]:
    """CPU time of the API process per request, in-process (ASGI calls, no HTTP server, no load tool):
    a figure that machine sharing does not distort much, unlike latency. Redis' own CPU is not included."""
    import asyncio

    from serving.app import create_app

    app = create_app(s)

    async def call(path: str) -> int:
        return await asgi_get(app, path, [(b"x-api-key", token.encode())])

    async def run() -> dict[str, float]:
        async with app.router.lifespan_context(app):
            for i in range(200):
                await call(paths[i % len(paths)])
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(n):
                await call(paths[i % len(paths)])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            return {"cpu_ms": cpu / n * 1000, "wall_ms": wall / n * 1000}

    return asyncio.run(run())


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rates", default="1000", help="comma-separated fixed request rates for vegeta")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated substrings of the endpoint names to run")
    ap.add_argument("--skip-seed", action="store_true")
    ap.add_argument("--cpu-cost", action="store_true", help="only measure CPU per request in-process (no HTTP)")
    ap.add_argument("--ab", default="", help="A/B: VAR=VALUE[,VAR=VALUE] environment of a second API (B); each "
                    "endpoint's saturation runs alternate A, B, A, B... and the B/A ratio is printed (fixed rates "
                    "and rows with their own settings: A only)")
    ap.add_argument("--b-tree", type=Path, default=None, help="B: the API of another checkout (same settings; "
                    "with --ab, also that environment)")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk missing: apt-get install -y wrk")
    veg = shutil.which("vegeta") or str(Path.home() / "go" / "bin" / "vegeta")
    if not Path(veg).exists():
        raise SystemExit("vegeta missing: go install github.com/tsenart/vegeta/v12@v12.13.0")

    s = Settings().replace(redis_prefix="bench", topic_prefix="bench", topic_partitions=1, consumer_group="bench")
    from infra.migrate import migrate

    migrate(s)
    if not args.skip_seed:
        t = time.perf_counter()
        seed(s)
        print(f"seeded {N_USERS} users, {N_ITEMS} items in {time.perf_counter() - t:.1f}s")
    token = make_key(s)
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="aura-bench-"))
    api = start_api(s, port, args.workers, workdir / "api.log")
    apis = {"": (api, port)}
    ab_env = dict(kv.split("=", 1) for kv in args.ab.split(",") if kv)
    b_label = " ".join(x for x in (args.ab, f"tree {args.b_tree}" if args.b_tree else "") if x)
    if b_label:
        apis["ab"] = (start_api(s, (ab_port := _free_port()), args.workers, workdir / "api-b.log", ab_env,
                                tree=(args.b_tree or REPO_ROOT).resolve()), ab_port)
    rates = [int(r) for r in args.rates.split(",") if r]
    results: dict[str, Any] = {"settings": vars(args), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    try:
        for name in endpoints("").keys():
            if args.only and not any(o and o in name for o in args.only.split(",")):
                continue
            if name in ROW_SETTINGS:  # a second API with this row's settings, on its own port
                tag = json.dumps(ROW_SETTINGS[name], sort_keys=True)
                if tag not in apis:
                    other = _free_port()
                    apis[tag] = (start_api(s.replace(**ROW_SETTINGS[name]), other, args.workers,
                                           workdir / f"api-{len(apis)}.log"), other)
                row_port = apis[tag][1]
            else:
                row_port = port
            base = f"http://127.0.0.1:{row_port}"
            urls = endpoints(base)[name]
            check = httpx.get(urls[0], headers={"X-API-Key": token}, timeout=5)
            print(f"\n== {name}: sample answer {check.status_code} ({len(check.content)} bytes); "
                  f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            if args.cpu_cost:
                paths = ["/" + u.split("/", 3)[3] for u in urls]
                cost = [cpu_cost(s, token, paths) for _ in range(args.repeat)]
                print(f"   in-process cost: {median(cost, 'cpu_ms'):.3f} ms CPU/request "
                      f"(sequential wall {median(cost, 'wall_ms'):.3f} ms incl. Redis round trips)")
                results[name] = {"cpu_cost": cost}
                continue
            wrk(urls, token, 2, args.connections, workdir)  # warm-up
            counts = cache_counts(base)
            sat, sat_b = [], []
            b_port = apis["ab"][1] if b_label and row_port == port else None
            b_urls = [u.replace(f":{port}/", f":{b_port}/", 1) for u in urls] if b_port else []
            if b_urls:
                wrk(b_urls, token, 2, args.connections, workdir)
            for _ in range(args.repeat):
                sat.append(wrk(urls, token, args.duration, args.connections, workdir))
                if b_urls:
                    sat_b.append(wrk(b_urls, token, args.duration, args.connections, workdir))
            entry: dict[str, Any] = {"saturation_runs": sat, "fixed": {}}
            now = cache_counts(base)
            cache = f"; {hit_rate(counts, now)}" if now != counts else ""
            print(f"   saturation (wrk -c{args.connections}, {args.workers} workers): "
                  f"{median(sat, 'rps'):.0f} req/s, p50 {median(sat, 'p50'):.2f} ms, p99 {median(sat, 'p99'):.2f} ms, "
                  f"non-2xx {median(sat, 'non2xx'):.0f}{cache}")
            if sat_b:
                entry["saturation_runs_b"] = sat_b
                pairs = [b["rps"] / a["rps"] for a, b in zip(sat, sat_b, strict=True)]
                print(f"   B ({b_label}): {median(sat_b, 'rps'):.0f} req/s, p50 {median(sat_b, 'p50'):.2f} ms, "
                      f"p99 {median(sat_b, 'p99'):.2f} ms; runs A {[round(r['rps']) for r in sat]}, "
                      f"B {[round(r['rps']) for r in sat_b]}; B/A median of pairs {statistics.median(pairs):.3f}")
            for rate in rates:
                counts = now
                runs, runs_b = [], []
                for _ in range(args.repeat):  # with B: alternating A, B at the same rate
                    runs.append(vegeta(urls, token, rate, args.duration, workdir, veg))
                    if b_urls:
                        runs_b.append(vegeta(b_urls, token, rate, args.duration, workdir, veg))
                entry["fixed"][rate] = runs
                now = cache_counts(base)
                cache = f"; {hit_rate(counts, now)}" if now != counts else ""
                print(f"   fixed {rate}/s (vegeta): p50 {median(runs, 'p50'):.2f} ms, "
                      f"p99 {median(runs, 'p99'):.2f} ms, achieved {median(runs, 'throughput'):.0f}/s, "
                      f"success {median(runs, 'success'):.4f}{cache}")
                if runs_b:
                    entry.setdefault("fixed_b", {})[rate] = runs_b
                    print(f"   B fixed {rate}/s: p50 {median(runs_b, 'p50'):.2f} ms, "
                          f"p99 {median(runs_b, 'p99'):.2f} ms, "
                          f"achieved {median(runs_b, 'throughput'):.0f}/s, success {median(runs_b, 'success'):.4f}")
            results[name] = entry
    finally:
        for proc, _port in apis.values():
            proc.terminate()
        for proc, _port in apis.values():
            proc.wait(20)
    results["load_after"] = os.getloadavg()
    out = workdir / "results.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nload average before {results['load_before']}, after {results['load_after']}; raw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
