"""A worker whose event loop stalls longer than the max poll interval is left out of its consumer group
for good by aiokafka (the consumer thread keeps heartbeating, finds its fetcher idle past
``max_poll_interval``, leaves the group, and then skips every rejoin while the fetcher stays idle;
Faust, its partitions revoked, does not fetch: "AIOKafkaConsumerThread keepalive is not responding",
then nothing). The liveness watchdog (streams/liveness.py) must replace the process, which comes back
under the same process id and folds every event exactly once. And a worker stopped (SIGSTOP) past its
session timeout rejoins by itself.

Kafka, Redis and Cassandra are the shared ones, isolated per test as usual (own topics, consumer group
and Redis prefix); only the test's own worker process is stopped or blocked. The loop is blocked from
outside by a signal whose handler (installed at interpreter start, in the worker's main thread) sleeps:
the event loop stops while the consumer thread runs on, as with a blocking call in an agent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aura.settings import REPO_ROOT, Settings, settings_env
from tests.conftest import wait_for
from tests.e2e.test_crash_recovery import assert_state_equals_reference, produce_storefront, read_topic, wait_drained
from tests.e2e.test_scale_out import assignments

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.recovery, pytest.mark.slow]

BLOCK = signal.SIGRTMIN + 3  # the "block the event loop" signal (mode's worker takes SIGUSR1/2)
# installed at every interpreter start of the worker (a replaced worker too: it inherits the environment)
SITECUSTOMIZE = """
import os, signal, time
if os.environ.get("TEST_BLOCK_S"):
    signal.signal(signal.SIGRTMIN + 3, lambda *_a: time.sleep(float(os.environ["TEST_BLOCK_S"])))
"""


class Worker:
    """``aura worker`` with the blocking signal handler (``SITECUSTOMIZE``); its log."""

    def __init__(self, s: Settings, log_path: Path, block_s: float) -> None:
        hook = log_path.parent / "blockhook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        path = os.pathsep.join([str(hook), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = {**os.environ, **settings_env(s), "TEST_BLOCK_S": str(block_s), "PYTHONPATH": path}
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker"], cwd=REPO_ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_ready(0)

    def readies(self) -> int:
        return self.log_path.read_bytes().count(b"Worker ready")

    def wait_ready(self, before: int) -> None:
        wait_for(lambda: self.proc.poll() is not None or self.readies() > before, timeout=120, interval=0.2,
                 what="the worker to be ready")
        assert self.proc.poll() is None, self.tail()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Any:
    started: list[Worker] = []

    def start(s: Settings, block_s: float = 0.0) -> Worker:  # block_s 0: no handler
        w = Worker(s, tmp_path / f"worker-{len(started)}.log", block_s)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def owns_all(s: Settings) -> bool:
    got = assignments(s)
    return len(got) == 1 and next(iter(got.values())) == set(range(s.kafka.topic_partitions))


def test_a_worker_left_out_of_its_group_after_a_blocked_loop_replaces_itself(isolated, start_worker, redis_client,
                                                                            cassandra):
    poll_s = 6.0
    s = isolated.replace(**{"batch_max": 500, "kafka_session_timeout_s": 6.0, "kafka_max_poll_interval_s": poll_s,
                            "worker_stall_s": float(os.environ.get("TEST_STALL_S", "20"))})
    w = start_worker(s, block_s=poll_s * 3)  # blocked well past the max poll interval, less than stall_s
    wait_for(lambda: owns_all(s), timeout=90, interval=1.0, what="the worker to own every partition")
    produce_storefront(s, 1_500, seed=41)
    wait_drained(s, [w])
    readies = w.readies()

    os.kill(w.proc.pid, BLOCK)
    # the consumer thread finds its fetcher idle past the max poll interval and leaves the group
    wait_for(lambda: not assignments(s), timeout=120, interval=1.0, what="the blocked worker to leave its group")
    produce_storefront(s, 1_500, seed=42)

    w.wait_ready(readies)  # replaced: the same process id started again
    wait_for(lambda: owns_all(s), timeout=240, interval=1.0, what="the worker to be back in its group")
    wait_drained(s, [w])
    assert_state_equals_reference(s, redis_client, cassandra, read_topic(s))
    log = w.log_path.read_text(errors="replace")
    assert "out of its consumer group" in log, w.tail()


def test_a_worker_stopped_past_its_session_timeout_rejoins_by_itself(isolated, start_worker, redis_client,
                                                                     cassandra):
    s = isolated.replace(**{"batch_max": 500, "kafka_session_timeout_s": 6.0, "worker_stall_s": 20.0})
    w = start_worker(s)
    wait_for(lambda: owns_all(s), timeout=90, interval=1.0, what="the worker to own every partition")
    produce_storefront(s, 1_500, seed=43)
    wait_drained(s, [w])

    os.kill(w.proc.pid, signal.SIGSTOP)
    try:  # the broker drops the silent member once its session times out
        wait_for(lambda: not assignments(s), timeout=120, interval=1.0, what="the broker to drop the stopped member")
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
    produce_storefront(s, 1_500, seed=44)

    wait_for(lambda: owns_all(s), timeout=240, interval=1.0, what="the worker to be back in its group")
    wait_drained(s, [w])
    assert_state_equals_reference(s, redis_client, cassandra, read_topic(s))
    assert "replacing the process" not in w.log_path.read_text(errors="replace")  # rejoined in place
