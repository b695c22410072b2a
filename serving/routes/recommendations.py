"""Recommendation routes: generate (hybrid | collaborative | content | trending | popular), similar
items, customers also bought, trending (global or per category), impression and click tracking.

Reads only precomputed state (aura/ranking/); tracking is produced to Kafka as behavior
events (``impression`` / ``recommendation_click`` carrying the ``recommendation_id``), which the
stream folds into per-model CTR (``recs_monitor``). Served lists carry
``recommendation_id = "<model>:<version>:<request id>"``.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from aura import layout
from aura.configcache import ConfigUnavailable
from aura.models.registry import STRATEGY_FIELD
from aura.ranking.blend import METHODS, Diversity, Filters
from aura.ranking.factors import ItemFactors
from aura.ranking.reader import Recommender
from aura.ranking.request import Request
from aura.state import trending as trending_math
from aura.state.bandits import strategy_bandit_id
from schemas.codec import codec
from schemas.events import InvalidEvent, validate_behavior
from serving.deps import State
from serving.fallbacks import STALE_POPULAR, stale_popular
from serving.handlers import outage_exceptions
from serving.ingest import IngestError, produce_acknowledged
from serving.respcache import cached_json
from serving.routes.bandits import Choice, choose

log = logging.getLogger(__name__)
router = APIRouter(prefix="/recommendations", tags=["recommendations"])
OUTAGES = outage_exceptions()  # Redis/Cassandra/Kafka unreachable: answer the stale popular list

Id = Annotated[str, Field(min_length=1, max_length=256)]
ItemPath = Path(min_length=1, max_length=256, description="Item id")
Method = Literal["hybrid", "collaborative", "content", "trending", "popular"]
assert set(METHODS) == set(Method.__args__)  # type: ignore[attr-defined]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContextIn(Strict):
    placement: Annotated[str, Field(max_length=64)] = "default"
    item_id: Id | None = Field(None, description="The item on screen (product page, cart)")
    categories: Annotated[list[Id], Field(max_length=50)] = Field([], description="Preferred categories (cold start)")
    device: Annotated[str, Field(max_length=64)] | None = None


class FiltersIn(Strict):
    exclude_seen: bool = True
    exclude_ids: Annotated[list[Id], Field(max_length=1000)] = []
    include_ids: Annotated[list[Id], Field(max_length=1000)] | None = None
    categories: Annotated[list[Id], Field(max_length=50)] | None = None
    exclude_categories: Annotated[list[Id], Field(max_length=50)] = []
    min_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    max_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    in_stock_only: bool = True
    boost_items: Annotated[dict[Id, Annotated[float, Field(gt=0, le=100)]], Field(max_length=1000)] = {}
    boost_categories: Annotated[dict[Id, Annotated[float, Field(gt=0, le=100)]], Field(max_length=100)] = {}
    max_per_category: Annotated[int, Field(ge=1, le=100)] | None = None
    mmr_lambda: Annotated[float, Field(ge=0, le=1)] | None = None


class GenerateIn(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_id: Id | None = Field(None, validation_alias=AliasChoices("user_id", "userId"),
                               description="Omit for an anonymous visitor (cold start from context); "
                                           "userId (the seed's name) is accepted too")
    method: Method | Literal["auto"] | None = Field(None, description=(
        "The strategy. Omitted: the strategy bandit the placement names (PUT /strategies/{placement}) picks it, "
        "else hybrid. auto: that bandit, or strategy.<placement> when an admin created it, picks it."))
    limit: Annotated[int, Field(ge=1, le=200)] = 10
    context: ContextIn = ContextIn()
    filters: FiltersIn = FiltersIn()


class Recommended(BaseModel):
    item_id: str
    score: float
    sources: list[str]


class Decision(BaseModel):
    bandit_id: str
    decision_id: str = Field(description="Also the list's recommendation_id: its clicks and purchases reward the arm")
    arm: str
    explore: bool


class RecommendationsOut(BaseModel):
    recommendation_id: str
    user_id: str | None
    method: str
    strategy: str
    placement: str
    items: list[Recommended]
    decision: Decision | None = Field(None, description="The strategy bandit's choice, when one picked the method")


def recommender(state: Any) -> Recommender:
    """The process's Recommender (stateless between requests; built once: it registers two scripts)."""
    rec = getattr(state, "recommender", None)
    if rec is None or rec.redis is not state.redis:
        s = state.settings
        placements = [p.strip() for p in s.recs.user_cands_placements.split(",") if p.strip()]
        rec = Recommender(state.redis, state.keys, candidates=s.recs.candidates,
                          wanted_placements=placements if s.recs.user_cands else (),
                          wanted_max=s.recs.user_cands_wanted_max,
                          refresh_ms=int(s.recs.user_cands_refresh_s * 1000),
                          first_pass=(s.recs.first_pass_candidates, s.recs.first_pass_list_k,
                                      s.recs.first_pass_recent),
                          factors=ItemFactors(state.redis, state.keys, s.recs.mf_items_refresh_s))
        if hasattr(state, "recommender"):
            state.recommender = rec
    return rec


