"""What a Cassandra write costs the node, by how many small partitions share one UNLOGGED batch.

    .venv/bin/python -m bench.cassandra_batches --rows 6000 --per 1,10,48 --repeat 3

Writes ``--rows`` one-row partitions shaped like ``user_activity``'s smallest row (a text key and a
timestamp, in a scratch keyspace) as lone statements and as UNLOGGED batches of ``--per`` partitions, 16 requests in
flight, and reads the node's process CPU (``/proc``, the local stack's pid file) before and after
each pass: the node's CPU per row and the wall time of the pass. The write-behind's
``AURA_CASSANDRA_BATCH_PARTITIONS`` is this ``per`` (streams/durable.py). Medians over ``--repeat``
passes, interleaved.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from aura import bootstrap
from aura.settings import get_settings
from bench.pipeline import cpu_seconds
from infra.host import Paths, read_pid

IDLE_S = 1.0  # between passes: the node's background work is counted in every pass alike


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--per", default="1,10,48", help="partitions per request, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    s = get_settings()
    pid = read_pid(Paths(s.home, s.stack.maven_repo), "cassandra")
    if pid is None:
        raise SystemExit("no local Cassandra (aura stack up)")
    ks = f"aura_bench_batches_{uuid.uuid4().hex[:6]}"
    cluster = bootstrap.cassandra_cluster(s)
    session = cluster.connect()
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    session.execute(f"CREATE TABLE {ks}.rows (user_id text PRIMARY KEY, last_seen timestamp)")
    insert = session.prepare(f"INSERT INTO {ks}.rows (user_id, last_seen) VALUES (?, ?)")
    pers = [int(p) for p in a.per.split(",")]
    cpu: dict[int, list[float]] = {p: [] for p in pers}
    wall: dict[int, list[float]] = {p: [] for p in pers}
    try:
        for r in range(a.repeat):
            for per in pers:
                requests: list[tuple[object, tuple[object, ...]]] = []
                for start in range(0, a.rows, per):
                    if per == 1:
                        requests.append((insert, (f"u{start}", r)))
                        continue
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                    for i in range(start, min(start + per, a.rows)):
                        batch.add(insert, (f"u{i}", r))
                    requests.append((batch, ()))
                time.sleep(IDLE_S)
                c0, t0 = cpu_seconds(pid), time.perf_counter()
                execute_concurrent(session, requests, concurrency=16, raise_on_first_error=True)
                wall[per].append(time.perf_counter() - t0)
                time.sleep(IDLE_S)  # the node finishes what the acknowledged writes left behind
                cpu[per].append((cpu_seconds(pid) - c0) / a.rows * 1e6)
                print(f"pass {r + 1} partitions/request {per:3d}: node CPU {cpu[per][-1]:6.0f} us per row, "
                      f"wall {wall[per][-1]:.1f} s", flush=True)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()
    for per in pers:
        print(f"median partitions/request {per:3d}: node CPU {statistics.median(cpu[per]):6.0f} us per row "
              f"(all: {', '.join(f'{x:.0f}' for x in cpu[per])}), wall {statistics.median(wall[per]):.1f} s "
              f"for {a.rows} rows; nproc={os.cpu_count()} load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
