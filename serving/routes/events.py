"""Event ingest over HTTP, for web clients that cannot speak Kafka.

``POST /v1/events`` (one behavior event), ``POST /v1/events/batch`` (a JSON array of them),
``POST /v1/identity`` and ``POST /v1/catalog/items`` (one event or a JSON array). Each request is
size-checked while it is read (413), parsed and validated with pydantic models that mirror the
Avro schemas plus the stream's own semantic checks (422 with field-level errors; a batch is
all-or-nothing), framed as Avro single-object records and produced to Kafka with the API's
producer; the answer (202 with the accepted count) is sent once Kafka acknowledged every record
(503 if it does not within ``ingest_ack_timeout_s``; a retry is safe, event ids de-duplicate).

Owns the ``ingest_count`` metrics hash (outcomes per kind, 422s by error type).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from aura import layout
from schemas.codec import DecodeError, codec
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
    InvalidEvent,
    partition_key,
    validate,
)
from serving.deps import State
from serving.state import ApiState

log = logging.getLogger(__name__)
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
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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
    quantity: Annotated[int, Field(ge=1, le=2**31 - 1)] = 1
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
    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    order: Order | None = None
    items: Annotated[list[Id], Field(max_length=MAX_IMPRESSION_ITEMS)] = []
    recommendation_id: Id | None = None
    experiment_id: Id | None = None
    variant_id: Id | None = None
    campaign_id: Id | None = None
    message_id: Id | None = None
    query: Short | None = None
    properties: Annotated[dict[Short, Text], Field(max_length=MAX_ATTRIBUTES)] = {}


class Preferences(Strict):
    channels: Annotated[dict[Literal[tuple(sorted(CHANNELS))], bool], Field(max_length=MAX_LIST)] = {}  # type: ignore[valid-type]
    categories: Annotated[dict[Short, Annotated[float, Field(ge=-1, le=1)]], Field(max_length=MAX_LIST)] = {}
    blocked_items: Annotated[list[Id], Field(max_length=MAX_IMPRESSION_ITEMS)] = []
    locale: Short | None = None


AttributeValue = bool | int | Annotated[float, Field(allow_inf_nan=False)] | Text | None


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
# The ingest pipeline, shared by every endpoint


class IngestError(Exception):
    """An answer other than 202: status code, FastAPI-style ``detail`` and the metrics outcome."""

    def __init__(self, status: int, detail: Any, outcome: str, error_types: list[str] | None = None) -> None:
        super().__init__(str(detail)[:200])
        self.status = status
        self.detail = detail
        self.outcome = outcome
        self.error_types = error_types or []


def _millis(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def to_avro(model: BaseModel, now_ms: int) -> dict[str, Any]:
    """A validated request model as the Avro record (event times in epoch ms, receive_time now)."""
    record = model.model_dump()
    record["event_time"] = _millis(record["event_time"])
    if isinstance(record.get("item"), dict):
        record["item"]["published_at"] = _millis(record["item"].get("published_at"))
    record["receive_time"] = now_ms
    return record


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise IngestError(413, f"body of {declared} bytes exceeds the {limit} byte limit", "too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body exceeds the {limit} byte limit", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _pydantic_errors(exc: ValidationError, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [{"loc": ["body", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)]


def parse_events(body: bytes, model: type[BaseModel], *, many: bool | None, max_batch: int,
                 schema: str, now_ms: int) -> list[tuple[bytes, bytes]]:
    """Body -> framed (key, value) records; raises IngestError (422 with every field error, 413).

    ``many``: True for a JSON array, False for one object, None for either.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(422, [{"loc": ["body"], "msg": f"invalid JSON (or not UTF-8): {exc}",
                                 "type": "json_invalid"}], "rejected", ["json_invalid"]) from exc
    is_list = isinstance(doc, list)
    if many is True and not is_list:
        raise IngestError(422, [{"loc": ["body"], "msg": "expected a JSON array of events", "type": "list_type"}],
                          "rejected", ["list_type"])
    if many is False and is_list:
        raise IngestError(422, [{"loc": ["body"], "msg": "expected one event object (use /batch for arrays)",
                                 "type": "model_type"}], "rejected", ["model_type"])
    docs = doc if is_list else [doc]
    if len(docs) > max_batch:
        raise IngestError(413, f"{len(docs)} events exceed the batch limit of {max_batch}", "too_large")
    if not docs:
        raise IngestError(422, [{"loc": ["body"], "msg": "empty batch", "type": "too_short"}], "rejected",
                          ["too_short"])
    c = codec(schema)
    errors: list[dict[str, Any]] = []
    framed: list[tuple[bytes, bytes]] = []
    adapter = TypeAdapter(model)
    for i, item in enumerate(docs):
        prefix: tuple[Any, ...] = (i,) if is_list else ()
        try:
            event = adapter.validate_python(item)
        except ValidationError as exc:
            errors += _pydantic_errors(exc, prefix)
            continue
        record = to_avro(event, now_ms)
        try:
            validate(schema, record, now_ms)  # the same semantic checks the stream applies
            value = c.encode(record)
        except InvalidEvent as exc:
            loc = exc.field.split(".") if exc.field else []
            errors.append({"loc": ["body", *prefix, *loc], "msg": exc.detail or exc.reason, "type": exc.reason})
            continue
        except DecodeError as exc:
            errors.append({"loc": ["body", *prefix], "msg": exc.detail, "type": exc.reason})
            continue
        if len(value) > c.max_bytes:
            raise IngestError(413, f"event {i} is {len(value)} bytes encoded, over {c.max_bytes}", "too_large")
        framed.append((partition_key(schema, record), value))
    if errors:
        raise IngestError(422, errors, "rejected", [e["type"] for e in errors])
    return framed


