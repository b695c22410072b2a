"""Quality benchmark on MovieLens-100K: the live pipeline against batch baselines.

Protocol: every rating is an implicit positive; per user the chronologically last
interaction is held out (ties on the timestamp: the later line of ml-100k.inter); every other
interaction is replayed in time order through Kafka into a real ``aura worker`` (the catalog from
ml-100k.item first); then for each of the 943 users the API is asked for 10 recommendations that
exclude the user's interacted items, scored with HR@10 and NDCG@10 over the full catalog (for the
hybrid twice: each user's first request, answered by the bounded first pass, then again once the
worker has ranked every user's candidate pool, as their later requests are answered). In the
same run the batch baselines popularity, item-kNN (cosine) and EASE (lambda = 500) are computed on
the same split. Timestamps are shifted so the last training event is "now" (the event contract
refuses events older than 400 days); gaps and order are kept.

    .venv/bin/python -m bench.movielens [--partitions 12] [--keep]
    .venv/bin/python -m bench.movielens --methods hybrid --profile 60   # + where the replay's time goes

``--profile S``: for the first S seconds of the replay, py-spy samples the worker (``py-spy record
--format raw``; the collapsed stacks are kept next to the worker's log) and the bench prints the
functions with the most samples (own and cumulative), and the difference of Redis
``INFO commandstats`` over the same seconds (the whole server's: other clients of a shared Redis
are counted too).

The data is fetched from PyPI (``pip download --no-deps recbole==1.2.1``) into .aura/data-cache and
read straight from the wheel; recbole is never installed. Uses its own topic prefix, consumer group,
Redis prefix and the keyspace ``aura_bench_ml`` (its own: the interactions table is truncated at the start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aura.models.ease import EASE
from aura.models.itemknn import ItemKNN
from aura.models.popularity import Popularity
from aura.settings import REPO_ROOT, Settings, settings_env
from bench.pipeline import cpu_seconds, peak_rss_mib, stop_worker
from infra.migrate import drop_topics
from jobs.algos import evaluate, interaction_matrix, leave_last_out, recommend_all

CACHE = REPO_ROOT / ".aura" / "data-cache"
WHEEL = "recbole-1.2.1-py3-none-any.whl"
BASE = "recbole/dataset_example/ml-100k/"


def fetch() -> Path:
    path = CACHE / WHEEL
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(CACHE),
                        "recbole==1.2.1"], check=True)
    return path


def read_table(z: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    lines = z.read(BASE + name).decode("latin-1").splitlines()
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    return [dict(zip(header, ln.split("\t"), strict=False)) for ln in lines[1:] if ln.strip()]


def load() -> tuple[list[tuple[str, str, int]], dict[str, dict[str, Any]]]:
    with zipfile.ZipFile(fetch()) as z:
        inter = read_table(z, "ml-100k.inter")
        items = read_table(z, "ml-100k.item")
    rows = [(r["user_id"], r["item_id"], int(r["timestamp"])) for r in inter]
    catalog = {r["item_id"]: {"title": r.get("movie_title") or f"movie {r['item_id']}",
                              "categories": (r.get("class") or "").split(),
                              "year": r.get("release_year") or ""} for r in items}
    return rows, catalog


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def baselines(train: list[tuple[str, str, int]], test: dict[str, str], n_items: list[str]) -> dict[str, dict]:
    X, users, items = interaction_matrix([(u, i) for u, i, _ in train], items=n_items)
    out = {}
    for name, model in (("popularity", Popularity()), ("item-kNN cosine", ItemKNN(neighbours=100)),
                        ("EASE lambda=500", EASE(500.0))):
        t0 = time.monotonic()
        model.fit(X)
        idx = recommend_all(model, X, 10)
        recs = {u: [items[j] for j in idx[r]] for r, u in enumerate(users)}
        m = evaluate(recs, test, 10)
        m["seconds"] = time.monotonic() - t0
        out[name] = m
        say(f"baseline {name:18s} HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  ({m['seconds']:.1f}s)")
    return out


def commandstats(redis: Any) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as command -> (calls, usec)."""
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in redis.info("commandstats").items()}


