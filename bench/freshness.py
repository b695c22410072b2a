"""Freshness: an event produced -> visible through the API, under steady background load.

    .venv/bin/python -m bench.freshness --rate 1000 --probes 300 [--workers 2] [--split]

A real ``aura worker`` over fresh topics; a background thread produces demo traffic at ``--rate``
events/s; the probe loop produces one event for a new user, then polls
``GET /v1/profiles/<user>/activity`` (the real FastAPI app in-process, real Redis) every ``--poll-ms``
until it answers 200. Prints p50 / p90 / p99 / max of produce -> visible, in ms (a figure overstates
by up to one poll interval).

The load generator shares the machine with the system it measures, so it is kept cheap: the
background traffic is the demo storefront's sessions generated before the run (``--pregen-s``
seconds of it, replayed in a loop, each event with a fresh id and the current time), and the probe's
polls are ASGI calls into the app on the probe's own event loop (the whole app: middleware, auth,
route, Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from aura import bootstrap, layout
from aura.demo import Storefront
from aura.producer import EventProducer
from aura.settings import REPO_ROOT, get_settings, settings_env
from bench.pipeline import bench_settings, cleanup, group_members, prepare, stop_worker


def pregenerate(rate: float, seconds: float) -> list[list[dict[str, object]]]:
    """``seconds`` of the demo storefront's sessions at ``rate`` events/s, generated before the run."""
    shop = Storefront(seed=3, n_users=20_000)
    sessions, n, now = [], 0, int(time.time() * 1000)
    while n < rate * seconds:
        sessions.append(shop.session(now))
        n += len(sessions[-1])
    return sessions


def background(s, rate: float, sessions: list[list[dict[str, object]]], stop: threading.Event,  # noqa: ANN001
               sent: list[int]) -> None:
    """Replays ``sessions`` at ``rate`` events/s, each event with a fresh id and the current time."""
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        for session in sessions:
            now = int(time.time() * 1000)
            for ev in session:
                producer.send({**ev, "event_id": f"{run}-{n}", "event_time": now})
                n += 1
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            if stop.is_set():
                break
    producer.flush(10)
    sent.append(n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    ap.add_argument("--poll-ms", type=float, default=2.0,
                    help="ms between two polls of a probe (a figure overstates by up to this much)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (aura worker --processes N)")
    ap.add_argument("--split", action="store_true",
                    help="aura worker --split: N processes for profiles, N for recs+decisions (own groups)")
    ap.add_argument("--pregen-s", type=float, default=20.0,
                    help="seconds of background sessions generated before the run (replayed in a loop)")
    ap.add_argument("--stats-s", type=float, default=5.0,
                    help="the workers log their loop timings (streams/loopstats.py) this often into the log")
    a = ap.parse_args()
    from aura.apikeys import KeyStore
    from bench.http_load import asgi_get
    from serving.app import create_app

    s = bench_settings(get_settings()).replace(loop_stats_s=a.stats_s)
    prepare(s)
    session = bootstrap.cassandra_session(s)
    _rec, token = KeyStore(s, session).create("bench-freshness", ("admin",), 1e6, 1_000_000)
    log = Path(f"/tmp/bench-freshness-{s.kafka.topic_prefix}.log")
    level = "info" if a.stats_s > 0 else "warning"
    worker = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker", "--loglevel", level,
                               "--processes", str(a.workers), *(["--split"] if a.split else [])], cwd=REPO_ROOT,
                              env={**os.environ, **settings_env(s)}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    stop = threading.Event()
    sent: list[int] = []
    lat: list[float] = []
    missed = 0
    cpu = float("nan")
    sessions = pregenerate(a.rate, a.pregen_s)
    app = create_app(s)
    auth = [(b"authorization", f"Bearer {token}".encode())]

    async def visible(user: str) -> bool:
        return await asgi_get(app, f"/v1/profiles/{user}/activity", auth) == 200

    async def probing() -> float:
        nonlocal missed
        async with app.router.lifespan_context(app):
            producer = EventProducer(s, bootstrap.kafka_producer(s, **{"linger.ms": 0}))
            warm = f"warm-{uuid.uuid4().hex[:6]}"
            producer.send({"event_id": warm, "event_type": "view", "user_id": warm, "item_id": "i",
                           "event_time": int(time.time() * 1000)})
            producer.flush()
            deadline = time.monotonic() + 180
            while not await visible(warm):
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"worker not consuming; see {log}")
                await asyncio.sleep(0.2)
            while group_members(s, a.split) < a.workers:  # every worker joined: no rebalance while probing
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"workers did not join; see {log}")
                await asyncio.sleep(0.5)
            bg = threading.Thread(target=background, args=(s, a.rate, sessions, stop, sent), daemon=True)
            bg.start()
            await asyncio.sleep(3.0)
            cpu0, wall0 = time.process_time(), time.monotonic()
            for i in range(a.probes):
                user = f"probe-{uuid.uuid4().hex[:8]}"
                t0 = time.perf_counter()
                producer.send({"event_id": f"{user}-{i}", "event_type": "view", "user_id": user, "item_id": "i",
                               "event_time": int(time.time() * 1000)})
                producer.producer.flush(5)
                while not await visible(user):
                    if time.perf_counter() - t0 > 30:  # the worker fell behind: counted, at 30 s
                        missed += 1
                        break
                    await asyncio.sleep(a.poll_ms / 1000)
                lat.append((time.perf_counter() - t0) * 1000)
                if missed >= 3:  # behind for good: the rest would only measure the backlog
                    break
                await asyncio.sleep(a.interval)
            cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
            stop.set()
            bg.join(30)
            return cpu

    try:
        cpu = asyncio.run(probing())
    finally:
        stop.set()
        stop_worker(worker)
        cleanup(s)
        session.cluster.shutdown()
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive")  # never beyond the max (few probes)
    print(f"probes={len(lat)} not visible within 30 s: {missed}; background={a.rate:.0f}/s "
          f"(sent {sent[0] if sent else '?'}) workers={a.workers}{' per role group (--split)' if a.split else ''} "
          f"poll={a.poll_ms:g} ms load={os.getloadavg()[0]:.1f}")
    print(f"freshness ms: p50={statistics.median(lat):.1f} p90={q[89]:.1f} p99={q[98]:.1f} max={lat[-1]:.1f}")
    print(f"bench process (producers, in-process API, polling): {cpu:.2f} of a core while probing; "
          f"worker log (loop stats lines): {log}")
    s_ = get_settings()
    print(f"settings: batch_max={s_.worker.batch_max} batch_within_s={s_.worker.batch_within_s} "
          f"partitions={s_.kafka.topic_partitions} topic={layout.topic(s, layout.BEHAVIOR)}")


if __name__ == "__main__":
    main()
