"""Throughput of the state pipeline (profiles, segments, analytics) on this machine.

    .venv/bin/python -m bench.pipeline --events 100000 --users 20000          # through Kafka + a real worker
    .venv/bin/python -m bench.pipeline --events 100000 --workers 1,2          # 1 worker, then 2 (side by side)
    .venv/bin/python -m bench.pipeline --events 100000 --split                # roles split: 2 consumer groups
    .venv/bin/python -m bench.pipeline --mode inproc --events 50000 --profile  # the pipeline alone, cProfiled
    .venv/bin/python -m bench.pipeline --mode inproc --repeat 3 --gc-gen0 0,400000  # Python GC vs tuned, in turn

kafka: a real ``aura worker`` (every agent of the worker, not only ours) over fresh topics; the
events are produced as fast as the producer helper can, and the clock stops when the consumer
group's lag is zero (every batch's state written before its offsets are committed). Two figures:
end-to-end (first produce -> lag 0) and the drain rate of the worker alone. With ``--split`` the
clock stops when every role group's lag is zero. Also the CPU per event of the worker and of each
local service over the drain, and the worker's peak resident memory (``worker_peak_mib``).
inproc: the same intake and behavior owners the worker's behavior agent runs (streams/app.py ``build``,
with its write-behind), on pre-encoded records, batch after batch, against the real Redis and
Cassandra; ``--profile`` prints where the time goes (cProfile); ``--gc-gen0 0,N`` alternates Python's
collector thresholds (0) with the worker's tuning (streams/app.py ``tune_gc``) and reports the process
CPU seconds and the collector's seconds (gc callbacks) of each run.
Prints medians over ``--repeat`` runs. Settings: AURA_* (batch_max etc.).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aura import bootstrap, layout
from aura.demo import Storefront
from aura.producer import EventProducer
from aura.settings import REPO_ROOT, Settings, get_settings, settings_env
from schemas.codec import codec
from streams import app as worker_app
from streams.behavior import intake_and_fan_out
from streams.intake import RawRecord

BENCH_KEYSPACE = "aura_bench"


def bench_settings(base: Settings) -> Settings:
    tag = f"b{uuid.uuid4().hex[:8]}"
    return base.replace(**{"topic_prefix": tag, "redis_prefix": tag, "consumer_group": f"{tag}-worker",
                                   "cassandra_keyspace": BENCH_KEYSPACE})


def prepare(s: Settings) -> None:
    from infra.migrate import ensure_topics, migrate

    migrate(s)
    ensure_topics(s, layout.ALL_TOPICS)


def events(n: int, users: int, seed: int) -> list[dict]:
    shop = Storefront(seed=seed, n_users=users, n_items=2000)
    start = int(time.time() * 1000) - 3 * 3600 * 1000
    out = []
    for ev in shop.events(start):
        ev["event_time"] = min(ev["event_time"], start + 3 * 3600 * 1000 - 1000)
        out.append(ev)
        if len(out) >= n:
            return out
    return out


def lag(s: Settings, consumer) -> int:  # noqa: ANN001
    from confluent_kafka import TopicPartition

    topic = layout.topic(s, layout.BEHAVIOR)
    parts = [TopicPartition(topic, p) for p in range(s.kafka.topic_partitions)]
    total = 0
    for tp in consumer.committed(parts, timeout=10):
        high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
        total += high - max(tp.offset, 0)
    return total


def group_members(s: Settings, split: bool = False) -> int:
    """Members that own behavior partitions in the worker group (with ``split``: in the group of
    each role set, the fewest of them)."""
    admin = bootstrap.kafka_admin(s)
    groups = layout.worker_groups(s, split)
    topic = layout.topic(s, layout.BEHAVIOR)
    found = []
    for g in groups:
        desc = admin.describe_consumer_groups([g])[g].result(timeout=10)
        found.append(sum(1 for m in desc.members if any(tp.topic == topic for tp in m.assignment.topic_partitions)))
    return min(found)


def group_consumers(s: Settings, split: bool = False) -> list:
    """One committed-offset reader per worker group (never subscribes)."""
    from confluent_kafka import Consumer

    return [Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": g, "enable.auto.commit": False})
            for g in layout.worker_groups(s, split)]


def lags(s: Settings, consumers: list) -> int:
    """The largest behavior-topic lag of the worker groups."""
    return max(lag(s, c) for c in consumers)


def run_kafka(base: Settings, n: int, users: int, seed: int, workers: int = 1, split: bool = False
              ) -> dict[str, float]:
    s = bench_settings(base)
    prepare(s)
    log = Path(f"/tmp/bench-worker-{s.kafka.topic_prefix}.log")
    env = {**os.environ, **settings_env(s)}
    worker = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker", "--loglevel", "warning",
                               "--processes", str(workers), *(["--split"] if split else [])], cwd=REPO_ROOT,
                              env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while group_members(s, split) < workers:  # every worker joined: no rebalance inside the measurement
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"workers did not join; see {log}")
            time.sleep(0.5)
        evs = events(n, users, seed)
        producer = EventProducer(s, bootstrap.kafka_producer(s))
        encoded = [producer.encode(e) for e in evs]
        consumers = group_consumers(s, split)
        # wait until the worker owns its partitions: a first event is committed
        producer.send_raw(*encoded[0])
        producer.flush()
        deadline = time.monotonic() + 180
        while lags(s, consumers) > 0:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker not consuming; see {log}")
            time.sleep(0.5)
        cpu0 = process_cpu(worker.pid, s)
        t0 = time.monotonic()
        for k, v in encoded[1:]:
            producer.send_raw(k, v)
        producer.flush(120)
        t_produced = time.monotonic()
        lag_at_produced = lags(s, consumers)
        done_at: dict[int, float] = {}  # consumer index -> when its group's lag first reached 0
        while len(done_at) < len(consumers):
            if worker.poll() is not None:
                raise RuntimeError(f"worker died; see {log}")
            for i, c in enumerate(consumers):
                if i not in done_at and lag(s, c) == 0:
                    done_at[i] = time.monotonic()
            time.sleep(0.2)
        t1 = max(done_at.values())
        cpu1 = process_cpu(worker.pid, s)
        for c in consumers:
            c.close()
        done = n - 1
        drained = done - 0  # everything was processed between t0 and t1
        out = {"workers": workers * (len(layout.SPLIT_ROLES) if split else 1), "events": done,
               "e2e_eps": drained / (t1 - t0),
               "produce_eps": done / (t_produced - t0),
               "seconds": t1 - t0, "lag_when_produced": lag_at_produced,
               "drain_eps_after_produce": lag_at_produced / max(t1 - t_produced, 1e-9)}
        # CPU per event (us) of the worker and of each local service over the same window: steadier
        # than a rate on a shared machine, and it says who competed for the cores
        out.update({f"cpu_us[{name}]": (cpu1[name] - cpu0[name]) / done * 1e6 for name in cpu0})
        out["worker_peak_mib"] = peak_rss_mib(worker.pid)
        if split:  # each role group's own end to end rate
            for i, roles in enumerate(layout.SPLIT_ROLES):
                out[f"e2e_eps[{roles.replace(',', '+')}]"] = drained / (done_at[i] - t0)
        return out
    finally:
        stop_worker(worker)
        cleanup(s)


def process_tree(pid: int | None) -> list[int]:
    """``pid`` and its child processes, recursively (/proc; none for no such process)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, TypeError):
        return []
    return [pid, *(p for k in kids for p in process_tree(int(k)))]  # type: ignore[list-item]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds so far of a process (every thread) and of its child processes
    (/proc; 0 for no such process). Every bench that reads another process's CPU uses this."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM, MiB) of a process and of its child processes (summed)."""
    kib = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return kib / 1024


