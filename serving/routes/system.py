"""System routes: health of each dependency (open), stats and stream lag (admin), Prometheus metrics.

Owns no state; reads the dependencies' health (``serving/health.py``), the breakers and counters
the process keeps (``serving/breakers.py``, ``serving/metrics.py``), the stream's counters in Redis and
the worker groups' consumer lag in Kafka (``serving/streamlag.py``).
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from serving import metrics
from serving.clients import REDIS_OUTAGE
from serving.deps import State
from serving.health import Health, check, memoized

router = APIRouter(tags=["system"])  # open: health checks come from load balancers without keys
ops_router = APIRouter(tags=["system"])  # admin: operational detail
metrics_router = APIRouter(tags=["system"])  # open or admin (settings.api.metrics_public)
docs_router = APIRouter(tags=["system"])  # the OpenAPI document behind an admin key (settings.api.docs_public)


@docs_router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/health", response_model=Health, summary="Status of the API and each dependency",
            description="Each dependency is checked at most once per `health_cache_s` (1 s) per process; "
                        "concurrent probes share the last result.",
            responses={503: {"model": Health, "description": "One or more dependencies are down"}})
async def health(state: State, response: Response) -> Health:
    """Load balancers probe often: one round of dependency checks per ``health_cache_s`` per process."""
    result = await memoized(state.health, state.settings.api.health_cache_s,
                            lambda: check(state.redis, state.cassandra, state.producer))
    if result.status != "ok":
        response.status_code = 503
    return result


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
        uptime_s=round(time.time() - state.started_at, 3), auth_enabled=state.settings.auth.enabled,
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


class TopicLag(BaseModel):
    lag: int = Field(description="Messages behind the end of the topic, over its partitions")
    partitions: int


class GroupLagOut(BaseModel):
    group: str = Field(description="The worker's Kafka consumer group (Faust app id)")
    lag: int = Field(description="Messages committed behind the end, over every partition the group reads")
    topics: dict[str, TopicLag] = Field(description="By topic, without the deployment's topic prefix")


class LagOut(BaseModel):
    read_at: int = Field(description="Epoch ms of the read (answers are cached 2 s per process)")
    groups: list[GroupLagOut] = Field(description="Worker groups with committed offsets (none: no worker yet)")

    model_config = {"json_schema_extra": {"examples": [{
        "read_at": 1796500000123, "groups": [{"group": "aura-worker", "lag": 42, "topics": {
            "events.behavior": {"lag": 40, "partitions": 12}, "events.identity": {"lag": 2, "partitions": 12}}}]}]}}


@ops_router.get("/stats/lag", response_model=LagOut, summary="Consumer lag of the worker groups, from Kafka",
                responses={503: {"description": "Kafka did not answer"}})
async def stream_lag(state: State) -> LagOut:
    if state.lag is None:
        raise HTTPException(503, "the stream lag reader is not configured")
    try:
        groups, read_at = await state.lag.read()
    except Exception as exc:  # noqa: BLE001 - any admin failure means Kafka cannot tell now
        raise HTTPException(503, f"Kafka did not answer the offset query ({type(exc).__name__})") from exc
    return LagOut(read_at=int(read_at * 1000), groups=[
        GroupLagOut(group=g.group, lag=g.lag, topics={t: TopicLag(**v) for t, v in g.topics.items()}) for g in groups])
