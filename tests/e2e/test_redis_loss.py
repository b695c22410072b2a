"""Redis losing writes under load, on a private Redis (own port and data directory; Kafka and
Cassandra are the shared ones, isolated per test as usual, and never touched).

While the worker folds a backlog, Redis is SIGKILLed and restarted (1) from an append-only file whose
tail was cut off (the writes of its last moments lost while Kafka already holds their offsets), then
(2) with no data at all; events keep arriving after each fault. Without an operator the worker must
notice (streams/redisloss.py), refold what Redis lost and end with every profile, segment set and
analytics counter equal to the reference fold of the topic (tests/e2e/test_crash_recovery.py).
``AURA_RECOVERY_REPORT=<file>`` appends the measured recovery times as JSON lines.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from aura import bootstrap, layout
from aura.keys import keys_for
from aura.settings import REPO_ROOT, Settings
from infra import stack as local_stack
from streams.redisloss import rewinds
from tests.conftest import wait_for
from tests.e2e.test_crash_recovery import (
    assert_state_equals_reference,
    lag,
    produce_storefront,
    read_topic,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.recovery, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(isolated: Settings, tmp_path: Path) -> Any:
    s = isolated.replace(home=tmp_path / "aura", maven_repo=REPO_ROOT / ".aura" / "m2",
                         redis_url=f"redis://127.0.0.1:{free_port()}/0", batch_max=500, batch_catchup_max=1000,
                         kafka_session_timeout_s=10.0)
    local_stack.up(s, ("redis",))
    yield s
    local_stack.down(s, ("redis",))


def cut_aof_tail(data: Path, keep: float) -> int:
    """Truncate the newest incremental AOF file to ``keep`` of its size (what a crash under
    ``appendfsync everysec`` can leave, and more); returns the bytes cut."""
    incr = sorted((data / "appendonlydir").glob("*.incr.aof"), key=lambda p: p.stat().st_mtime)
    assert incr, f"no incremental AOF in {data}"
    f = incr[-1]
    size = f.stat().st_size
    with f.open("r+b") as fh:
        fh.truncate(int(size * keep))
    return size - int(size * keep)


def committed_some(s: Settings, before: int) -> bool:
    return lag(s) < before


def marks_behind(s: Settings) -> bool:
    """Whether the restarted Redis holds offset marks behind Kafka's committed offsets of the worker's
    group (the loss the guard must refold). A cut tail that held no mark write (the worker had
    committed its last offsets earlier) loses no effect below a surviving mark: nothing to refold."""
    group = layout.worker_group(s)
    consumer = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        topics = consumer.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p) for t, md in topics.items() if t.startswith(s.kafka.topic_prefix + ".")
               for p in md.partitions]
        committed = {tp: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()
    marks = bootstrap.redis_sync(s).hgetall(keys_for(s).applied_offsets(group))
    return bool(rewinds(committed, marks))


def recover(s: Settings, worker: Any, fault: str, keep: float | None, extra_events: int, seed: int) -> dict[str, Any]:
    """SIGKILL the private Redis once the worker has committed a third of its backlog, restart it
    (tail cut or empty), keep producing, wait until the worker has caught up; returns the timings
    (seconds from the restart until the worker has rewound, and until its lag is 0 again)."""
    before = lag(s)
    assert before > 0
    wait_for(lambda: worker.proc.poll() is not None or committed_some(s, before * 2 // 3), timeout=180,
             interval=0.2, what="the worker to commit part of the backlog")
    assert worker.proc.poll() is None, worker.tail()
    log_before = worker.log_path.read_text(errors="replace").count("Redis lost writes of")
    paths = local_stack.Paths(s.home, s.stack.maven_repo)
    data = paths.data("redis")
    local_stack.kill(s, "redis")
    killed = time.monotonic()
    lag_at_kill = lag(s)
    cut = 0
    if keep is None:
        for p in sorted(data.rglob("*"), reverse=True):
            if p.is_file():
                p.unlink()
    else:
        cut = cut_aof_tail(data, keep)
    local_stack.up(s, ("redis",))
    restarted = time.monotonic()
    behind = marks_behind(s)  # read before the re-executed worker reaches its partition assignment
    assert behind or keep is not None, "Redis restarted empty yet holds the group's offset marks"

    def rewinds_logged() -> bool:
        assert worker.proc.poll() is None, f"worker died:\n{worker.tail()}"
        return worker.log_path.read_text(errors="replace").count("Redis lost writes of") > log_before

    if behind:
        wait_for(rewinds_logged, timeout=180, interval=0.2, what="the worker to rewind after the Redis fault")
    rewound_at = time.monotonic()
    n2 = produce_storefront(s, extra_events, seed=seed, users=100)

    def caught_up() -> bool:
        assert worker.proc.poll() is None, f"worker died:\n{worker.tail()}"
        return lag(s) == 0

    wait_for(caught_up, timeout=420, interval=0.5, what="consumer lag 0 after the Redis fault")
    done = time.monotonic()
    text = worker.log_path.read_text(errors="replace")
    rewound = [line.split("Redis lost writes of ", 1)[1].split(";")[0] for line in text.splitlines()
               if "Redis lost writes of" in line][log_before:]
    assert rewound or not behind, f"the loss was not detected:\n{worker.tail()}"
    return {"fault": fault, "aof_bytes_cut": cut, "lag_at_kill": lag_at_kill, "events_after": n2,
            "marks_behind": behind, "rewound": rewound,
            "restart_s": round(restarted - killed, 2), "rewound_s": round(rewound_at - restarted, 2),
            "caught_up_s": round(done - restarted, 2)}


def test_redis_losing_its_tail_or_everything_under_load_is_refolded_exactly(private_redis, worker_factory,
                                                                            cassandra):
    s = private_redis
    redis = bootstrap.redis_sync(s)
    n = produce_storefront(s, 12_000, seed=21)
    worker = worker_factory(s)
    timings = [recover(s, worker, "SIGKILL, AOF tail cut (90% kept)", 0.9, 1500, seed=22)]
    # the refold is complete before the next fault: the state equals the reference fold
    time.sleep(2.0)  # the batch whose offsets were just committed has written its state
    records = read_topic(s)
    assert len(records) == n + timings[0]["events_after"]
    assert assert_state_equals_reference(s, redis, cassandra, records) > 100

    n3 = produce_storefront(s, 8_000, seed=23)
    timings.append(recover(s, worker, "SIGKILL, restarted empty", None, 1500, seed=24))
    time.sleep(2.0)
    records = read_topic(s)
    assert len(records) == n + timings[0]["events_after"] + n3 + timings[1]["events_after"]
    assert assert_state_equals_reference(s, redis, cassandra, records) > 100
    print("redis loss recovery:", json.dumps(timings))
    report = os.environ.get("AURA_RECOVERY_REPORT")
    if report:
        with open(report, "a") as fh:
            for t in timings:
                fh.write(json.dumps({**t, "records": len(records)}) + "\n")
    redis.close()
