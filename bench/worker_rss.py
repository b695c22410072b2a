"""Resident memory of a real ``aura worker`` as the number of users it has seen grows.

    .venv/bin/python -m bench.worker_rss --users 10000,50000,100000 [--roles profiles]

Starts one worker (every agent) over fresh topics and a fresh Redis prefix, then, stage by stage,
produces one view per new user until the worker has seen ``--users`` distinct users (cumulative),
waits for consumer lag 0, lets it settle for ``--settle`` seconds and reads the worker's RSS (the
process and its children, from /proc). Profile state lives in Redis, so the RSS should not grow with
users beyond bounded caches (the catalog cache, Faust buffers). Deletes its topics and keys at the end.
``--roles profiles``: the worker runs only the profiles group (profiles, segments, analytics: the
process of a split deployment, ``aura worker --split``), without the recommender's per-user state.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from aura import bootstrap, layout
from aura.producer import EventProducer
from aura.settings import REPO_ROOT, get_settings, settings_env
from bench.pipeline import bench_settings, cleanup, group_members, lag, prepare, stop_worker


def rss_mib(pid: int) -> float:
    """RSS of ``pid`` and its descendants, MiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = (t / "children").read_text().split()
                todo += [int(k) for k in kids]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="10000,50000,100000", help="cumulative distinct users per stage")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--roles", default="all", help="the worker's roles (AURA_WORKER_ROLES), e.g. profiles")
    a = ap.parse_args()
    s = bench_settings(get_settings()).replace(worker_roles=a.roles)
    prepare(s)
    log = Path(f"/tmp/bench-worker-rss-{s.kafka.topic_prefix}.log")
    worker = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker", "--loglevel", "warning"],  # noqa: S603
                              cwd=REPO_ROOT, env={**os.environ, **settings_env(s)}, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT)
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": layout.worker_group(s),
                         "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + 180
        while group_members(s) < 1:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker did not join; see {log}")
            time.sleep(0.5)
        time.sleep(a.settle)
        print(f"users=0 worker RSS {rss_mib(worker.pid):.0f} MiB (idle, joined)", flush=True)
        producer = EventProducer(s, bootstrap.kafka_producer(s))
        seen = 0
        now = int(time.time() * 1000) - 60_000
        for target in (int(x) for x in a.users.split(",")):
            t0 = time.monotonic()
            for i in range(seen, target):
                producer.send({"event_id": f"rss-{i}", "event_type": "view", "user_id": f"w{i}",
                               "item_id": f"i{i % 2000}", "event_time": now + i % 60_000})
            producer.flush(120)
            while lag(s, consumer) > 0:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker died; see {log}")
                time.sleep(0.5)
            took = time.monotonic() - t0
            time.sleep(a.settle)
            print(f"users={target} worker RSS {rss_mib(worker.pid):.0f} MiB "
                  f"({target - seen} events drained in {took:.0f} s)", flush=True)
            seen = target
    finally:
        consumer.close()
        stop_worker(worker)
        cleanup(s)
        print(f"settings: batch_max={s.worker.batch_max} batch_within_s={s.worker.batch_within_s} "
              f"partitions={s.kafka.topic_partitions} roles={s.worker.roles} {layout.topic(s, layout.BEHAVIOR)}")


if __name__ == "__main__":
    main()
