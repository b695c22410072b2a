"""SIGKILL of Kafka, Cassandra and Redis under load, one at a time, on a PRIVATE stack (own ports,
data directory and keyspace; small heaps): after each fault the service is restarted, events keep
arriving, and once the worker has caught up every profile, segment set and analytics counter (Redis
and the Cassandra copies) equals the reference fold of the topic (tests/e2e/test_crash_recovery.py).
The shared stack is never touched. ``AURA_RECOVERY_REPORT=<file>`` appends the measured times as
JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from aura import bootstrap, layout
from aura.settings import Settings
from infra import stack as local_stack
from infra.migrate import migrate
from tests.conftest import wait_for
from tests.e2e.test_crash_recovery import assert_state_equals_reference, lag, produce_storefront, read_topic
from tests.e2e.test_redis_loss import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.recovery, pytest.mark.slow]
SERVICES = ("kafka", "cassandra", "redis")


@pytest.fixture
def private_stack(tmp_path: Path, stack: Settings) -> Any:  # the shared Maven cache of `stack`, nothing else of it
    s = Settings().replace(
        home=tmp_path / "aura", maven_repo=stack.stack.maven_repo,
        kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_controller_port=free_port(), kafka_heap="384m",
        cassandra_port=free_port(), cassandra_storage_port=free_port(), cassandra_heap="768m",
        redis_url=f"redis://127.0.0.1:{free_port()}/0", cassandra_keyspace="faults", topic_partitions=4,
        campaign_smtp_port=free_port(), batch_max=500, batch_catchup_max=1000, kafka_session_timeout_s=10.0,
        start_timeout_s=600,
    )
    try:
        local_stack.up(s, SERVICES)
        migrate(s)
        yield s
    finally:
        local_stack.down(s, SERVICES)


@pytest.mark.timeout(3600)  # a private stack starts in minutes on a loaded machine; six faults, six restarts
def test_sigkill_of_each_store_under_load_then_state_equals_reference_fold(private_stack, worker_factory):
    s = private_stack
    produced = produce_storefront(s, 10_000, seed=31)
    worker = worker_factory(s)
    timings = []
    for i, service in enumerate(("kafka", "cassandra", "redis", "kafka", "cassandra", "redis")):
        produced += produce_storefront(s, 3_000, seed=60 + i, users=150)  # a backlog the fault interrupts
        before = lag(s)
        wait_for(lambda: worker.proc.poll() is not None or lag(s) < before,  # noqa: B023
                 timeout=300, interval=0.5, what="the worker to make progress")
        assert worker.proc.poll() is None, worker.tail()
        lag_at_kill = lag(s)
        local_stack.kill(s, service)
        killed = time.monotonic()
        time.sleep(1.0)  # the worker meets the dead service
        local_stack.up(s, (service,))
        back = time.monotonic()
        produced += produce_storefront(s, 1_500, seed=40 + i, users=100)

        def caught_up(service: str = service) -> bool:
            assert worker.proc.poll() is None, f"worker died after the {service} fault:\n{worker.tail()}"
            return lag(s) == 0

        wait_for(caught_up, timeout=600, interval=1.0, what=f"consumer lag 0 after the {service} fault")
        timings.append({"fault": f"SIGKILL {service}", "lag_at_kill": lag_at_kill, "restart_s": round(back - killed, 1),
                        "caught_up_s": round(time.monotonic() - back, 1)})
        print("store fault:", json.dumps(timings[-1]), flush=True)
    time.sleep(2.0)  # the batch whose offsets were just committed has written its state
    records = read_topic(s)
    assert len(records) == produced
    redis = bootstrap.redis_sync(s)
    cassandra = bootstrap.cassandra_session(s)
    try:
        assert assert_state_equals_reference(s, redis, cassandra, records) > 100
    finally:
        redis.close()
        cassandra.cluster.shutdown()
    print("store faults:", json.dumps(timings), layout.worker_group(s))
    report = os.environ.get("AURA_RECOVERY_REPORT")
    if report:
        with open(report, "a") as fh:
            for t in timings:
                fh.write(json.dumps({**t, "records": len(records)}) + "\n")
