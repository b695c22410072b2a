"""Content routes: create, update and delete items (produced as catalog events, applied by the
catalog agent), read an item, content-based recommendations and similar items, trending content,
and an item's performance (interaction weight, trending score, neighbours) as the stream keeps it.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel

from aura import layout
from aura.state import trending as trending_math
from aura.state.cooccurrence import ITEM_POP, ITEM_TREND
from aura.state.items import is_deleted, parse_meta
from schemas.codec import DecodeError, codec
from schemas.events import InvalidEvent, validate_catalog
from serving.deps import State
from serving.ingest import IngestError, as_millis, produce_acknowledged
from serving.respcache import cached_json
from serving.routes.events import ItemIn
from serving.routes.recommendations import (
    ContextIn,
    FiltersIn,
    GenerateIn,
    NeighboursOut,
    RecommendationsOut,
    TrendingOut,
    generate_list,
    neighbours,
    trending_list,
)

router = APIRouter(prefix="/content", tags=["content"])
ItemPath = Path(min_length=1, max_length=256, description="Item id")


class Written(BaseModel):
    item_id: str
    event_id: str
    event_type: str


async def produce_catalog(state: Any, item_id: str, event_type: str, item: dict[str, Any] | None) -> Written:
    now = int(time.time() * 1000)
    event = {"event_id": str(uuid.uuid4()), "event_type": event_type, "item_id": item_id, "event_time": now,
             "receive_time": now, "item": item}
    c = codec("catalog_item")
    try:
        value = c.encode(event)
        validate_catalog(c.decode(value), now)
    except (InvalidEvent, DecodeError) as exc:
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": exc.reason}]) from exc
    if state.producer is None:
        raise HTTPException(503, "Kafka producer unavailable")
    try:
        await produce_acknowledged(state.producer, layout.topic(state.settings, layout.CATALOG),
                                   [(item_id.encode(), value)], state.settings.ingest.ack_timeout_s)
    except IngestError as exc:
        raise HTTPException(exc.status, exc.detail) from exc
    return Written(item_id=item_id, event_id=event["event_id"], event_type=event_type)


@router.put("/{item_id}", response_model=Written, status_code=202, summary="Create or replace an item")
async def upsert(state: State, item: ItemIn, item_id: str = ItemPath) -> Written:
    doc = {k: as_millis(v) for k, v in item.model_dump().items()}
    return await produce_catalog(state, item_id, "upsert", doc)


@router.delete("/{item_id}", response_model=Written, status_code=202, summary="Delete an item")
async def delete(state: State, item_id: str = ItemPath) -> Written:
    return await produce_catalog(state, item_id, "delete", None)


@router.get("/{item_id}", summary="An item as the catalog agent stored it")
async def get_item(state: State, item_id: str = ItemPath) -> dict[str, Any]:
    raw = await state.redis.hgetall(state.keys.recs_item_meta(item_id))
    if not raw or is_deleted(raw):
        raise HTTPException(404, f"no item {item_id!r}")
    return {"item_id": item_id, **parse_meta(raw)}


@router.get("/{item_id}/similar", response_model=NeighboursOut, summary="Content-based similar items (TF-IDF)")
async def similar_content(state: State, item_id: str = ItemPath, limit: int = Query(10, ge=1, le=100)) -> Response:
    async def render(_sub: Response) -> NeighboursOut:
        return NeighboursOut(item_id=item_id, kind="content",
                             items=await neighbours(state, item_id, {"content": 1.0}, limit))

    return await cached_json(state, "content_similar", {"item_id": item_id, "limit": limit}, render)


@router.get("/recommend/{user_id}", response_model=RecommendationsOut,
            summary="Content-based recommendations from the user's recent items")
async def recommend(state: State, user_id: str = Path(min_length=1, max_length=256),
                    limit: int = Query(10, ge=1, le=200),
                    category: Annotated[list[str] | None, Query()] = None) -> RecommendationsOut:
    return await generate_list(state, GenerateIn(user_id=user_id, method="content", limit=limit,
                                                 context=ContextIn(categories=category or []), filters=FiltersIn()))


@router.get("/trending/items", response_model=TrendingOut, summary="Trending content, globally or per category")
async def trending(state: State, category: str | None = Query(None, max_length=256),
                   limit: int = Query(10, ge=1, le=200)) -> TrendingOut:
    return await trending_list(state, category, limit)


@router.get("/{item_id}/performance", summary="Interaction weight, trending score and neighbours of an item")
async def performance(state: State, item_id: str = ItemPath) -> dict[str, Any]:
    k = state.keys
    pipe = state.redis.pipeline(transaction=False)
    pipe.hmget(k.recs_item_state(item_id), [ITEM_POP, ITEM_TREND])
    pipe.zcard(k.recs_item_cooc(item_id))
    pipe.zcard(k.recs_item_bought(item_id))
    pipe.zrevrank(k.recs_popular(), item_id)
    pipe.zrevrank(k.recs_trending(), item_id)
    (pop, tr), n_cooc, n_bought, pop_rank, tr_rank = await pipe.execute()
    if pop is None:
        raise HTTPException(404, f"no interactions seen for item {item_id!r}")
    hl = trending_math.half_life_from_hours(state.settings.recs.trending_half_life_h)
    return {"item_id": item_id, "interaction_weight": float(pop),
            "trending_score": trending_math.decayed(float(tr), int(time.time() * 1000), hl) if tr else 0.0,
            "popularity_rank": None if pop_rank is None else pop_rank + 1,
            "trending_rank": None if tr_rank is None else tr_rank + 1,
            "co_occurring_items": n_cooc, "also_bought_items": n_bought}
