"""Graceful degradation of the API: circuit breakers, guarded clients, fallbacks, outage -> 503.

Owns the per-process breaker state of each dependency, the last known popular lists (in memory,
snapshotted to ``<home>/cache/popular.json``) and the mapping of dependency errors to HTTP answers.

- :class:`CircuitBreaker`: after ``breaker_failures`` consecutive connection errors or timeouts a
  dependency is skipped for ``breaker_reset_s`` (calls fail at once instead of costing a timeout
  each); then one trial call is let through and its outcome closes or re-opens the breaker.
- :func:`guarded_redis` / :class:`GuardedSession`: the API's Redis client and Cassandra session,
  with the breaker built in, so every router is protected without doing anything.
- :func:`read_through`: per-request "Redis first, Cassandra as fallback" helper that marks a
  degraded answer with the ``X-Aura-Degraded`` header.
- :class:`PopularCache` / :func:`stale_popular`: the last popular list that was served, answered
  with ``X-Aura-Degraded: stale-popular`` when both stores are down.
- :func:`install_handlers`: a dependency error that escapes a route becomes a 503 with
  ``Retry-After`` and ``X-Aura-Degraded: <dependency>-down``, never a 500.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aura.settings import Settings
from serving.autopipe import AutoPipeline, batchable

log = logging.getLogger(__name__)
T = TypeVar("T")
DEGRADED_HEADER = "X-Aura-Degraded"
STALE_POPULAR = "stale-popular"


# ---------------------------------------------------------------------------------------------
# circuit breaker


class CircuitOpen(rexc.ConnectionError):
    """Raised instead of calling a dependency whose breaker is open (a ConnectionError subclass,
    so code that already handles Redis connection errors handles it too)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} circuit open (recent failures); not calling it")
        self.dependency = name


class DependencyUnavailable(Exception):  # noqa: N818 - reads better at raise sites
    """A request needs a dependency (or all of several) that cannot answer now."""

    def __init__(self, dependency: str, detail: str | None = None) -> None:
        super().__init__(detail or f"{dependency} unavailable")
        self.dependency = dependency
        self.detail = detail or f"{dependency} unavailable; retry shortly"


@dataclass
class CircuitBreaker:
    """Consecutive-failure breaker: closed -> open (after ``failures``) -> half-open (after ``reset_s``)."""

    name: str
    failures: int = 3
    reset_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    opened_total: int = 0
    rejected_total: int = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        """Whether to call the dependency now (in half-open state: one trial at a time)."""
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.reset_s and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        self.rejected_total += 1
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.trial_in_flight = False

    def failure(self) -> None:
        self.consecutive += 1
        if self.trial_in_flight or self.consecutive >= self.failures:
            if self.opened_at is None or self.trial_in_flight:
                self.opened_total += 1
            self.opened_at = self.clock()
        self.trial_in_flight = False

    def retry_after_s(self) -> int:
        if self.opened_at is None:
            return 1
        return max(1, int(self.reset_s - (self.clock() - self.opened_at) + 0.999))


@dataclass
class Breakers:
    redis: CircuitBreaker
    cassandra: CircuitBreaker
    kafka: CircuitBreaker

    @classmethod
    def from_settings(cls, s: Settings) -> Breakers:
        def mk(name: str) -> CircuitBreaker:
            return CircuitBreaker(name, failures=s.breaker_failures, reset_s=s.breaker_reset_s)

        return cls(mk("redis"), mk("cassandra"), mk("kafka"))

    def all(self) -> dict[str, CircuitBreaker]:
        return {"redis": self.redis, "cassandra": self.cassandra, "kafka": self.kafka}


# ---------------------------------------------------------------------------------------------
# guarded clients

REDIS_OUTAGE = (rexc.ConnectionError, rexc.TimeoutError)


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
    """``redis.asyncio.Redis`` whose commands and pipelines go through a circuit breaker."""

    breaker: CircuitBreaker
    autopipe: AutoPipeline | None = None  # concurrent commands coalesced into pipelines (serving/autopipe.py)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.autopipe is not None and batchable(args):
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
    from redis.connection import HIREDIS_AVAILABLE, HiredisRespSerializer

    if not HIREDIS_AVAILABLE:
        return aioredis.Connection
    PackedConnection._serializer = HiredisRespSerializer()
    return PackedConnection


