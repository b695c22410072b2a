"""Content routes: create, update and delete items (produced as catalog events, applied by the
catalog agent), list and search them with cursor paging, read an item, content-based recommendations
(with a real category filter) and similar items, trending content, and an item's performance
(interaction weight, trending score, neighbours) as the stream keeps it.

Listing and search page through the live item ids (``recs_catalog_ids``, SSCAN) and the items' hashes
(one pipeline per page), keeping the items that pass the search (aura/state/items.py ``matches``):
no index, so a selective search over a large catalog may return short pages; ``next_cursor`` 0 ends.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from aura import layout
from aura.state import trending as trending_math
from aura.state.cooccurrence import ITEM_POP, ITEM_TREND
from aura.state.items import is_deleted, matches, parse_meta
from schemas.codec import DecodeError, codec
from schemas.events import MAX_ATTRIBUTES, MAX_LIST, MAX_TEXT, InvalidEvent, validate_catalog
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


class ContentIn(BaseModel):
    """The seed's content object: ``category`` and ``content`` (the body) are also accepted for
    ``categories`` and ``text``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "title": "10 Tips for Better SEO", "category": "blog", "tags": ["seo", "marketing"],
        "content": "Start with the search intent ...", "metadata": {"author": "John Doe"}}]})

    item_id: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="Omit to have one generated")
    title: Annotated[str, Field(min_length=1, max_length=1024)]
    category: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    categories: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=50)] = []
    tags: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=MAX_LIST)] = []
    content: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    text: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    url: Annotated[str, Field(max_length=4096)] | None = None
    image_url: Annotated[str, Field(max_length=4096)] | None = None
    metadata: Annotated[dict[Annotated[str, Field(max_length=1024)], Annotated[str, Field(max_length=MAX_TEXT)]],
                        Field(max_length=MAX_ATTRIBUTES)] = {}

    def item(self) -> ItemIn:
        cats = [*([self.category] if self.category else []), *[c for c in self.categories if c != self.category]]
        return ItemIn(title=self.title, categories=cats[:50], tags=self.tags, text=self.text or self.content,
                      url=self.url, image_url=self.image_url, metadata=self.metadata)


@router.post("", response_model=Written, status_code=202, summary="Create a content item (the seed's form)",
             responses={409: {"description": "An item with this id exists (PUT replaces it)"}})
async def create(state: State, body: ContentIn) -> Written:
    item_id = body.item_id or uuid.uuid4().hex
    if body.item_id and await state.redis.sismember(state.keys.recs_catalog_ids(), item_id):
        raise HTTPException(409, f"item {item_id!r} exists; PUT /v1/content/{{item_id}} replaces it")
    doc = {k: as_millis(v) for k, v in body.item().model_dump().items()}
    return await produce_catalog(state, item_id, "upsert", doc)


class ContentPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: int = Field(description="Pass it back for the next page; 0: the end")
    examined: int = Field(description="Items looked at for this page")


@router.get("", response_model=ContentPage, summary="List and search content, paged by cursor")
async def list_content(state: State, cursor: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=200),
                       category: str | None = Query(None, max_length=1024),
                       tag: str | None = Query(None, max_length=1024),
                       q: str | None = Query(None, max_length=256, description="Words in title, text, tags"),
                       available: bool = Query(False, description="Only available items")) -> ContentPage:
    ids_key, found, examined = state.keys.recs_catalog_ids(), [], 0
    budget = max(limit * 20, 1000)  # items looked at per page at most (a selective search pages on)
    while True:
        cursor, ids = await state.redis.sscan(ids_key, cursor=cursor, count=max(limit, 100))
        if ids:
            pipe = state.redis.pipeline(transaction=False)
            for i in ids:
                pipe.hgetall(state.keys.recs_item_meta(i))
            for i, raw in zip(ids, await pipe.execute(), strict=True):
                if raw and not is_deleted(raw):
                    doc = parse_meta(raw)
                    if matches(doc, category, tag, q, available):
                        found.append({"item_id": i, **doc})
            examined += len(ids)
        if cursor == 0 or len(found) >= limit or examined >= budget:
            break
    found.sort(key=lambda d: d["item_id"])  # (a page may hold more than limit: SSCAN returns whole chunks)
    return ContentPage(items=found, next_cursor=int(cursor), examined=examined)


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
            summary="Content-based recommendations from the user's recent items (only in ``category`` if given)")
async def recommend(state: State, user_id: str = Path(min_length=1, max_length=256),
                    limit: int = Query(10, ge=1, le=200),
                    category: Annotated[list[str] | None, Query(max_length=50)] = None) -> RecommendationsOut:
    cats = list(category or [])
    return await generate_list(state, GenerateIn(user_id=user_id, method="content", limit=limit,
                                                 context=ContextIn(categories=cats),
                                                 filters=FiltersIn(categories=cats or None)))


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"user_id": "u7", "limit": 5, "category": "blog"}]})

    user_id: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        validation_alias=AliasChoices("user_id", "userId"))
    limit: Annotated[int, Field(ge=1, le=200)] = 10
    category: Annotated[str, Field(min_length=1, max_length=256)] | None = None


@router.post("/recommend", response_model=RecommendationsOut,
             summary="Content recommendations (the seed's form): only items in ``category`` when given")
async def recommend_post(state: State, body: RecommendIn) -> RecommendationsOut:
    cats = [body.category] if body.category else []
    return await generate_list(state, GenerateIn(user_id=body.user_id, method="content", limit=body.limit,
                                                 context=ContextIn(categories=cats),
                                                 filters=FiltersIn(categories=cats or None)))


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
