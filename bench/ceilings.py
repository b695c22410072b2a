"""Read ceilings of the behavior topic beside the pipeline, in one run on the same events.

    .venv/bin/python -m bench.ceilings --events 100000 --users 20000 --repeat 3
    .venv/bin/python -m bench.ceilings --readers raw,faust,faust-tuned,faust-confluent --no-pipeline

Each run produces ``--events`` demo events (Avro single-object, keyed by user, the worker's
partition count) into a fresh behavior topic, then drains that backlog with each reader, every
reader in its own consumer group from the earliest offset, one process each:

- ``raw``: one confluent-kafka consumer, ``consume(2000)``, every value decoded (schemas/codec.py).
- ``faust``: a minimal Faust agent over the aiokafka transport with the worker's app settings and
  event loop (``AURA_WORKER_LOOP``), ``stream.take(2000, within=0.02)``, decode (as the worker's
  intake does: times as epoch ms) and count, nothing else.
- ``faust-tuned``: the same agent with the fetch settings Faust exposes raised (max poll records,
  partition fetch size, stream buffer; see ``TUNED``).
- ``faust-confluent``: the same agent over Faust's confluent-kafka driver (``confluent://``).

A reader's rate is its records after the first batch over the time from the first batch to the
last record (its startup and group join are not counted). A reader that has not read everything
within ``--timeout`` seconds is reported with how far it got. Then (unless ``--no-pipeline``) the
synthetic pipeline (bench/pipeline.py ``run_kafka``: a real ``aura worker`` of ``--workers``
processes, events produced while it folds, clock stopped at lag 0) runs on the same events, and
its events/s is printed as a fraction of each reader's. Medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aura import bootstrap, layout
from aura.producer import EventProducer
from aura.settings import REPO_ROOT, Settings, get_settings, settings_env
from bench.pipeline import bench_settings, cleanup, events, load, prepare, run_kafka
from schemas.codec import codec

TAKE = 2000
WITHIN_S = 0.02
# the fetch settings Faust exposes for its aiokafka consumer, raised for a backlog (the worker's
# defaults: max poll records unlimited, partition fetch 4 MiB, stream buffer AURA_STREAM_BUFFER)
TUNED: dict[str, Any] = {"broker_max_poll_records": 20000, "consumer_max_fetch_size": 16 * 1024 * 1024,
                         "stream_buffer_maxsize": 40000}
FAUST_READERS = {"faust": ("kafka", {}), "faust-tuned": ("kafka", TUNED), "faust-confluent": ("confluent", {})}



def produce(s: Settings, n: int, users: int, seed: int) -> int:
    """The backlog: ``n`` demo events in the behavior topic of ``s``."""
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    evs = events(n, users, seed)
    for e in evs:
        k, v = producer.encode(e)
        producer.send_raw(k, v)
    stats = producer.flush(120)
    if stats.failed:
        raise RuntimeError(f"produce failed: {stats.errors[:3]}")
    return len(evs)


def read_raw(s: Settings, n: int, timeout_s: float) -> dict[str, float]:
    """One confluent-kafka consumer that decodes every value."""
    from confluent_kafka import Consumer

    c = codec("behavior_event")
    group = f"{s.kafka.topic_prefix}-raw-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([layout.topic(s, layout.BEHAVIOR)])
    count, first_n, t_first, t_last = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while count < n and time.monotonic() < deadline:
            msgs = consumer.consume(TAKE, timeout=0.5)
            for m in msgs:
                if m.error() is None:
                    c.decode(m.value(), epoch_ms=True)
                    count += 1
            if msgs and not first_n:
                first_n, t_first = count, time.monotonic()
            t_last = time.monotonic()
    finally:
        consumer.close()
    return rate(count, first_n, t_first, t_last, n)


def rate(count: int, first_n: int, t_first: float, t_last: float, n: int) -> dict[str, float]:
    eps = (count - first_n) / (t_last - t_first) if t_last > t_first else 0.0
    return {"eps": eps, "read": count, "complete": float(count >= n)}


def read_faust(s: Settings, reader: str, n: int, timeout_s: float) -> dict[str, float]:
    """A minimal Faust agent in a child process (this module with ``--child``)."""
    out = Path(tempfile.mkstemp(prefix="ceiling-", suffix=".json")[1])
    out.unlink()
    log = Path(f"/tmp/bench-ceiling-{s.kafka.topic_prefix}-{reader}.log")
    env = {**os.environ, **settings_env(s)}
    child = subprocess.Popen([sys.executable, "-m", "bench.ceilings", "--child", reader, "--events", str(n),
                              "--out", str(out)], cwd=REPO_ROOT, env=env, stdout=log.open("wb"),
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if out.exists():
                r = json.loads(out.read_text() or "{}")
                if r.get("done"):
                    return rate(r["count"], r["first_n"], r["t_first"], r["t_last"], n)
            time.sleep(0.2)
        r = json.loads(out.read_text()) if out.exists() else {"count": 0, "first_n": 0, "t_first": 0, "t_last": 0}
        return {**rate(r["count"], r["first_n"], r["t_first"], r["t_last"], n), "exit": child.poll() or 0}
    finally:
        child.kill()
        child.wait()
        out.unlink(missing_ok=True)


def child(reader: str, n: int, out: Path) -> None:
    """The agent: take, decode, count; the progress goes to ``out`` (JSON) every batch."""
    import faust
    import mode.loop

    from streams.app import faust_app

    s = get_settings()
    mode.loop.use(s.worker.loop)  # the worker's event loop, as ``aura worker`` chooses it
    scheme, extra = FAUST_READERS[reader]
    base = faust_app(s)  # the worker's own app settings, then this reader's group, transport and extras
    conf = {k: getattr(base.conf, k) for k in ("value_serializer", "key_serializer", "topic_partitions",
                                                "consumer_auto_offset_reset", "broker_commit_interval",
                                                "broker_session_timeout", "consumer_metadata_max_age_ms",
                                                "stream_buffer_maxsize", "topic_allow_declare",
                                                "topic_disable_leader")}
    conf.update(extra)
    app = faust.App(f"{s.kafka.topic_prefix}-{reader}-{uuid.uuid4().hex[:6]}", broker=f"{scheme}://{s.kafka.bootstrap}",
                    store="memory://", web_enabled=False, **conf)
    topic = app.topic(layout.topic(s, layout.BEHAVIOR), value_serializer="raw", key_serializer="raw")
    c = codec("behavior_event")
    st = {"count": 0, "first_n": 0, "t_first": 0.0, "t_last": 0.0, "done": False}

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        async for batch in stream.take(TAKE, within=WITHIN_S):
            for v in batch:
                c.decode(v, epoch_ms=True)
            st["count"] += len(batch)
            st["t_last"] = time.monotonic()
            if not st["first_n"]:
                st["first_n"], st["t_first"] = st["count"], st["t_last"]
            st["done"] = st["count"] >= n
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(st))
            tmp.replace(out)  # the parent reads whole files only
            if st["done"]:
                os._exit(0)  # a throwaway group: nothing to commit or leave cleanly

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def one_run(base: Settings, readers: list[str], n: int, users: int, seed: int, timeout_s: float,
            pipeline_workers: int) -> dict[str, dict[str, float]]:
    s = bench_settings(base)
    prepare(s)
    out: dict[str, dict[str, float]] = {}
    try:
        produced = produce(s, n, users, seed)
        for r in readers:
            out[r] = read_raw(s, produced, timeout_s) if r == "raw" else read_faust(s, r, produced, timeout_s)
            print(f"  {r}: " + ", ".join(f"{k}={v:.1f}" for k, v in out[r].items()) + f" load={load()}", flush=True)
    finally:
        cleanup(s)
    if pipeline_workers:
        p = run_kafka(base, n, users, seed, pipeline_workers)
        out["pipeline"] = {"eps": p["e2e_eps"], "read": p["events"], "complete": 1.0}
        cpu = ", ".join(f"{k}={v:.0f}" for k, v in p.items() if k.startswith("cpu_us"))
        print(f"  pipeline: e2e_eps={p['e2e_eps']:.1f} ({pipeline_workers} worker process) {cpu} load={load()}",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--readers", default="raw,faust,faust-tuned,faust-confluent")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a reader may take to read the backlog")
    ap.add_argument("--workers", type=int, default=1, help="pipeline worker processes (each reader is one process)")
    ap.add_argument("--no-pipeline", action="store_true")
    ap.add_argument("--child", choices=sorted(FAUST_READERS), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.events, a.out)
        return
    readers = [r for r in a.readers.split(",") if r]
    runs = []
    for i in range(a.repeat):
        print(f"run {i + 1}:", flush=True)
        runs.append(one_run(get_settings(), readers, a.events, a.users, a.seed + i, a.timeout,
                            0 if a.no_pipeline else a.workers))
    med = {r: statistics.median(run[r]["eps"] for run in runs) for r in runs[0]}
    print("median events/s: " + ", ".join(f"{r}={v:.0f}" for r, v in med.items()))
    if "pipeline" in med:
        fractions = {r: statistics.median(run["pipeline"]["eps"] / run[r]["eps"] if run[r]["eps"] else 0.0
                                          for run in runs) for r in readers}
        print("pipeline as a fraction (median of per-run ratios): "
              + ", ".join(f"of {r} {v:.3f}" for r, v in fractions.items()))
    s = get_settings()
    print(f"settings: take={TAKE} within={WITHIN_S} partitions={s.kafka.topic_partitions} nproc={os.cpu_count()} "
          f"tuned={TUNED}")


if __name__ == "__main__":
    main()