def process_cpu(worker_pid: int, s: Settings) -> dict[str, float]:
    """CPU seconds so far of the worker (its process and its worker processes) and of the local
    stack's services that have a pid file (0 for a service run elsewhere)."""
    from infra.host import Paths, read_pid

    paths = Paths(s.home, s.stack.maven_repo)
    return {"worker": cpu_seconds(worker_pid),
            **{name: cpu_seconds(read_pid(paths, name)) for name in ("kafka", "cassandra", "redis")}}


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM a bench's ``aura worker`` and give it 30 s to leave its group; SIGKILL after that."""
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()


def cleanup(s: Settings) -> None:
    """A benchmark's Redis keys and Kafka topics (every run has its own prefix: without this the
    broker piles up partitions run after run)."""
    from infra.migrate import drop_topics

    cleanup_redis(s)
    drop_topics(s, s.kafka.topic_prefix)


def cleanup_redis(s: Settings) -> None:
    r = bootstrap.redis_sync(s)
    batch = []
    for k in r.scan_iter(f"{s.redis.prefix}:*", count=5000):
        batch.append(k)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


async def _inproc(s: Settings, n: int, users: int, seed: int, profile: bool, owners_only: str) -> dict[str, float]:
    res = worker_app.resources(s)
    _app, owners, durable = worker_app.build(s, res)  # the owners the worker's behavior agent feeds
    if owners_only != "all":
        owners = [o for o in owners if o[0].startswith(owners_only)]
    producer = EventProducer(s, None)
    parts = s.kafka.topic_partitions
    records = []
    offsets = [0] * parts
    for e in events(n, users, seed):
        k, v = producer.encode(e)
        p = hash(k) % parts
        records.append(RawRecord("t", p, offsets[p], k, v))
        offsets[p] += 1
    c = codec("behavior_event")
    prof = cProfile.Profile() if profile else None
    collector = GcClock()
    gc.callbacks.append(collector)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for i in range(0, len(records), s.worker.batch_max):
        await intake_and_fan_out(res, c, records[i:i + s.worker.batch_max], owners, int(time.time() * 1000))
        if (durable.pending >= durable.max_pending
                or time.perf_counter() - t0 > durable.interval_s * (durable.flushes + 1)):
            await durable.flush()
    await durable.flush()
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(collector)
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(28)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    await res.redis.aclose()
    res.session.cluster.shutdown()
    return {"events": len(records), "eps": len(records) / dt, "seconds": dt, "cpu_s": cpu, "gc_s": collector.seconds}