def guarded_redis(s: Settings, breaker: CircuitBreaker) -> GuardedRedis:
    """The API's Redis client: short timeouts, one retry without back-off, behind ``breaker``.

    (redis-py's default retries ten times with back-off: seconds per request against a dead
    server. The breaker makes even the short timeout a rare cost.)
    """
    client = GuardedRedis.from_url(
        s.redis_url, decode_responses=True, socket_connect_timeout=s.api_redis_timeout_s,
        socket_timeout=s.api_redis_timeout_s, retry=Retry(NoBackoff(), 1), health_check_interval=0,
        connection_class=connection_class())
    client.breaker = breaker
    if s.api_redis_autopipe:
        client.autopipe = AutoPipeline(client.execute_alone, lambda: client.pipeline(transaction=False))
    return client


def cassandra_outage_errors() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException

    return NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout, WriteTimeout, ConnectionException


class CassandraCircuitOpen(DependencyUnavailable):
    def __init__(self) -> None:
        super().__init__("cassandra", "cassandra circuit open (recent failures); retry shortly")


class GuardedSession:
    """A Cassandra ``Session`` proxy whose ``execute_async`` goes through a circuit breaker.

    Everything else (``prepare``, ``cluster``, ``execute``...) is the session's own.
    """

    def __init__(self, session: Any, breaker: CircuitBreaker) -> None:
        self._session = session
        self.breaker = breaker
        self._outage = cassandra_outage_errors()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def execute_async(self, *args: Any, **kwargs: Any) -> Any:
        if not self.breaker.allow():
            raise CassandraCircuitOpen()
        try:
            fut = self._session.execute_async(*args, **kwargs)
        except self._outage:
            self.breaker.failure()
            raise
        breaker, outage = self.breaker, self._outage

        def ok(_rows: Any) -> None:
            breaker.success()

        def err(exc: BaseException) -> None:
            if isinstance(exc, outage):
                breaker.failure()
            else:
                breaker.success()

        fut.add_callbacks(ok, err)
        return fut


# ---------------------------------------------------------------------------------------------
# per-request fallback helpers


def mark_degraded(response: Response, reason: str) -> None:
    """Say in the answer that it was served in a degraded mode (``redis-down``, ``stale-popular``...)."""
    prev = response.headers.get(DEGRADED_HEADER)
    response.headers[DEGRADED_HEADER] = reason if not prev else f"{prev}, {reason}"


@dataclass
class Sourced(Generic[T]):
    value: T | None
    source: str  # "redis" | "cassandra"


async def read_through(response: Response | None, redis: Callable[[], Awaitable[T | None]],
                       cassandra: Callable[[], Awaitable[T | None]] | None = None) -> Sourced[T]:
    """Redis first; on a Redis outage, or a Redis miss, Cassandra. Raises DependencyUnavailable
    when no store could answer. ``value`` None means "answered, not found".

    A Redis outage served from Cassandra is marked ``X-Aura-Degraded: redis-down``.
    """
    redis_error: BaseException | None = None
    try:
        value = await redis()
        if value is not None or cassandra is None:
            return Sourced(value, "redis")
    except REDIS_OUTAGE as exc:
        redis_error = exc
    if cassandra is None:
        raise DependencyUnavailable("redis") from redis_error
    try:
        value = await cassandra()
    except (DependencyUnavailable, *cassandra_outage_errors()) as exc:
        raise DependencyUnavailable("redis+cassandra" if redis_error else "cassandra") from exc
    if redis_error is not None and response is not None:
        mark_degraded(response, "redis-down")
    return Sourced(value, "cassandra")


