"""The API application: lifespan opens the clients once; routers are grouped by engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aura import bootstrap
from aura.layout import RedisKeys, Tables
from aura.settings import Settings, get_settings
from serving.routes import events, profiles, system
from serving.state import ApiState

log = logging.getLogger(__name__)
API_PREFIX = "/v1"


def prepare(session: object) -> dict[str, object]:
    return {
        "activity": session.prepare(  # type: ignore[attr-defined]
            f"SELECT counts, first_seen, last_seen, recent_items, applied_offset FROM {Tables.USER_ACTIVITY} "
            "WHERE user_id = ?"
        ),
    }


def connect_cassandra(s: Settings) -> tuple[object | None, dict[str, object]]:
    try:
        session = bootstrap.cassandra_session(s, request_timeout=2.0, connect_timeout=3.0)
        return session, prepare(session)
    except Exception as exc:  # noqa: BLE001 - the API starts degraded and says so in /health
        log.warning("Cassandra unreachable at start-up: %s", exc)
        return None, {}


def create_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session, statements = connect_cassandra(s)
        state = ApiState(settings=s, keys=RedisKeys(s.redis_prefix), redis=bootstrap.redis_async(s),
                         cassandra=session, producer=bootstrap.kafka_producer(s), statements=statements)
        app.state.aura = state
        try:
            yield
        finally:
            await state.redis.aclose()
            if state.producer is not None:
                state.producer.flush(5)
            if state.cassandra is not None:
                state.cassandra.cluster.shutdown()

    app = FastAPI(
        title="Aura Personalization Engine",
        version="0.1.0",
        description="Real-time personalization and recommendations served from state the event stream keeps fresh.",
        lifespan=lifespan,
    )
    app.include_router(system.router, prefix=API_PREFIX)
    app.include_router(profiles.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    return app
