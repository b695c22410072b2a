"""Import speed: MovieLens-100K ratings through ``aura import``'s produce loop into the real Kafka.

The ratings of ml-100k.inter (read from the cached recbole wheel, see bench/movielens.py) are written
as a CSV (user_id, item_id, rating, timestamp; timestamps shifted so the newest is now: the event
contract refuses events older than 400 days), then imported ``--runs`` times with ``run_import``
(validate, frame, produce, flush and checkpoint every ``--chunk`` rows) into a private topic prefix;
reported: the median of rows produced and acknowledged per second, and in the same run the median
rate of the parse + validate + frame pass alone (``check_file``, nothing produced). Beside each wall
rate, the rate per CPU second of this process (``time.process_time``: its librdkafka threads
included), which a machine loaded by other work changes far less than the wall time.

    .venv/bin/python -m bench.importer [--runs 3] [--chunk 5000]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from aura import bootstrap, layout
from aura.producer import EventProducer
from aura.settings import Settings
from bench.movielens import fetch, read_table, say
from infra.migrate import drop_topics, ensure_topics
from jobs.importer import ColumnMap
from jobs.importrun import check_file, run_import


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=5000)
    args = ap.parse_args(argv)
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
                events = EventProducer(s, bootstrap.kafka_producer(s))
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