@dataclass
class PopularCache:
    """The last popular lists served (per key, e.g. "" or a category), kept to answer when both
    stores are down. Routes that serve popular/trending lists call :meth:`remember`; the lists are
    snapshotted to disk at most every ``snapshot_every_s`` so a restarted process has them too."""

    path: Path | None = None
    snapshot_every_s: float = 30.0
    lists: dict[str, list[Any]] = field(default_factory=dict)
    saved_at: float = 0.0
    dirty: bool = False

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.lists = {str(k): list(v) for k, v in data.items()}
        except (OSError, ValueError) as exc:
            log.warning("popular cache snapshot %s unreadable: %s", self.path, exc)

    def remember(self, items: list[Any], key: str = "") -> None:
        if not items or self.lists.get(key) == items:
            return
        self.lists[key] = list(items)
        self.dirty = True
        if time.monotonic() - self.saved_at >= self.snapshot_every_s:
            self.save()

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.lists))
            tmp.replace(self.path)
            self.saved_at = time.monotonic()
            self.dirty = False
        except OSError as exc:
            log.warning("cannot snapshot popular cache to %s: %s", self.path, exc)

    def get(self, key: str = "") -> list[Any]:
        return self.lists.get(key) or self.lists.get("") or []


def stale_popular(cache: PopularCache, response: Response, limit: int, key: str = "") -> list[Any]:
    """The last popular list (``key``, else the global one), marked ``X-Aura-Degraded: stale-popular``."""
    mark_degraded(response, STALE_POPULAR)
    return cache.get(key)[:limit]


# ---------------------------------------------------------------------------------------------
# exception handlers


def _dependency_of(exc: BaseException) -> str:
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, REDIS_OUTAGE):
        return "redis"
    mod = type(exc).__module__
    if mod.startswith("cassandra"):
        return "cassandra"
    if mod.startswith("confluent_kafka") or isinstance(exc, BufferError):
        return "kafka"
    return "dependency"


class SafeJSONResponse(JSONResponse):
    """JSON whose strings may hold lone surrogates (from ``\\udXXX`` escapes in a request): they are
    replaced instead of failing the UTF-8 encoding."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":")).encode("utf-8", "replace")


def unavailable_response(exc: BaseException, retry_after_s: int = 1) -> JSONResponse:
    dep = _dependency_of(exc)
    detail = exc.detail if isinstance(exc, DependencyUnavailable) else f"{dep} unavailable; retry shortly"
    return JSONResponse({"detail": detail}, status_code=503,
                        headers={"Retry-After": str(retry_after_s), DEGRADED_HEADER: f"{dep}-down"})


def outage_exceptions() -> tuple[type[BaseException], ...]:
    from confluent_kafka import KafkaException

    return (DependencyUnavailable, *REDIS_OUTAGE, *cassandra_outage_errors(), KafkaException, BufferError)


def install_handlers(app: FastAPI) -> None:
    """Dependency outages that escape a route -> 503 (+Retry-After); anything else -> a JSON 500."""

    async def on_outage(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: dependency outage: %s", request.method, request.url.path, exc)
        state = getattr(request.app.state, "aura", None)
        retry = 1
        if state is not None:
            b = state.breakers.all().get(_dependency_of(exc))
            retry = b.retry_after_s() if b is not None else 1
        return unavailable_response(exc, retry)

    for exc_type in outage_exceptions():
        app.add_exception_handler(exc_type, on_outage)

    from fastapi.exception_handlers import http_exception_handler
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def on_http(request: Request, exc: Exception) -> Response:
        """Routes' own HTTPExceptions, as FastAPI answers them; a 503 always carries Retry-After."""
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 503 and not (exc.headers and "Retry-After" in exc.headers):
            exc.headers = {**(exc.headers or {}), "Retry-After": "1"}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, on_http)

    from pydantic import ValidationError

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        """A model built inside a route from request data refused it: that is the client's 422, not a 500."""
        assert isinstance(exc, ValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors(include_url=False, include_context=False, include_input=False)]
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(ValidationError, on_validation)

    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError

    async def on_request_validation(request: Request, exc: Exception) -> JSONResponse:
        """FastAPI's 422, rendered so that an echoed input with a lone surrogate cannot become a 500."""
        assert isinstance(exc, RequestValidationError)
        return SafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    app.add_exception_handler(RequestValidationError, on_request_validation)

    async def on_unicode(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "strings must be valid Unicode text (no lone surrogates)"}, status_code=422)

    app.add_exception_handler(UnicodeError, on_unicode)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(Exception, on_error)
