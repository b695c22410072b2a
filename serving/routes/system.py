"""System routes: health of each dependency."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from aura.bootstrap import cassandra_execute
from serving.deps import State

router = APIRouter(tags=["system"])


class Dependency(BaseModel):
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    dependencies: dict[str, Dependency]


async def _timed(check: Any) -> Dependency:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - a failing dependency is reported, not raised
        return Dependency(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    return Dependency(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


@router.get("/health", response_model=Health, summary="Status of the API and each dependency")
async def health(state: State, response: Response) -> Health:
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
    if status != "ok":
        response.status_code = 503
    return Health(status=status, dependencies=checks)
