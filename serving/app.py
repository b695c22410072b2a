"""The API application: lifespan opens the clients once; routers are grouped by engine.

This module is the one place where the security policy of every route group is set: each
``include_router`` carries ``dependencies=checked(guard(...))`` (GET needs ``read``; writes need the
group's write scope; per-route overrides), so a router whose author forgot about auth is still
covered and fails closed. ``/v1/health`` is always open; ``/metrics`` and the docs are open in
development and admin-only elsewhere (``AURA_METRICS_PUBLIC``, ``AURA_DOCS_PUBLIC`` override).
Every group also refuses unknown query parameters (422 naming them, ``checked``), except the open
mail-tracking routes (pixel, click redirect): mail clients and link scanners fetch those, and a
visitor's click must never fail. Errors are ``{"detail": ...}``; dependency outages are 503 (never 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cassandra.cluster import Session
from cassandra.query import PreparedStatement
from fastapi import FastAPI, params
from fastapi.middleware.cors import CORSMiddleware

from aura import bootstrap
from aura.keys import keys_for
from aura.layout import Tables
from aura.settings import Settings, get_settings
from serving.breakers import Breakers
from serving.clients import REDIS_OUTAGE, GuardedSession, guarded_redis
from serving.console import MOUNT as CONSOLE_MOUNT
from serving.console import console_app
from serving.edge import BodyGate
from serving.examples import document_examples
from serving.fallbacks import PopularCache
from serving.fastpath import FastPath
from serving.handlers import install_handlers
from serving.metrics import EdgeMiddleware
from serving.query import KNOWN_QUERY
from serving.responses import SECURED_RESPONSES, document_error_contract
from serving.routes import analytics as analytics_routes
from serving.routes import bandits as bandit_routes
from serving.routes import campaigns as campaign_routes
from serving.routes import content as content_routes
from serving.routes import docs as docs_routes
from serving.routes import events, model_admin, profile_search, profile_writes, profiles, segments, system
from serving.routes import experiments as experiment_routes
from serving.routes import insights as insight_routes
from serving.routes import models as model_routes
from serving.routes import personalization as personalization_routes
from serving.routes import recommendations as recs_routes
from serving.routes import retention as retention_routes
from serving.security import ADMIN, EVENTS, READ, guard
from serving.state import ApiState
from serving.streamlag import LagReader

log = logging.getLogger(__name__)
API_PREFIX = "/v1"

TAGS = [
    {"name": "system", "description": "Health (open), statistics (admin) and Prometheus metrics."},
    {"name": "profiles", "description": "User profiles and activity as the stream materialized them. "
                                        "GET: `read`; writes: `events` (erase: `admin`)."},
    {"name": "events", "description": "Event ingest over HTTP, produced to Kafka. `events` scope; catalog "
                                      "writes need `admin`."},
]


def prepare(session: Session) -> dict[str, PreparedStatement]:
    return {
        "activity": session.prepare(
            f"SELECT counts, first_seen, last_seen, recent_items, applied_offset FROM {Tables.USER_ACTIVITY} "
            "WHERE user_id = ?"
        ),
    }


def connect_cassandra(s: Settings) -> tuple[Session | None, dict[str, PreparedStatement]]:
    try:
        session = bootstrap.cassandra_session(s, request_timeout=2.0, connect_timeout=3.0)
        return session, prepare(session)
    except Exception as exc:  # noqa: BLE001 - the API starts degraded and says so in /health
        log.warning("Cassandra unreachable at start-up: %s", exc)
        return None, {}


async def _reconnect_cassandra(state: ApiState) -> None:
    """While Cassandra is unreachable (it was down at start-up), try again every breaker period."""
    while state.cassandra is None:
        await asyncio.sleep(state.settings.api.breaker_reset_s)
        session, statements = await asyncio.to_thread(connect_cassandra, state.settings)
        if session is not None:
            state.statements.update(statements)
            state.cassandra = GuardedSession(session, state.breakers.cassandra)
            log.warning("Cassandra reachable again; reconnected")


POPULAR_REFRESH_S = 30.0
POPULAR_KEEP = 200


async def _refresh_popular(state: ApiState) -> None:
    """Keep the last popular list (the ``recs_popular`` sorted set) for the both-down fallback."""
    while True:
        try:
            raw = await state.redis.zrevrange(state.keys.recs_popular(), 0, POPULAR_KEEP - 1, withscores=True)
            state.popular.remember([{"item_id": i, "score": float(sc)} for i, sc in raw])
        except REDIS_OUTAGE:
            pass  # keep the last list; that is the point
        except Exception:  # noqa: BLE001 - never let the refresher die
            log.exception("popular list refresh failed")
        await asyncio.sleep(POPULAR_REFRESH_S)


def tune_gc(threshold: int) -> None:
    """Fewer collections of the young generation (``threshold`` allocations between them instead of
    Python's 700) and the objects alive after startup frozen out of every collection: a request
    allocates hundreds of short-lived containers, and each full collection walked the whole imported
    app (docs/api.md)."""
    if not _gc_frozen:  # once per process (a test process starts many apps; later ones stay collectable)
        gc.collect()
        gc.freeze()
        _gc_frozen.append(True)
    gc.set_threshold(threshold, *gc.get_threshold()[1:])


_gc_frozen: list[bool] = []


def checked(*group: params.Depends) -> list[params.Depends]:
    """A route group's dependencies: its guard (authentication comes first: 401 before 422), then the
    refusal of unknown query parameters (serving/query.py)."""
    return [*group, KNOWN_QUERY]


def create_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        breakers = Breakers.from_settings(s)
        session, statements = connect_cassandra(s)
        state = ApiState(settings=s, keys=keys_for(s), redis=guarded_redis(s, breakers.redis),
                         cassandra=GuardedSession(session, breakers.cassandra) if session is not None else None,
                         producer=bootstrap.kafka_producer(s), statements=statements, breakers=breakers,
                         popular=PopularCache(path=s.home / "cache" / f"popular-{s.redis.prefix}.json"),
                         lag=LagReader(bootstrap.kafka_admin(s), s))
        state.popular.load()
        app.state.aura = state
        tasks = [asyncio.create_task(_refresh_popular(state))]
        if s.api.gc_threshold:
            tune_gc(s.api.gc_threshold)
        if session is None:
            tasks.append(asyncio.create_task(_reconnect_cassandra(state)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.popular.save()
            await state.redis.aclose()
            if state.producer is not None:
                state.producer.flush(5)
            if state.cassandra is not None:
                state.cassandra.cluster.shutdown()

    development = s.environment == "development"
    open_metrics = s.api.metrics_public if s.api.metrics_public is not None else development
    open_docs = s.api.docs_public if s.api.docs_public is not None else development
    # the documentation pages are serving/routes/docs.py (offline assets); FastAPI serves only /openapi.json
    closed_docs: dict[str, Any] = {} if open_docs else {"openapi_url": None}
    app = FastAPI(
        **closed_docs,
        docs_url=None,
        redoc_url=None,
        title="Aura Personalization Engine",
        version="0.1.0",
        description="Real-time personalization and recommendations served from state the event stream keeps "
                    "fresh.\n\nAuthenticate with an API key (`aura keys create --scope read --name storefront`) "
                    "sent as `X-API-Key` or `Authorization: Bearer`. Scopes: `read` (GET), `events` (event and "
                    "tracking POSTs), `admin` (configuration writes; covers all). See docs/api.md.",
        lifespan=lifespan,
        openapi_tags=TAGS,
        # metrics are Prometheus (serving/metrics.py); FastAPI's native OpenTelemetry hook otherwise
        # looks up the OTel providers (environment variables) on every request: ~2% of a profile read
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_handlers(app)
    document_error_contract(app)
    document_examples(app)  # an example for every body and answer (serving/examples.py)
    secured: dict[str, Any] = {"responses": SECURED_RESPONSES}

    app.include_router(system.router, prefix=API_PREFIX, dependencies=checked())  # /v1/health: open
    app.include_router(system.ops_router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN, read=ADMIN)),
                       **secured)
    if open_metrics:
        app.include_router(system.metrics_router, dependencies=checked())
    else:
        app.include_router(system.metrics_router, dependencies=checked(guard(read=ADMIN)), **secured)
    if not open_docs:  # the same documents, for admin keys only
        app.include_router(system.docs_router, dependencies=checked(guard(read=ADMIN)), include_in_schema=False)
    app.include_router(docs_routes.router, dependencies=checked() if open_docs else checked(guard(read=ADMIN)),
                       include_in_schema=False)
    app.mount(docs_routes.ASSETS_URL, docs_routes.assets(), name="docs-assets")  # vendor files: open
    app.include_router(profiles.router, prefix=API_PREFIX,
                       dependencies=checked(guard(write=EVENTS, overrides={"DELETE /profiles/{user_id}": ADMIN})),
                       **secured)
    app.include_router(profile_writes.router, prefix=API_PREFIX,
                       dependencies=checked(guard(write=EVENTS, overrides={"DELETE /profiles/{user_id}": ADMIN})),
                       **secured)
    app.include_router(profile_search.router, prefix=API_PREFIX, dependencies=checked(guard()), **secured)
    app.include_router(events.router, prefix=API_PREFIX,
                       dependencies=checked(guard(write=EVENTS, overrides={"/catalog/items": ADMIN})), **secured)
    # segment members and analytics (read scope)
    app.include_router(segments.router, prefix=API_PREFIX, dependencies=checked(guard()), **secured)  # writes: admin
    app.include_router(analytics_routes.router, prefix=API_PREFIX, dependencies=checked(guard()), **secured)
    # insights: listing and the on-demand run only read (read scope for both)
    app.include_router(insight_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=READ)), **secured)
    # acquisition cohorts and retention (read scope)
    app.include_router(retention_routes.router, prefix=API_PREFIX, dependencies=checked(guard()), **secured)
    # recommendations, content, model registry (GET: read; tracking: events; config writes: admin)
    app.include_router(recs_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=EVENTS, overrides={
        "POST /recommendations/generate": READ})), **secured)
    app.include_router(content_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN, overrides={
        "POST /content/recommend": READ})), **secured)
    app.include_router(model_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN, overrides={
        "POST /models/{model_id}/predict": READ})), **secured)
    app.include_router(model_admin.router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN)), **secured)
    # decisions. Configuration writes: admin; evaluating, assigning and choosing: read.
    app.include_router(personalization_routes.router, prefix=API_PREFIX, dependencies=checked(guard(
        write=ADMIN, overrides={"POST /personalization/evaluate": READ})), **secured)
    app.include_router(experiment_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN, overrides={
        "POST /experiments/{experiment_id}/assign": READ, "POST /experiments/assign": READ})), **secured)
    app.include_router(bandit_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN, overrides={
        "POST /bandits/{bandit_id}/choose": READ, "POST /strategies/{placement}/choose": READ})), **secured)
    # campaigns: configuration, previews and test-sends need admin; reads (performance, deliveries, the
    # in-app inbox the storefront polls) need read. The open pixel and click redirect are open: mail
    # clients fetch them, and their HMAC-signed token is the credential.
    app.include_router(campaign_routes.tracking_router, prefix=API_PREFIX)
    app.include_router(campaign_routes.router, prefix=API_PREFIX, dependencies=checked(guard(write=ADMIN)), **secured)
    # the operator console's static build (open: it holds no data; it calls /v1 with the operator's key)
    app.mount(CONSOLE_MOUNT, console_app(), name="console")

    app.add_middleware(FastPath)  # hot GET routes without routing/DI; inside CORS and the edge metrics
    ingest_paths = frozenset(API_PREFIX + r.path for r in events.router.routes)  # they decode their own bodies
    app.add_middleware(BodyGate, self_parsing=ingest_paths)  # authenticate, then refuse bodies the system
    # cannot hold (422)
    if s.api.cors_origin_list:
        app.add_middleware(CORSMiddleware, allow_origins=s.api.cors_origin_list, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["Retry-After", "X-Aura-Degraded"], max_age=600)
    app.add_middleware(EdgeMiddleware, max_body_bytes=s.api.max_body_bytes)  # outermost: sees every request
    match_hot_groups_first(app)
    return app


HOT_GROUPS = ("/recommendations", "/profiles", "/content")  # storefront reads, in order of traffic


def match_hot_groups_first(app: FastAPI) -> None:
    """Routing tries the routes in order and each included group costs a scan of its routes (up to
    ~0.25 ms for the last group on this machine): move health and the storefront read groups to the
    front. Safe because every group has its own first path segment, so no path matches two groups."""
    def rank(route: Any) -> int:
        router = getattr(route, "original_router", None)
        if router is system.router:  # /v1/health: load balancers probe it all the time
            return -1
        prefix = getattr(router, "prefix", None)
        return HOT_GROUPS.index(prefix) if prefix in HOT_GROUPS else len(HOT_GROUPS)

    app.router.routes.sort(key=rank)  # stable: everything else keeps its order