def request_of(body: GenerateIn, method: str | None = None) -> Request:
    f = body.filters
    return Request(
        user_id=body.user_id, method=method or (body.method if body.method not in (None, "auto") else "hybrid"),
        limit=body.limit, placement=body.context.placement,
        context_item=body.context.item_id, preferred_categories=list(body.context.categories),
        filters=Filters(
            exclude_seen=f.exclude_seen, exclude_ids=frozenset(f.exclude_ids),
            include_ids=frozenset(f.include_ids) if f.include_ids is not None else None,
            categories=frozenset(f.categories) if f.categories else None,
            exclude_categories=frozenset(f.exclude_categories), min_price=f.min_price, max_price=f.max_price,
            in_stock_only=f.in_stock_only, boost_items=dict(f.boost_items), boost_categories=dict(f.boost_categories)),
        diversity=Diversity(max_per_category=f.max_per_category, mmr_lambda=f.mmr_lambda),
    )


async def generate_list(state: Any, body: GenerateIn) -> RecommendationsOut:
    return await recommend(state, request_of(body))


async def pick_strategy(state: Any, body: GenerateIn, response: Response) -> Choice | None:
    """The strategy bandit's choice for this request, recorded as a bandit decision. None: the request
    names its method, has no user, or (no method) its placement names no bandit (``PUT
    /strategies/{placement}``); ``auto`` uses the placement's bandit, else ``strategy.<placement>``
    when an admin created it (a request never creates one). When the bandit cannot be read or the
    decision recorded, hybrid is served (``X-Aura-Degraded: strategy-bandit``; a Redis outage without
    a method: silently, the list itself degrades)."""
    if body.method not in (None, "auto") or not body.user_id:
        return None
    placement = body.context.placement
    try:
        named = await state.redis.hget(state.keys.recs_placement(placement), STRATEGY_FIELD)
    except OUTAGES:
        if body.method is None:
            return None
        named = None
    try:
        if named:
            choice = await choose(state, named, body.user_id, {"device": body.context.device or ""}, list(METHODS),
                                  placement)
            if choice is not None:
                return choice
        if body.method == "auto":  # the placement's strategy.<placement> bandit, if an admin created one
            return await choose(state, strategy_bandit_id(placement), body.user_id,
                                {"device": body.context.device or ""}, list(METHODS), placement)
        return None
    except (ConfigUnavailable, *OUTAGES) as exc:
        reason: Any = exc
    except HTTPException as exc:
        if exc.status_code != 503:
            raise
        reason = exc.detail
    response.headers["X-Aura-Degraded"] = "strategy-bandit"
    log.warning("strategy bandit of %r unavailable, serving hybrid: %s", placement, reason)
    return None


def request_id() -> str:
    """16 hex digits naming one served list (64 random bits: unique enough to join impressions and
    clicks; not a secret, so the process's PRNG, seeded per process, instead of a syscall per request)."""
    return f"{random.getrandbits(64):016x}"