async def produce_acknowledged(producer: Any, topic: str, records: list[tuple[bytes, bytes]],
                               timeout_s: float) -> None:
    """Produce ``records`` and wait until Kafka acknowledged all of them (IngestError 503 if not)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    pending = len(records)
    failures: list[str] = []

    def settle(err: Any) -> None:
        nonlocal pending
        pending -= 1
        if err is not None:
            failures.append(str(err))
        if pending == 0 and not done.done():
            done.set_result(None)

    def on_delivery(err: Any, _msg: Any) -> None:  # runs in whichever thread polls the producer
        try:
            loop.call_soon_threadsafe(settle, err)
        except RuntimeError:  # the loop is gone (an acknowledgement after shutdown): nobody waits
            pass

    deadline = loop.time() + timeout_s
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                if loop.time() > deadline:
                    raise IngestError(503, "the producer queue is full", "unavailable") from None
                producer.poll(0)
                await asyncio.sleep(0.01)
    while not done.done():
        producer.poll(0)  # serve delivery callbacks without blocking the event loop
        if done.done():
            break
        if loop.time() > deadline:
            raise IngestError(503, f"Kafka did not acknowledge {pending} of {len(records)} events in "
                              f"{timeout_s}s; retry (event ids de-duplicate)", "unavailable")
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=0.005)
        except TimeoutError:
            pass
    if failures:
        raise IngestError(503, f"{len(failures)} events failed delivery: {failures[0]}", "unavailable")


async def count(state: ApiState, kind: str, outcome: str, n: int = 1, error_types: list[str] | None = None) -> None:
    """Bump the ingest metrics (one pipeline); a Redis failure never fails the request."""
    try:
        pipe = state.redis.pipeline(transaction=False)
        key = state.keys.ingest_count()
        pipe.hincrby(key, f"{kind}:{outcome}", n)
        for t in sorted(set(error_types or ())):
            pipe.hincrby(key, f"{kind}:{outcome}:{t}", sum(1 for e in error_types or () if e == t))
        await pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics are best effort
        log.warning("ingest metrics not recorded: %s", exc)


def _json(doc: Any, status: int) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


async def ingest(request: Request, state: ApiState, *, kind: str, schema: str, spec: layout.TopicSpec,
                 model: type[BaseModel], many: bool | None) -> Response:
    s = state.settings
    try:
        body = await read_body(request, s.ingest_max_body_bytes)
        records = parse_events(body, model, many=many, max_batch=s.ingest_max_batch if many is not False else 1,
                               schema=schema, now_ms=int(time.time() * 1000))
        if state.producer is None:
            raise IngestError(503, "no Kafka producer", "unavailable")
        await produce_acknowledged(state.producer, layout.topic(s, spec), records, s.ingest_ack_timeout_s)
    except IngestError as exc:
        await count(state, kind, exc.outcome, error_types=exc.error_types)
        return _json({"detail": exc.detail}, exc.status)
    await count(state, kind, "accepted", len(records))
    return _json({"accepted": len(records)}, 202)


# ---------------------------------------------------------------------------------------------
# Endpoints (request bodies are read by hand for the size limit; their schemas are documented here)


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
