"""System routes: health of each dependency (open), stats (admin), Prometheus metrics.

Owns no state; reads the breakers and counters the process keeps (``serving/degrade.py``,
``serving/metrics.py``) and the stream's counters in Redis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from aura.bootstrap import cassandra_execute
from serving import metrics
from serving.degrade import REDIS_OUTAGE
from serving.deps import State

router = APIRouter(tags=["system"])  # open: health checks come from load balancers without keys
ops_router = APIRouter(tags=["system"])  # admin: operational detail
metrics_router = APIRouter(tags=["system"])  # open or admin (Settings.metrics_public)


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


async def _timed(check: Any) -> Dependency:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - a failing dependency is reported, not raised
        return Dependency(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    return Dependency(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


@router.get("/health", response_model=Health, summary="Status of the API and each dependency",
            description="Each dependency is checked at most once per `health_cache_s` (1 s) per process; "
                        "concurrent probes share the last result.",
            responses={503: {"model": Health, "description": "One or more dependencies are down"}})
async def health(state: State, response: Response) -> Health:
    """Load balancers probe often: one round of dependency checks per ``health_cache_s`` per process."""
    cache, max_age = state.health, state.settings.health_cache_s
    hit = cache.get("last")
    if hit is None or time.monotonic() - hit[0] >= max_age:
        async with cache.setdefault("lock", asyncio.Lock()):
            hit = cache.get("last")
            if hit is None or time.monotonic() - hit[0] >= max_age:
                hit = cache["last"] = (time.monotonic(), await _check(state))
    result = hit[1]
    if result.status != "ok":
        response.status_code = 503
    return result


async def _check(state: Any) -> Health:
    async def redis() -> None:
        await state.redis.ping()

    async def cassandra() -> None:
        if state.cassandra is None:
            raise ConnectionError("not connected")
        await cassandra_execute(state.cassandra, "SELECT release_version FROM system.local", timeout=1.5)

    async def kafka() -> None:
        if state.producer is None:
            raise ConnectionError("no producer")
        md = await asyncio.to_thread(state.producer.list_topics, timeout=1.5)
        if not md.brokers:
            raise ConnectionError("no brokers in metadata")

    checks = dict(zip(("redis", "cassandra", "kafka"),
                      await asyncio.gather(_timed(redis), _timed(cassandra), _timed(kafka)), strict=True))
    healthy = sum(d.ok for d in checks.values())
    status = "ok" if healthy == len(checks) else ("down" if healthy == 0 else "degraded")
    return Health(status=status, dependencies=checks)


class BreakerStats(BaseModel):
    state: Literal["closed", "open", "half-open"]
    opened_total: int = Field(description="Times the breaker opened since start")
    rejected_total: int = Field(description="Calls refused at once while open")


class Stats(BaseModel):
    uptime_s: float
    auth_enabled: bool
    breakers: dict[str, BreakerStats]
    intake: dict[str, int] = Field(description="Behavior intake outcomes (accepted, duplicate, dead), from Redis")
    deadletters: dict[str, int] = Field(description="Dead-lettered records by reason, from Redis")
    counters_stale: bool = Field(description="True when Redis could not be read and the counters are the last known")
    popular_lists_cached: int = Field(description="Popular lists held for the both-stores-down fallback")

    model_config = {"json_schema_extra": {"examples": [{
        "uptime_s": 3600.5, "auth_enabled": True,
        "breakers": {"redis": {"state": "closed", "opened_total": 0, "rejected_total": 0}},
        "intake": {"accepted": 120400, "duplicate": 12, "dead": 3}, "deadletters": {"bad_frame": 3},
        "counters_stale": False, "popular_lists_cached": 2}]}}


@ops_router.get("/stats", response_model=Stats, summary="Process statistics: breakers, intake, dead letters")
async def stats(state: State) -> Stats:
    stale = False
    try:
        await metrics.refresh_stream_counters(state)
    except REDIS_OUTAGE:
        stale = True
    counters = metrics._stream_counters
    return Stats(
        uptime_s=round(time.time() - state.started_at, 3), auth_enabled=state.settings.auth_enabled,
        breakers={n: BreakerStats(state=b.state, opened_total=b.opened_total,  # type: ignore[arg-type]
                                  rejected_total=b.rejected_total) for n, b in state.breakers.all().items()},
        intake=dict(counters["intake"]), deadletters=dict(counters["deadletter"]), counters_stale=stale,
        popular_lists_cached=len(state.popular.lists),
    )


@metrics_router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def prometheus_metrics(state: State) -> Response:
    try:
        await metrics.refresh_stream_counters(state)
    except REDIS_OUTAGE:
        pass  # the last known counters are exposed
    return Response(metrics.exposition(state), media_type=CONTENT_TYPE_LATEST)