async def recommend(state: Any, req: Request, decision: Choice | None = None) -> RecommendationsOut:
    result = await recommender(state).recommend(req)  # also reads the placement's active model (same pipeline)
    model = (f"hybrid+{result.model}" if result.model else "hybrid:0") if req.method == "hybrid" else f"{req.method}:0"
    doc: dict[str, Any] = {  # (one validation call for the whole answer)
        "recommendation_id": f"{model}:{request_id()}", "user_id": req.user_id, "method": req.method,
        "strategy": result.strategy, "placement": req.placement,
        "items": [{"item_id": i, "score": round(s, 6), "sources": w} for i, s, w in result.items]}
    if decision is not None:
        doc["recommendation_id"] = decision.decision_id  # clicks and purchases on the list reward the arm
        doc["decision"] = {"bandit_id": decision.bandit_id, "decision_id": decision.decision_id,
                           "arm": decision.arm, "explore": decision.explore}
    return RecommendationsOut.model_validate(doc)


def stale_list(state: Any, response: Response, body: GenerateIn) -> RecommendationsOut:
    """The stores cannot answer: the last popular list the API saw (serving/fallbacks.py),
    marked ``X-Aura-Degraded: stale-popular``, instead of an error."""
    items = stale_popular(state.popular, response, body.limit)
    return RecommendationsOut(
        recommendation_id=f"{STALE_POPULAR}:0:{request_id()}", user_id=body.user_id, method=body.method or "hybrid",
        strategy=STALE_POPULAR, placement=body.context.placement,
        items=[Recommended(item_id=i["item_id"], score=round(float(i["score"]), 6), sources=["popular"])
               for i in items])


@router.post("/generate", response_model=RecommendationsOut, summary="Recommendations for a user or a context")
async def generate(state: State, body: GenerateIn, response: Response) -> RecommendationsOut:
    decision = await pick_strategy(state, body, response)
    try:
        return await recommend(state, request_of(body, decision.arm if decision else None), decision)
    except OUTAGES:
        return stale_list(state, response, body)


@router.get("/users/{user_id}", response_model=RecommendationsOut, summary="Recommendations (query-string form)")
async def for_user(state: State, response: Response, user_id: str = Path(min_length=1, max_length=256),
                   method: Method = "hybrid",
                   limit: int = Query(10, ge=1, le=200), placement: str = Query("default", max_length=64),
                   item_id: str | None = Query(None, max_length=256), exclude_seen: bool = True,
                   category: Annotated[list[str] | None, Query()] = None) -> RecommendationsOut:
    if category is not None:
        FiltersIn(categories=category)  # the body's limits on categories (422 past them)
    req = Request(user_id=user_id, method=method, limit=limit, placement=placement, context_item=item_id,
                  filters=Filters(exclude_seen=exclude_seen, categories=frozenset(category) if category else None))
    try:
        return await recommend(state, req)
    except OUTAGES:
        return stale_list(state, response, GenerateIn(user_id=user_id, method=method, limit=limit,
                                                      context=ContextIn(placement=placement)))


class Neighbour(BaseModel):
    item_id: str
    score: float


class NeighboursOut(BaseModel):
    item_id: str
    kind: str
    items: list[Neighbour]


async def neighbours(state: Any, item_id: str, sources: dict[str, float], limit: int) -> list[Neighbour]:
    """Blend of the item's neighbour lists without deleted / unavailable items (unknown ones are
    shown): ONE Redis script call (``Recommender.similar``; two round trips in Redis Cluster)."""
    top = await recommender(state).similar(item_id, sources, limit)
    return [Neighbour(item_id=i, score=round(s, 6)) for i, s in top]


@router.get("/similar/{item_id}", response_model=NeighboursOut,
            summary="Similar items: co-occurrence, batch (EASE) and content similarity blended")
