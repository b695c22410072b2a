"""Import speed: MovieLens-100K ratings through ``aura import``'s produce loop into the real Kafka.

The ratings of ml-100k.inter (read from the cached recbole wheel, see bench/movielens.py) are written
as a CSV (user_id, item_id, rating, timestamp; timestamps shifted so the newest is now: the event
contract refuses events older than 400 days), then imported ``--runs`` times with ``run_import``
(validate, frame, produce, flush and checkpoint every ``--chunk`` rows) into a private topic prefix;
reported: the median of rows produced and acknowledged per second, and in the same run the median
rate of the parse + validate + frame pass alone (``check_file``, nothing produced). Beside each wall
rate, the rate per CPU second of this process (``time.process_time``: its librdkafka threads
included), which a machine loaded by other work changes far less than the wall time.

``--worker``: what a shop waits for. One ``aura worker`` runs on the prefix (all topics, its own
Cassandra keyspace); the ratings are imported once and the bench reports, for that same import, the
rows/s produced and acknowledged and the wall time from the first row until the worker group has
caught up: its committed offsets at the end of every topic it reads (lag 0, Kafka's own figure, as
``GET /v1/system/stream-lag`` reports it), the behavior topic's partitions all committed.

    .venv/bin/python -m bench.importer [--runs 3] [--chunk 5000]
    .venv/bin/python -m bench.importer --worker [--chunk 5000]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from aura import bootstrap, layout
from aura.settings import REPO_ROOT, Settings, settings_env
from bench.movielens import fetch, read_table, say, wait
from bench.pipeline import cleanup, stop_worker
from infra.migrate import drop_topics, ensure_topics, migrate
from jobs.importer import ColumnMap
from jobs.importrun import check_file, import_producer, run_import
from serving.streamlag import read_lag


def write_ratings(path: Path) -> int:
    with zipfile.ZipFile(fetch()) as z:
        inter = read_table(z, "ml-100k.inter")
    shift = int(time.time()) - max(int(r["timestamp"]) for r in inter) - 60
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "rating", "timestamp"])
        for r in inter:
            w.writerow([r["user_id"], r["item_id"], r["rating"], int(r["timestamp"]) + shift])
    return len(inter)


def caught_up(admin: object, s: Settings, partitions: int) -> bool:
    """Every worker group of ``s`` at the end of every topic it reads, all behavior partitions committed."""
    groups = read_lag(admin, s)
    behavior = layout.BEHAVIOR.name
    return bool(groups) and all(g.lag == 0 for g in groups) and any(
        g.topics.get(behavior, {}).get("partitions", 0) >= partitions for g in groups)


def with_worker(chunk: int, keyspace: str) -> int:
    """One import into a running worker: produced-and-acknowledged rate and time until caught up."""
    tag = f"bimw{uuid.uuid4().hex[:8]}"
    s = Settings().replace(topic_prefix=tag, redis_prefix=tag, consumer_group=f"{tag}-worker",
                           cassandra_keyspace=keyspace, topic_partitions=12, auth_enabled=False)
    migrate(s)
    ensure_topics(s, layout.ALL_TOPICS)
    log_path = REPO_ROOT / ".aura" / "logs" / f"bench-importer-{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    admin = bootstrap.kafka_admin(s)
    with open(log_path, "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker"], cwd=REPO_ROOT,  # noqa: S603
                                  env={**os.environ, **settings_env(s)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait(lambda: b"Worker ready" in log_path.read_bytes() or worker.poll() is not None, 180, "worker")
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited; see {log_path}")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "ratings.csv"
            n = write_ratings(src)
            events = import_producer(s)
            t0, c0 = time.monotonic(), time.process_time()
            report = run_import(events, src, "events", ColumnMap(default_type="rating", value_col="rating"),
                                resume=False, chunk=chunk, err=io.StringIO())
            cpu = time.process_time() - c0
        assert report.produced == n and not report.failed, report
        say(f"produced and acknowledged {n} rows in {report.elapsed_s:.1f}s = {n / report.elapsed_s:,.0f}/s "
            f"({n / cpu:,.0f} per CPU s); waiting for the worker (log {log_path})")
        last = [time.monotonic()]

        def progress() -> bool:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode}); see {log_path}")
            if time.monotonic() - last[0] > 30:
                last[0] = time.monotonic()
                say(f"  ... {', '.join(f'{g.group} lag {g.lag}' for g in read_lag(admin, s))}")
            return caught_up(admin, s, 12)

        wait(progress, 7200, "the worker to catch up", interval=1.0)
        total = time.monotonic() - t0
        say(f"caught up (lag 0 on the worker group) {total:.0f}s after the first row: {n / total:,.0f} events/s "
            f"end to end; produced in {report.elapsed_s:.1f}s, the worker's fold the remaining "
            f"{total - report.elapsed_s:.0f}s (chunk {chunk}, 12 partitions, one worker process)")
    finally:
        stop_worker(worker)
        cleanup(s)  # the run's Redis keys and topics
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--worker", action="store_true", help="one import into a running worker: also the wall "
                    "time until the worker group has caught up")
    ap.add_argument("--keyspace", default="aura_bench_imp", help="--worker: the worker's Cassandra keyspace")
    args = ap.parse_args(argv)
    if args.worker:
        return with_worker(args.chunk, args.keyspace)
    tag = f"bimp{uuid.uuid4().hex[:8]}"
    s = Settings().replace(topic_prefix=tag, redis_prefix=tag, topic_partitions=12)
    ensure_topics(s, [layout.BEHAVIOR])
    cmap = ColumnMap(default_type="rating", value_col="rating")
    produced, checked, produced_cpu, checked_cpu = [], [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "ratings.csv"
            n = write_ratings(src)
            say(f"{n} ratings -> {src}")
            for run in range(args.runs):
                events = import_producer(s)
                t0, c0 = time.monotonic(), time.process_time()
                bad = check_file(events, src, "events", cmap, None, int(time.time() * 1000))
                checked.append(n / (time.monotonic() - t0))
                checked_cpu.append(n / (time.process_time() - c0))
                c0 = time.process_time()
                report = run_import(events, src, "events", cmap, resume=False, chunk=args.chunk, err=io.StringIO())
                produced_cpu.append(report.produced / (time.process_time() - c0))
                assert report.produced == n and not bad and not report.failed, (report, bad[:3])
                produced.append(report.produced / report.elapsed_s)
                say(f"run {run + 1}: produced {report.produced} in {report.elapsed_s:.2f}s = {produced[-1]:,.0f}/s "
                    f"({produced_cpu[-1]:,.0f} per CPU s); parse+validate+frame alone {checked[-1]:,.0f}/s "
                    f"({checked_cpu[-1]:,.0f} per CPU s)")
    finally:
        drop_topics(s, tag)
    say(f"median: {statistics.median(produced):,.0f} rows/s produced and acknowledged "
        f"({statistics.median(produced_cpu):,.0f} per CPU s); parse+validate+frame alone "
        f"{statistics.median(checked):,.0f} rows/s ({statistics.median(checked_cpu):,.0f} per CPU s) "
        f"(chunk {args.chunk}, 12 partitions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
