"""Shared fixtures: the real stack started once per session, and per-test isolation.

Every integration or e2e test gets its own topic prefix, consumer group and Redis key prefix
(``isolated``); the Cassandra keyspace ``aura_test`` is migrated once per session. Under
``CI=true`` a stack that cannot start fails the run; locally the dependent tests are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aura.settings import REPO_ROOT, Settings, settings_env

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_KEYSPACE = "aura_test"
STACK_TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how long each service of the shared stack took to become ready (0.0: it already was)."""
    if STACK_TIMINGS:
        terminalreporter.write_line(
            "stack ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in STACK_TIMINGS.items()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that kill real services run last, so they cannot disturb the others."""
    items.sort(key=lambda item: 1 if item.get_closest_marker("recovery") else 0)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings().replace(cassandra_keyspace=TEST_KEYSPACE)


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Settings]:
    """The real Kafka, Cassandra and Redis, up and migrated (keyspace aura_test)."""
    from infra import stack as local_stack
    from infra.migrate import migrate

    started_here = not all(local_stack.status(base_settings)[n]["answers"] for n in local_stack.SERVICES)
    try:
        timings = local_stack.up(base_settings)
        migrate(base_settings)
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail(f"the stack could not start under CI: {exc}", pytrace=False)
        pytest.skip(f"stack unavailable: {exc}")
    STACK_TIMINGS.update(timings)
    yield base_settings
    if IN_CI and started_here and os.environ.get("AURA_KEEP_STACK") != "1":
        local_stack.down(base_settings)


@pytest.fixture
def isolated(stack: Settings) -> Iterator[Settings]:
    """Settings of one test: its own topics, consumer group and Redis keys.

    The test's topics (ours and Faust's internal ones, all named after the tag) are deleted
    afterwards, so that a long suite does not pile up thousands of partitions in the one broker.
    """
    from aura import layout
    from infra.migrate import drop_topics, ensure_topics

    tag = f"t{uuid.uuid4().hex[:10]}"
    s = stack.replace(**{"topic_prefix": tag, "redis_prefix": tag, "consumer_group": f"{tag}-worker",
                                 "topic_partitions": 4, "redis_config_scope": tag})
    ensure_topics(s, layout.ALL_TOPICS)
    yield s
    drop_topics(s, tag)


@pytest.fixture(autouse=True)
def no_leftover_segments(request: pytest.FixtureRequest) -> Iterator[None]:
    """Segment definitions a test on the real stack stored are deleted after it, so that the shared
    keyspace does not pile them up. An ``isolated`` test stores its configuration under its own scope
    (``AURA_REDIS_CONFIG_SCOPE``, aura/configcache.py): no other test or session sees it, and only
    that scope's rows are deleted (never another session's). A test on the stack without
    ``isolated`` stores unscoped definitions, which every unscoped worker folds with: the unscoped
    rows it added are deleted. Tests without the stack are untouched."""
    if "stack" not in request.fixturenames:
        yield
        return
    from aura.configcache import SCOPE_SEP
    from aura.layout import Tables

    cassandra = request.getfixturevalue("cassandra")
    table = f"{TEST_KEYSPACE}.{Tables.SEGMENTS}"
    scope = request.getfixturevalue("isolated").redis.config_scope if "isolated" in request.fixturenames else ""
    before = set() if scope else {r.segment_id for r in cassandra.execute(f"SELECT segment_id FROM {table}")}
    yield
    for r in cassandra.execute(f"SELECT segment_id FROM {table}"):
        mine = r.segment_id.startswith(scope + SCOPE_SEP) if scope else (
            SCOPE_SEP not in r.segment_id and r.segment_id not in before)
        if mine:
            cassandra.execute(f"DELETE FROM {table} WHERE segment_id = %s IF EXISTS", (r.segment_id,))


@pytest.fixture
def redis_client(isolated: Settings) -> Iterator[Any]:
    from aura.bootstrap import redis_sync

    client = redis_sync(isolated)
    yield client
    for key in client.scan_iter(f"{isolated.redis.prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def redis_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Commands per round trip of the async Redis client (a pipeline counts its commands, a single
    command 1), recorded while the test runs: for asserting how few round trips a read makes."""
    import redis.asyncio.client as aioclient

    counted: list[int] = []
    real_execute, real_command = aioclient.Pipeline.execute, aioclient.Redis.execute_command

    async def execute(self: Any, *a: Any, **kw: Any) -> Any:
        counted.append(len(self.command_stack))
        return await real_execute(self, *a, **kw)

    async def execute_command(self: Any, *a: Any, **kw: Any) -> Any:
        counted.append(1)
        return await real_command(self, *a, **kw)

    monkeypatch.setattr(aioclient.Pipeline, "execute", execute)
    monkeypatch.setattr(aioclient.Redis, "execute_command", execute_command)
    return counted


@pytest.fixture(scope="session")
def cassandra(stack: Settings) -> Iterator[Any]:
    from aura.bootstrap import cassandra_session

    session = cassandra_session(stack)
    yield session
    session.cluster.shutdown()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last value {last!r}")


class WorkerProcess:
    """``aura worker`` in a subprocess with a test's settings."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 90.0) -> WorkerProcess:
        env = {**os.environ, **settings_env(self.settings)}
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "aura.cli", "worker"], cwd=REPO_ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or b"Worker ready" in self.log_path.read_bytes(),
                 timeout=ready_timeout, interval=0.2, what="the worker to be ready")
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
        return self

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def worker_factory(isolated: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers (default: the test's settings); all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(settings: Settings | None = None, name: str = "worker") -> WorkerProcess:
        w = WorkerProcess(settings or isolated, tmp_path / f"{name}-{len(started)}.log").start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture(scope="session")
def key_store(stack: Settings, cassandra: Any) -> Any:
    """The API key store over the test keyspace (keys live in Cassandra, cached by each test's Redis prefix)."""
    from aura.apikeys import KeyStore

    return KeyStore(stack, cassandra)


@pytest.fixture
def api_key(key_store: Any) -> Callable[..., str]:
    """Create API keys for this test: ``api_key("read")``, ``api_key("read", "events", rate=5, burst=2)``."""

    def create(*scopes: str, name: str = "test", rate: float = 100_000.0, burst: int = 100_000) -> str:
        _rec, token = key_store.create(name, scopes or ("admin",), rate, burst)
        return token

    return create


@pytest.fixture
def api_client(isolated: Settings, api_key: Callable[..., str]) -> Iterator[Any]:
    """The FastAPI app in-process (real clients, the test's settings), sending an admin key
    (no practical rate limit) on every request; pass ``headers=`` per request to use another key."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    headers = {"Authorization": f"Bearer {api_key('admin', name='api_client')}"}
    with TestClient(create_app(isolated), headers=headers) as client:
        yield client