async def similar(state: State, item_id: str = ItemPath, limit: int = Query(10, ge=1, le=100)) -> Response:
    async def render(_sub: Response) -> NeighboursOut:
        items = await neighbours(state, item_id, {"cooc": 1.0, "ease": 0.7, "content": 0.4}, limit)
        return NeighboursOut(item_id=item_id, kind="similar", items=items)

    return await cached_json(state, "similar", {"item_id": item_id, "limit": limit}, render)


@router.get("/also-bought/{item_id}", response_model=NeighboursOut,
            summary="Customers who carted or bought this item also carted or bought")
async def also_bought(state: State, item_id: str = ItemPath, limit: int = Query(10, ge=1, le=100)) -> Response:
    async def render(_sub: Response) -> NeighboursOut:
        items = await neighbours(state, item_id, {"bought": 1.0}, limit)
        return NeighboursOut(item_id=item_id, kind="also_bought", items=items)

    return await cached_json(state, "also_bought", {"item_id": item_id, "limit": limit}, render)


class TrendingOut(BaseModel):
    category: str | None
    half_life_h: float
    items: list[Neighbour] = Field(description="score: time-decayed interaction weight at request time")


async def trending_list(state: Any, category: str | None, limit: int) -> TrendingOut:
    hl = state.settings.recs.trending_half_life_h * 3600 * 1000
    raw = await state.redis.zrevrange(state.keys.recs_trending(category), 0, limit - 1, withscores=True)
    now = int(time.time() * 1000)
    return TrendingOut(category=category, half_life_h=state.settings.recs.trending_half_life_h,
                       items=[Neighbour(item_id=i, score=round(trending_math.decayed(float(s), now, hl), 6))
                              for i, s in raw])


@router.get("/trending", response_model=TrendingOut, summary="Trending items, globally or in one category")
async def trending(state: State, category: str | None = Query(None, max_length=256),
                   limit: int = Query(10, ge=1, le=200)) -> TrendingOut:
    return await trending_list(state, category, limit)


# ------------------------------------------------------------------------------------ tracking


class ImpressionIn(Strict):
    user_id: Id
    recommendation_id: Id
    items: Annotated[list[Id], Field(min_length=1, max_length=500)]
    placement: Annotated[str, Field(max_length=64)] | None = None


class ClickIn(Strict):
    user_id: Id
    recommendation_id: Id
    item_id: Id
    placement: Annotated[str, Field(max_length=64)] | None = None


class Tracked(BaseModel):
    event_id: str


async def produce_behavior(state: Any, event: dict[str, Any]) -> str:
    now = int(time.time() * 1000)
    event.setdefault("event_id", str(uuid.uuid4()))
    event.setdefault("event_time", now)
    event["receive_time"] = now
    c = codec("behavior_event")
    try:
        value = c.encode(event)
        checked = validate_behavior(c.decode(value), now)
    except InvalidEvent as exc:
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": exc.reason}]) from exc
    if state.producer is None:
        raise HTTPException(503, "Kafka producer unavailable")
    try:
        await produce_acknowledged(state.producer, layout.topic(state.settings, layout.BEHAVIOR),
                                   [(checked.user_id.encode(), value)], state.settings.ingest.ack_timeout_s)
    except IngestError as exc:
        raise HTTPException(exc.status, exc.detail) from exc
    return event["event_id"]


@router.post("/impressions", response_model=Tracked, status_code=202, summary="Track that a served list was shown")
async def impression(state: State, body: ImpressionIn) -> Tracked:
    eid = await produce_behavior(state, {
        "event_type": "impression", "user_id": body.user_id, "items": list(body.items),
        "recommendation_id": body.recommendation_id, "context": {"placement": body.placement}})
    return Tracked(event_id=eid)


@router.post("/clicks", response_model=Tracked, status_code=202, summary="Track a click on a recommended item")
async def click(state: State, body: ClickIn) -> Tracked:
    eid = await produce_behavior(state, {
        "event_type": "recommendation_click", "user_id": body.user_id, "item_id": body.item_id,
        "recommendation_id": body.recommendation_id, "context": {"placement": body.placement}})
    return Tracked(event_id=eid)