def start_profile(pid: int, seconds: float, out: Path, redis: Any) -> tuple[subprocess.Popen[bytes], Path, dict]:
    """py-spy recording the worker for ``seconds`` (collapsed stacks into ``out``) and Redis's
    command counters at the start."""
    argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", "100", "--format", "raw", "--nonblocking", "--subprocesses", "--output", str(out)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return spy, out, commandstats(redis)


def report_profile(spy: subprocess.Popen[bytes], out: Path, before: dict, redis: Any, seconds: float) -> None:
    """The top functions of the py-spy samples (own, cumulative) and the Redis commands by time."""
    try:
        spy.wait(seconds + 60)
    except subprocess.TimeoutExpired:  # a machine so loaded py-spy overran: report what it wrote
        spy.kill()
        spy.wait()
    after = commandstats(redis)
    own: dict[str, int] = {}
    cum: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines() if out.exists() else []:
        stack, _, n = line.rpartition(" ")
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";") if f]
        if not frames or not n.isdigit():
            continue
        total += int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
        for f in set(frames):
            cum[f] = cum.get(f, 0) + int(n)
    say(f"profile: {total} samples of the worker in {seconds:.0f} s (stacks in {out})")
    for name, table in (("own", own), ("cumulative", cum)):
        for f, n in sorted(table.items(), key=lambda kv: -kv[1])[:25]:
            say(f"  {name:10s} {n / max(total, 1):6.1%}  {f}")
    diff = {c: (after[c][0] - before.get(c, (0, 0))[0], after[c][1] - before.get(c, (0, 0))[1]) for c in after}
    busy = sum(us for _, us in diff.values())
    say(f"redis: {busy / 1e6:.2f} s of command time over the same {seconds:.0f} s (the whole server)")
    for c, (calls, us) in sorted(diff.items(), key=lambda kv: -kv[1][1])[:12]:
        if calls:
            say(f"  {c:22s} {calls:9d} calls {us / 1e6:7.2f} s {us / calls:8.1f} us/call {us / max(busy, 1):6.1%}")


