"""Event ingest routes over HTTP, for web clients that cannot speak Kafka, and their request models.

``POST /v1/events`` (one behavior event), ``POST /v1/events/batch`` (a JSON array of them),
``POST /v1/identity`` and ``POST /v1/catalog/items`` (one event or a JSON array); 202 with the
count Kafka acknowledged. The request models are the HTTP spelling of the Avro records (types and
limits; their fields are the records' fields, receive_time excepted: a unit test holds them equal);
what happens to a body (size, validation, 422s, Kafka acknowledgement) is ``serving/ingest.py``.
The bodies are read by hand (for the size limit), so their schemas are documented here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aura import layout
from schemas.events import (
    BEHAVIOR_TYPES,
    CATALOG_TYPES,
    CHANNELS,
    IDENTITY_TYPES,
    MAX_ATTRIBUTES,
    MAX_ID_LEN,
    MAX_IMPRESSION_ITEMS,
    MAX_LIST,
    MAX_TEXT,
    PREFERENCE_SECTIONS,
)
from schemas.validation import MAX_NUMBER as _MAX_NUMBER
from schemas.validation import Money, Quantity, Rating
from serving.deps import State
from serving.ingest import ingest

router = APIRouter(tags=["events"])

# ---------------------------------------------------------------------------------------------
# Request models: mirror schemas/avro/*.avsc (receive_time is set here, never by clients)

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Short = Annotated[str, Field(max_length=1024)]
EventTime = Annotated[
    Annotated[int, Field(ge=0, le=253_402_300_799_999)] | AwareDatetime,
    Field(description="Epoch milliseconds, or an ISO-8601 date-time with a time zone"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Context(Strict):
    page: Short | None = None
    placement: Short | None = None
    device: Short | None = None
    channel: Short | None = None
    locale: Short | None = None
    referrer: Annotated[str, Field(max_length=4096)] | None = None
    session_id: Id | None = None


class LineItem(Strict):
    item_id: Id
    quantity: Quantity = 1
    unit_price: Money


class Order(Strict):
    order_id: Id
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    lines: Annotated[list[LineItem], Field(min_length=1, max_length=MAX_IMPRESSION_ITEMS)]


class BehaviorEventIn(Strict):
    """A behavior event (schemas/avro/behavior_event.avsc)."""

    event_id: Id
    event_type: Literal[tuple(sorted(BEHAVIOR_TYPES))]  # type: ignore[valid-type]
    user_id: Id | None = None
    anonymous_id: Id | None = None
    item_id: Id | None = None
    event_time: EventTime
    context: Context = Field(default_factory=Context)
    value: Rating | None = None
    order: Order | None = None
    items: Annotated[list[Id], Field(max_length=MAX_IMPRESSION_ITEMS)] = []
    recommendation_id: Id | None = None
    experiment_id: Id | None = None
    variant_id: Id | None = None
    campaign_id: Id | None = None
    message_id: Id | None = None
    query: Short | None = None
    properties: Annotated[dict[Short, Text], Field(max_length=MAX_ATTRIBUTES)] = {}


class PriceRange(Strict):
    min: Money | None = None
    max: Money | None = None


class Preferences(Strict):
    channels: Annotated[dict[Literal[tuple(sorted(CHANNELS))], bool], Field(max_length=MAX_LIST)] = {}  # type: ignore[valid-type]
    categories: Annotated[dict[Short, Annotated[float, Field(ge=-1, le=1)]], Field(max_length=MAX_LIST)] = {}
    blocked_items: Annotated[list[Id], Field(max_length=MAX_IMPRESSION_ITEMS)] = []
    locale: Short | None = None
    brands: Annotated[dict[Short, Annotated[float, Field(ge=-1, le=1)]], Field(max_length=MAX_LIST)] = {}
    price_range: PriceRange | None = None
    replace: Annotated[list[Literal[tuple(sorted(PREFERENCE_SECTIONS))]],  # type: ignore[valid-type]
                       Field(max_length=len(PREFERENCE_SECTIONS))] = []


AttributeValue = (bool | Annotated[int, Field(ge=-_MAX_NUMBER, le=_MAX_NUMBER)]
                  | Annotated[float, Field(ge=-_MAX_NUMBER, le=_MAX_NUMBER, allow_inf_nan=False)] | Text | None)


class IdentityEventIn(Strict):
    """A profile change (schemas/avro/identity_event.avsc)."""

    event_id: Id
    event_type: Literal[tuple(sorted(IDENTITY_TYPES))]  # type: ignore[valid-type]
    user_id: Id
    anonymous_id: Id | None = None
    event_time: EventTime
    attributes: Annotated[dict[Annotated[str, Field(min_length=1, max_length=128)], AttributeValue],
                          Field(max_length=MAX_ATTRIBUTES)] = {}
    preferences: Preferences | None = None
    context: Context = Field(default_factory=Context)
    properties: Annotated[dict[Short, Text], Field(max_length=MAX_ATTRIBUTES)] = {}


class ItemIn(Strict):
    title: Annotated[str, Field(min_length=1, max_length=1024)]
    categories: Annotated[list[Short], Field(max_length=50)] = []
    tags: Annotated[list[Short], Field(max_length=MAX_LIST)] = []
    brand: Short | None = None
    price: Money | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    stock: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    available: bool = True
    text: Text | None = None
    url: Annotated[str, Field(max_length=4096)] | None = None
    image_url: Annotated[str, Field(max_length=4096)] | None = None
    published_at: EventTime | None = None
    metadata: Annotated[dict[Short, Text], Field(max_length=MAX_ATTRIBUTES)] = {}


class CatalogItemIn(Strict):
    """An item upsert (full state) or delete (schemas/avro/catalog_item.avsc)."""

    event_id: Id
    event_type: Literal[tuple(sorted(CATALOG_TYPES))]  # type: ignore[valid-type]
    item_id: Id
    event_time: EventTime
    item: ItemIn | None = None


class Accepted(BaseModel):
    accepted: int = Field(description="Events acknowledged by Kafka")



# ---------------------------------------------------------------------------------------------
# Endpoints


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (OpenAPI components are not needed then)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(dict(defs[node["$ref"].rsplit("/", 1)[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _body(model: type[BaseModel], many: bool | None) -> dict[str, Any]:
    one = _inline(model.model_json_schema())
    arr = {"type": "array", "items": one}
    schema = arr if many else one if many is False else {"anyOf": [one, arr]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Acknowledged by Kafka"},
    413: {"description": "Body, batch or one encoded event over the limit"},
    422: {"description": "Field-level errors: detail[] with loc, msg, type (nothing was produced)"},
    503: {"description": "Kafka unavailable or slow; retry with the same event ids"},
}


@router.post("/events", status_code=202, response_model=Accepted, responses=RESPONSES,
             openapi_extra=_body(BehaviorEventIn, False), summary="Ingest one behavior event")
async def post_event(request: Request, state: State) -> Response:
    return await ingest(request, state, kind="behavior", schema="behavior_event", spec=layout.BEHAVIOR,
                        model=BehaviorEventIn, many=False)


@router.post("/events/batch", status_code=202, response_model=Accepted, responses=RESPONSES,
             openapi_extra=_body(BehaviorEventIn, True),
             summary="Ingest a batch of behavior events (all-or-nothing, at most ingest_max_batch)")
async def post_events_batch(request: Request, state: State) -> Response:
    return await ingest(request, state, kind="behavior", schema="behavior_event", spec=layout.BEHAVIOR,
                        model=BehaviorEventIn, many=True)


@router.post("/identity", status_code=202, response_model=Accepted, responses=RESPONSES,
             openapi_extra=_body(IdentityEventIn, None),
             summary="Ingest identity/profile events: create, update, preferences, merge, erase")
async def post_identity(request: Request, state: State) -> Response:
    return await ingest(request, state, kind="identity", schema="identity_event", spec=layout.IDENTITY,
                        model=IdentityEventIn, many=None)


@router.post("/catalog/items", status_code=202, response_model=Accepted, responses=RESPONSES,
             openapi_extra=_body(CatalogItemIn, None), summary="Ingest catalog item upserts and deletes")
async def post_catalog_items(request: Request, state: State) -> Response:
    return await ingest(request, state, kind="catalog", schema="catalog_item", spec=layout.CATALOG,
                        model=CatalogItemIn, many=None)
