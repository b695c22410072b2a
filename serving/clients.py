"""The API's Redis client and Cassandra session, each behind its circuit breaker.

Every router is protected without doing anything: the clients opened in the lifespan
(``serving/app.py``) consult their breaker (``serving/breakers.py``) on each call, count connection
errors and timeouts as failures and answers (error replies included) as successes. The Redis client
sends the commands of concurrent requests as shared pipelines (``serving/autopipe.py``) and packs
commands with hiredis. ``REDIS_OUTAGE`` and ``CASSANDRA_OUTAGE`` are the errors that mean "the store
cannot answer now" everywhere in serving/.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
from cassandra.cluster import NoHostAvailable, ResponseFuture, Session
from cassandra.connection import ConnectionException
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HIREDIS_AVAILABLE, HiredisRespSerializer

from aura.settings import Settings
from serving.autopipe import AutoPipeline, batchable
from serving.breakers import CircuitBreaker, CircuitOpen, DependencyUnavailable

REDIS_OUTAGE = (rexc.ConnectionError, rexc.TimeoutError)
CASSANDRA_OUTAGE = (NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout, WriteTimeout, ConnectionException)


# ---------------------------------------------------------------------------------------------
# Redis


class GuardedPipeline(Pipeline):
    breaker: CircuitBreaker

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.breaker.allow():
            await self.reset()
            raise CircuitOpen("redis")
        try:
            result = await super().execute(raise_on_error)
        except REDIS_OUTAGE:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result


class GuardedRedis(aioredis.Redis):
    """``redis.asyncio.Redis`` whose commands and pipelines go through a circuit breaker, and whose
    concurrent commands are coalesced into pipelines (``autopipe``)."""

    breaker: CircuitBreaker
    autopipe: AutoPipeline

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if batchable(args):
            return await self.autopipe.submit(args, options)
        return await self.execute_alone(*args, **options)

    async def execute_alone(self, *args: Any, **options: Any) -> Any:
        if not self.breaker.allow():
            raise CircuitOpen("redis")
        try:
            result = await super().execute_command(*args, **options)
        except REDIS_OUTAGE:
            self.breaker.failure()
            raise
        except rexc.ResponseError:
            self.breaker.success()  # the server answered
            raise
        self.breaker.success()
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> GuardedPipeline:
        pipe = GuardedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.breaker = self.breaker
        return pipe


class PackedConnection(aioredis.Connection):
    """redis-py's asyncio connection packs every command in Python (~2 us per argument; a hybrid
    recommendation sends ~110 arguments); its sync client's hiredis serializer packs the same bytes
    in C. Used when hiredis is installed (``redis[hiredis]``)."""

    _serializer: Any = None

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._serializer.pack(*args)


def connection_class() -> type[aioredis.Connection]:
    if not HIREDIS_AVAILABLE:
        return aioredis.Connection
    PackedConnection._serializer = HiredisRespSerializer()
    return PackedConnection


def guarded_redis(s: Settings, breaker: CircuitBreaker) -> GuardedRedis:
    """The API's Redis client: short timeouts, one retry without back-off, behind ``breaker``,
    commands of concurrent requests auto-pipelined.

    (redis-py's default retries ten times with back-off: seconds per request against a dead
    server. The breaker makes even the short timeout a rare cost.)
    """
    client = GuardedRedis.from_url(
        s.redis.url, decode_responses=True, socket_connect_timeout=s.api.redis_timeout_s,
        socket_timeout=s.api.redis_timeout_s, retry=Retry(NoBackoff(), 1), health_check_interval=0,
        connection_class=connection_class())
    client.breaker = breaker
    client.autopipe = AutoPipeline(client.execute_alone, lambda: client.pipeline(transaction=False))
    return client


# ---------------------------------------------------------------------------------------------
# Cassandra


class CassandraCircuitOpen(DependencyUnavailable):
    def __init__(self) -> None:
        super().__init__("cassandra", "cassandra circuit open (recent failures); retry shortly")


class GuardedSession:
    """A Cassandra ``Session`` proxy whose ``execute_async`` goes through a circuit breaker.

    Everything else (``prepare``, ``cluster``, ``execute``...) is the session's own.
    """

    def __init__(self, session: Session, breaker: CircuitBreaker) -> None:
        self._session = session
        self.breaker = breaker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def execute_async(self, *args: Any, **kwargs: Any) -> ResponseFuture:
        if not self.breaker.allow():
            raise CassandraCircuitOpen()
        try:
            fut = self._session.execute_async(*args, **kwargs)
        except CASSANDRA_OUTAGE:
            self.breaker.failure()
            raise
        breaker = self.breaker

        def ok(_rows: Any) -> None:
            breaker.success()

        def err(exc: BaseException) -> None:
            if isinstance(exc, CASSANDRA_OUTAGE):
                breaker.failure()
            else:
                breaker.success()

        fut.add_callbacks(ok, err)
        return fut