def wait(pred: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--keep", action="store_true", help="keep the Redis keys and the Kafka topics afterwards")
    ap.add_argument("--keyspace", default="aura_bench_ml", help="Cassandra keyspace of the run (its interactions "
                    "table is truncated): two concurrent runs need two")
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy the worker and diff Redis commandstats for "
                    "the first S seconds of the replay")
    ap.add_argument("--users", type=int, default=0, help="evaluate only the first N users (0: all)")
    ap.add_argument("--methods", default="hybrid,collaborative,content,trending,popular",
                    help="comma-separated; 'hybrid+users=0.3;mf=0' = the hybrid at a bench placement whose weights "
                         "are the default ones with these overrides")
    a = ap.parse_args(argv)

    from aura import bootstrap, layout
    from aura.keys import RedisKeys
    from aura.producer import EventProducer
    from infra.migrate import ensure_topics, migrate

    rows, catalog = load()
    train, test = leave_last_out(rows)
    items = sorted(catalog)
    say(f"ml-100k: {len(rows)} ratings, {len({u for u, _, _ in rows})} users, {len(items)} items; "
        f"train {len(train)}, held out {len(test)}")
    base = baselines(train, test, items)

    tag = f"ml{uuid.uuid4().hex[:8]}"
    s = Settings().replace(topic_prefix=tag, redis_prefix=tag, consumer_group=f"{tag}-worker",
                           cassandra_keyspace=a.keyspace, topic_partitions=a.partitions, auth_enabled=False)
    migrate(s)
    ensure_topics(s, layout.ALL_TOPICS)
    session = bootstrap.cassandra_session(s)
    session.execute("TRUNCATE interactions")
    redis = bootstrap.redis_sync(s)
    keys = RedisKeys(s.redis.prefix)
    log_path = REPO_ROOT / ".aura" / "logs" / f"bench-movielens-{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker"], cwd=REPO_ROOT,
                              env={**os.environ, **settings_env(s)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait(lambda: b"Worker ready" in log_path.read_bytes() or worker.poll() is not None, 120, "worker")
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited; see {log_path}")
        say(f"worker ready (pid {worker.pid}, {a.partitions} partitions, log {log_path})")
        producer = EventProducer(s, bootstrap.kafka_producer(s))
        now = int(time.time() * 1000)
        t_last = max(t for _, _, t in train)
        shift = now - 60_000 - t_last * 1000
        t0 = time.monotonic()
        for item_id, it in catalog.items():
            producer.send_catalog({"event_id": f"{tag}-item-{item_id}", "event_type": "upsert", "item_id": item_id,
                                   "event_time": now - 120_000,
                                   "item": {"title": it["title"], "categories": it["categories"],
                                            "metadata": {"year": it["year"]}}})
        producer.flush()
        wait(lambda: redis.scard(keys.recs_catalog_ids()) >= len(catalog), 120, "catalog")
        wait(lambda: redis.hget(keys.recs_catalog_version(), "items") == str(len(catalog)), 120, "content model")
        say(f"catalog: {len(catalog)} items stored and content model built in {time.monotonic() - t0:.1f}s")

        ordered = sorted(train, key=lambda r: r[2])  # stable: ties keep the file order (per user too)
        # encoded (and validated) before the clock starts: the replay measures the pipeline, not the client
        now2 = int(time.time() * 1000)
        framed = [producer.encode({"event_id": f"{tag}-{u}-{i}", "event_type": "rating", "user_id": u,
                                   "item_id": i, "event_time": t * 1000 + shift, "value": 1.0}, now2)
                  for u, i, t in ordered]
        spy = start_profile(worker.pid, a.profile, log_path.with_suffix(".pyspy.txt"), redis) if a.profile else None
        cpu_send = cpu_seconds(worker.pid)
        t_send = time.monotonic()
        for key, value in framed:
            producer.send_raw(key, value)
        stats = producer.flush(120)
        send_s = time.monotonic() - t_send
        say(f"produced {len(ordered)} rating events in {send_s:.1f}s ({len(ordered) / send_s:,.0f}/s), "
            f"failed {stats.failed}")
        mon = keys.recs_monitor("stream")

        settled = [-1, time.monotonic()]

        def drained() -> bool:
            # the item side's counters are not exactly once (a batch retried after a Redis timeout counts
            # its entries as sent again, but the item fences apply them once): done when they match, or
            # when every event is folded on the user side and the applied count stopped moving for 20 s
            h = redis.hgetall(mon)
            applied = int(h.get("signals_applied", 0))
            if applied != settled[0]:
                settled[:] = [applied, time.monotonic()]
            return int(h.get("events", 0)) >= len(ordered) and (
                applied >= int(h.get("signals_sent", 1)) or time.monotonic() - settled[1] > 20)

        last_report = [time.monotonic()]

        def progress() -> bool:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode}); see {log_path}")
            if time.monotonic() - last_report[0] > 10:
                h = redis.hgetall(mon)
                say(f"  ... user side {h.get('events', 0)} events, item side {h.get('signals_applied', 0)}/"
                    f"{h.get('signals_sent', 0)} entries")
                last_report[0] = time.monotonic()
            return drained()

        if spy is not None:
            report_profile(*spy, redis, a.profile)
        wait(progress, 3600, "the worker to fold every event")
        if redis.hget(mon, "neighbour_events") is not None:  # user neighbours (streams/neighbours.py) registered
            # the monitor is counted after the fences: a retried batch is not counted again (the state is
            # exactly once, the counter may stay short): done when it reaches the total or stops moving
            last = [-1, time.monotonic()]

            def neighbours_done() -> bool:
                n = int(redis.hget(mon, "neighbour_events") or 0)
                if n != last[0]:
                    last[:] = [n, time.monotonic()]
                return n >= len(ordered) or time.monotonic() - last[1] > 20

            wait(neighbours_done, 600, "user neighbours")
            say(f"user neighbours: {redis.hget(mon, 'neighbour_events')} events counted by the monitor")
        replay_s = time.monotonic() - t_send
        cpu_s = cpu_seconds(worker.pid) - cpu_send
        say(f"replay: {len(ordered)} events folded (user and item side) in {replay_s:.1f}s = "
            f"{len(ordered) / replay_s:,.0f} events/s end to end; worker CPU {cpu_s:.1f} s "
            f"({cpu_s / len(ordered) * 1e6:,.0f} us/event, {cpu_s / replay_s:.0%} of the replay), peak RSS "
            f"{peak_rss_mib(worker.pid):,.0f} MiB")
        # every touched item's top-K lists republished: a list whose weight grew by less than
        # publish_min_growth waits up to publish_max_age_s (a faster replay would otherwise be scored
        # on staler lists)
        time.sleep(s.recs.publish_max_age_s + 2 * s.recs.publish_interval_s)

        t_job = time.monotonic()
        job = subprocess.run([sys.executable, "-m", "jobs.ease", "--activate", "default"], cwd=REPO_ROOT,
                             env={**os.environ, **settings_env(s)}, capture_output=True, text=True)
        if job.returncode != 0:
            raise RuntimeError(job.stdout + job.stderr)
        say(f"EASE batch job (Cassandra -> registry + Redis) in {time.monotonic() - t_job:.1f}s")
        for line in job.stdout.splitlines()[-3:]:
            say("  " + line)

        from fastapi.testclient import TestClient

        from serving.app import create_app

        users = sorted(test, key=int)[: a.users or None]
        results: dict[str, dict[str, float]] = {}
        with TestClient(create_app(s)) as client:
            for method in a.methods.split(","):
                plain, _, overrides = method.partition("+")
                placement = "default"
                if overrides:  # a weight variant of the default placement
                    from aura.ranking.blend import DEFAULT_WEIGHTS

                    placement = f"bench-{uuid.uuid4().hex[:6]}"
                    w = dict(DEFAULT_WEIGHTS["default"])
                    for kv in overrides.split(";"):
                        src, _, val = kv.partition("=")
                        w[src] = float(val)
                    redis.hset(keys.recs_placement(placement), "weights", json.dumps(w))
                    say(f"placement {placement} for {method}: weights {w}")
                rounds = [method]
                if plain == "hybrid" and placement in s.recs.user_cands_placements.split(","):
                    rounds.append(f"{method} (pool)")  # then again, from the pools the worker ranked meanwhile
                for label in rounds:
                    if label != method:
                        pools = [keys.recs_user_cands(u, placement) for u in users]
                        wait(lambda pools=pools: all(redis.exists(k) for k in pools), 600, "every user's pool")
                    recs: dict[str, list[str]] = {}
                    lat = []
                    for u in users:
                        t1 = time.perf_counter()
                        r = client.post("/v1/recommendations/generate", json={
                            "user_id": u, "method": plain, "limit": 10, "context": {"placement": placement},
                            "filters": {"exclude_seen": True, "in_stock_only": False}})
                        lat.append((time.perf_counter() - t1) * 1000)
                        r.raise_for_status()
                        recs[u] = [x["item_id"] for x in r.json()["items"]]
                    m = evaluate(recs, {u: test[u] for u in users}, 10)
                    m["median_ms"] = statistics.median(lat)
                    m["p99_ms"] = float(np.percentile(lat, 99))
                    results[label] = m
                    say(f"live {label:14s} HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  "
                        f"(API median {m['median_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, in-process TestClient)")
        ease_hr = base["EASE lambda=500"]["hr@10"]
        for label in ("hybrid", "hybrid (pool)"):
            if label in results:
                hy = results[label]["hr@10"]
                say(f"{label} vs EASE: {hy:.4f} / {ease_hr:.4f} = {hy / ease_hr - 1:+.1%} (target >= +25%)")
        return 0
    finally:
        stop_worker(worker)
        log.close()
        if not a.keep:
            for k in redis.scan_iter(f"{s.redis.prefix}:*", count=1000):
                redis.delete(k)
            drop_topics(s, s.kafka.topic_prefix)  # a run's topics would pile up in the broker otherwise
        session.cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