class GcClock:
    """A gc callback that sums the time of every collection."""

    def __init__(self) -> None:
        self.seconds, self.started = 0.0, 0.0

    def __call__(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self.started


def set_gc(gen0: int) -> None:
    """Python's collector thresholds (``gen0`` 0, nothing frozen) or the worker's (``tune_gc``)."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    worker_app.tune_gc(gen0)


def run_inproc(base: Settings, n: int, users: int, seed: int, profile: bool, owners: str) -> dict[str, float]:
    s = bench_settings(base)
    prepare(s)
    try:
        return asyncio.run(_inproc(s, n, users, seed, profile, owners))
    finally:
        cleanup(s)


def load() -> str:
    """The 1-minute load average (the machine is shared: say how loaded it was)."""
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["kafka", "inproc"], default="kafka")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--workers", default="1", help="kafka: worker processes, e.g. 1,2 to measure both in turn")
    ap.add_argument("--split", action="store_true",
                    help="kafka: `aura worker --split` (N processes per role group, each its own consumer group)")
    ap.add_argument("--owners", choices=["all", "profiles", "recs", "decisions"], default="all",
                    help="inproc: every owner of the behavior agent (default) or one of them")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--gc-gen0", default="",
                    help="inproc: collector thresholds to alternate run by run, e.g. 0,50000 (0: Python's defaults)")
    a = ap.parse_args()
    base = get_settings()
    counts = [int(x) for x in a.workers.split(",")] if a.mode == "kafka" else [1]
    for w in counts:  # side by side: the same events, each worker count in turn
        gcs = [int(x) for x in a.gc_gen0.split(",")] if a.gc_gen0 and a.mode == "inproc" else [None]
        runs: dict[int | None, list[dict[str, float]]] = {g: [] for g in gcs}
        for i in range(a.repeat):
            for g in gcs:  # side by side: each collector setting in turn, on the same events
                if g is not None:
                    set_gc(g)
                r = (run_kafka(base, a.events, a.users, a.seed + i, w, a.split) if a.mode == "kafka"
                     else run_inproc(base, a.events, a.users, a.seed + i, a.profile, a.owners))
                label = "" if g is None else f" gc_gen0={g}"
                print(f"run {i + 1}{label}: " + ", ".join(f"{k}={v:.1f}" for k, v in r.items()) + f" load={load()}",
                      flush=True)
                runs[g].append(r)
        for g, rs in runs.items():
            label = "" if g is None else f" gc_gen0={g}"
            print(f"median{label}: " + ", ".join(f"{k}={statistics.median(r[k] for r in rs):.2f}" for k in rs[0]))
    print(f"settings: batch_max={base.worker.batch_max} batch_within_s={base.worker.batch_within_s} "
          f"partitions={base.kafka.topic_partitions} nproc={os.cpu_count()}")


if __name__ == "__main__":
    main()
