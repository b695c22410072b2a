"""Composition root: builds the clients every process needs (Cassandra, Redis, Kafka) from settings.

Worker, API, jobs and the CLI call these once at start-up and pass the results down; nothing in
Aura connects at import time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from aura.settings import Settings


def cassandra_cluster(s: Settings, *, request_timeout: float = 10.0, connect_timeout: float = 5.0) -> Any:
    """A Cassandra ``Cluster`` with one execution profile (token-aware, LOCAL_QUORUM)."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=request_timeout,
    )
    return Cluster(
        s.cassandra.host_list, port=s.cassandra.port, protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=connect_timeout,
    )


def cassandra_session(s: Settings, *, keyspace: bool = True, **kwargs: Any) -> Any:
    """Connect and return a session (bound to the Aura keyspace unless ``keyspace=False``)."""
    cluster = cassandra_cluster(s, **kwargs)
    return cluster.connect(s.cassandra.keyspace if keyspace else None)


def redis_async(s: Settings, **kwargs: Any) -> Any:
    """An asyncio Redis client (connects lazily, pooled); ``kwargs`` go to its connections (e.g. the
    worker's ``redis_connect_func``)."""
    return aioredis.Redis.from_url(s.redis.url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True,
                                   **kwargs)


def redis_sync(s: Settings) -> Any:
    """A blocking Redis client (the CLI, jobs and tests)."""
    return redis.Redis.from_url(s.redis.url, socket_connect_timeout=2, socket_timeout=5, decode_responses=True)


def kafka_producer(s: Settings, **overrides: Any) -> Any:
    """A confluent-kafka producer tuned for batching (lz4, a short linger, idempotence on)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": s.kafka.bootstrap,
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
        "message.max.bytes": 4_000_000,
    }
    conf.update(overrides)
    return Producer(conf)


def kafka_admin(s: Settings) -> Any:
    return AdminClient({"bootstrap.servers": s.kafka.bootstrap, "socket.timeout.ms": 3000})


async def cassandra_execute(session: Any, statement: Any, params: Any = None, timeout: float | None = None) -> Any:
    """Await a Cassandra query without blocking the event loop (driver future -> asyncio future)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    rf = session.execute_async(statement, params, timeout=timeout)

    def ok(rows: Any) -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(rows))

    def err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

    rf.add_callbacks(ok, err)
    return await fut


async def cassandra_rows(session: Any, statement: Any, timeout: float | None = None) -> list[Any]:
    """Every row of a query, all pages (fetched one after the other on the driver's thread), without
    blocking the event loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[Any]] = loop.create_future()
    rows: list[Any] = []
    rf = session.execute_async(statement, timeout=timeout)

    def ok(page: Any) -> None:
        rows.extend(page)
        if rf.has_more_pages:
            rf.start_fetching_next_page()
        else:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(rows))

    def err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

    rf.add_callbacks(ok, err)
    return await fut


def epoch_ms(value: datetime | None) -> int | None:
    """A Cassandra ``timestamp`` (naive UTC datetime from the driver) as epoch milliseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)
