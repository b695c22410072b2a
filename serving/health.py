"""Health of the API's dependencies: the ``/v1/health`` answer, its checks and its per-process memo.

Load balancers probe often, so one round of checks (Redis PING, a Cassandra system query, Kafka
metadata; each timed, at most 2 s) is shared by every probe of the next ``health_cache_s``; the memo
lives in the process's ``ApiState``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import Producer
from pydantic import BaseModel

from aura.bootstrap import cassandra_execute
from serving.clients import GuardedRedis, GuardedSession


class Dependency(BaseModel):
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    dependencies: dict[str, Dependency]

    model_config = {"json_schema_extra": {"examples": [{
        "status": "degraded",
        "dependencies": {"redis": {"ok": False, "error": "ConnectionError: Error 111 connecting to 127.0.0.1:6379"},
                         "cassandra": {"ok": True, "latency_ms": 1.2}, "kafka": {"ok": True, "latency_ms": 0.8}}}]}}


@dataclass
class HealthMemo:
    """The last result and when it was taken (monotonic); concurrent probes wait on ``lock`` for one round."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last: tuple[float, Health] | None = None


async def timed(check: Callable[[], Awaitable[None]]) -> Dependency:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - a failing dependency is reported, not raised
        return Dependency(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    return Dependency(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


async def check(redis: GuardedRedis, session: GuardedSession | None, producer: Producer | None) -> Health:
    """One round of checks, concurrently: ok (all answer), degraded (some) or down (none)."""

    async def redis_ok() -> None:
        await redis.ping()

    async def cassandra_ok() -> None:
        if session is None:
            raise ConnectionError("not connected")
        await cassandra_execute(session, "SELECT release_version FROM system.local", timeout=1.5)

    async def kafka_ok() -> None:
        if producer is None:
            raise ConnectionError("no producer")
        md = await asyncio.to_thread(producer.list_topics, timeout=1.5)
        if not md.brokers:
            raise ConnectionError("no brokers in metadata")

    checks = dict(zip(("redis", "cassandra", "kafka"),
                      await asyncio.gather(timed(redis_ok), timed(cassandra_ok), timed(kafka_ok)), strict=True))
    healthy = sum(d.ok for d in checks.values())
    status = "ok" if healthy == len(checks) else ("down" if healthy == 0 else "degraded")
    return Health(status=status, dependencies=checks)


async def memoized(memo: HealthMemo, max_age_s: float,
                   run: Callable[[], Awaitable[Health]]) -> Health:
    """The memo's result while younger than ``max_age_s``, else one new round shared by concurrent callers."""
    hit = memo.last
    if hit is None or time.monotonic() - hit[0] >= max_age_s:
        async with memo.lock:
            hit = memo.last
            if hit is None or time.monotonic() - hit[0] >= max_age_s:
                hit = memo.last = (time.monotonic(), await run())
    return hit[1]
