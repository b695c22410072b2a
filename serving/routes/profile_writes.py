"""Profile writes over REST: create, update attributes, set or merge preferences, erase, and when a
write is visible.

Every write is an identity event (schemas/avro/identity_event.avsc) produced to ``events.identity``
with a server-generated event id and time, so the identity agent (streams/identity.py) stays the one
writer of profiles; the route answers 202 once Kafka acknowledged the event, with the event id, where
it landed (``change``: ``<partition>-<offset>``) and the URL that says whether the worker applied it
(``GET /profiles/{id}/changes/{change}``: the identity fence of that partition in the user's hash has
reached the offset). A client that must read its own write polls that URL, or the profile.

An ``Idempotency-Key`` header makes a retry produce the same event id (and, for a create without a
user id, the same generated user id); applying an identity event twice changes nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Header, HTTPException, Path, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from aura import layout
from aura.state.profiles import ATTRS_FENCE
from schemas.codec import codec
from schemas.events import (
    BEHAVIOR_TYPES,
    CHANNELS,
    MAX_ATTRIBUTES,
    MAX_IMPRESSION_ITEMS,
    MAX_LIST,
    InvalidEvent,
    validate_identity,
)
from serving.deps import State
from serving.ingest import IngestError, as_millis, produce_acknowledged
from serving.routes.events import AttributeValue, Context, EventTime, PriceRange
from serving.routes.recommendations import produce_behavior

router = APIRouter(prefix="/profiles", tags=["profiles"])

UserId = Path(min_length=1, max_length=256, description="User id")
Id = Annotated[str, Field(min_length=1, max_length=256)]
Short = Annotated[str, Field(min_length=1, max_length=1024)]
AttrKey = Annotated[str, Field(min_length=1, max_length=128)]
Attributes = Annotated[dict[AttrKey, AttributeValue], Field(max_length=MAX_ATTRIBUTES)]
Affinity = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
Weights = (Annotated[dict[Short, Affinity], Field(max_length=MAX_LIST)]
           | Annotated[list[Short], Field(max_length=MAX_LIST)])
IDEMPOTENCY = Header(None, alias="Idempotency-Key", max_length=256,
                     description="The same key makes a retry produce the same event (and generated user id)")
NAMESPACE = uuid.UUID("6b1f3c2e-9f57-4b8e-8a43-3c2d1f0e5a77")  # of the ids derived from idempotency keys


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PreferencesIn(Strict):
    """Explicit preferences. Categories and brands take weights in [-1, 1] (-1: never show, 1:
    favourite) or a plain list (each weight 1). The seed's camelCase names are accepted too."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "categories": {"electronics": 1.0, "toys": -1.0}, "price_range": {"min": 50, "max": 500},
        "brands": ["Apple", "Samsung"], "blocked_items": ["i13"], "channels": {"email": True, "sms": False},
        "locale": "en-US"}]})

    categories: Weights | None = None
    brands: Weights | None = None
    price_range: PriceRange | None = Field(None, validation_alias=AliasChoices("price_range", "priceRange"))
    blocked_items: Annotated[list[Id], Field(max_length=MAX_IMPRESSION_ITEMS)] | None = Field(
        None, validation_alias=AliasChoices("blocked_items", "blockedItems"))
    channels: Annotated[dict[Literal[tuple(sorted(CHANNELS))], bool],  # type: ignore[valid-type]
                        Field(max_length=len(CHANNELS))] | None = Field(
        None, description="Consent per channel: true = the user accepts messages on it")
    locale: Annotated[str, Field(min_length=2, max_length=35)] | None = None

    @field_validator("categories", "brands")
    @classmethod
    def weights(cls, v: Any) -> dict[str, float] | None:
        return {name: 1.0 for name in v} if isinstance(v, list) else v

    def record(self, replace: bool) -> dict[str, Any]:
        """The Avro ``Preferences`` record; ``replace``: the sections sent replace the stored ones."""
        sent = self.model_fields_set
        band = self.price_range.model_dump() if self.price_range is not None else None
        return {"channels": self.channels or {}, "categories": self.categories or {}, "brands": self.brands or {},
                "blocked_items": list(self.blocked_items or ()), "locale": self.locale, "price_range": band,
                "replace": sorted(sent) if replace else []}


class ProfileIn(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "user_id": "john_123", "email": "john@example.com", "attributes": {"name": "John Doe", "location": "US"}}]})

    user_id: Id | None = Field(None, validation_alias=AliasChoices("user_id", "userId"),
                               description="Omit to have one generated")
    email: Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    attributes: Attributes = {}
    preferences: PreferencesIn | None = None


class AttributesIn(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"attributes": {"tier": "gold", "location": None}}]})

    attributes: Annotated[dict[AttrKey, AttributeValue], Field(min_length=1, max_length=MAX_ATTRIBUTES)] = Field(
        description="Attributes to set; null removes one")


class Written(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "john_123", "event_id": "4b9d2c1e-07a2-4f4e-9a1b-2f8f3c5d6e7a", "event_type": "create",
        "change": "3-1042", "status_url": "/v1/profiles/john_123/changes/3-1042"}]})

    user_id: str
    event_id: str = Field(description="The identity event the write produced")
    event_type: str
    change: str = Field(description="<partition>-<offset> of the event on the identity topic (-erase: an erase)")
    status_url: str = Field(description="GET it: applied = true once the profile shows the change")


class ChangeStatus(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"user_id": "john_123", "change": "3-1042", "applied": True}]})

    user_id: str
    change: str
    applied: bool


def _event_id(user: str, key: str | None, what: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{user}\x1f{what}\x1f{key}")) if key else str(uuid.uuid4())


async def produce_identity(state: Any, records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Validate and produce identity events (in order, one acknowledged batch); 422/503 as HTTP errors."""
    now = int(time.time() * 1000)
    c = codec("identity_event")
    framed = []
    for rec in records:
        rec.setdefault("event_time", now)
        rec["receive_time"] = now
        try:
            value = c.encode(rec)
            checked = validate_identity(c.decode(value), now)
        except InvalidEvent as exc:
            loc = ["body", *(exc.field.split(".") if exc.field else [])]
            raise HTTPException(422, [{"loc": loc, "msg": exc.detail or exc.reason, "type": exc.reason}]) from exc
        framed.append((checked.user_id.encode(), value))
    if state.producer is None:
        raise HTTPException(503, "Kafka producer unavailable")
    try:
        return await produce_acknowledged(state.producer, layout.topic(state.settings, layout.IDENTITY), framed,
                                          state.settings.ingest.ack_timeout_s)
    except IngestError as exc:
        raise HTTPException(exc.status, exc.detail) from exc


def _written(response: Response, user: str, rec: dict[str, Any], where: tuple[int, int]) -> Written:
    change = f"{where[0]}-{where[1]}" + ("-erase" if rec["event_type"] == "erase" else "")
    url = f"/v1/profiles/{quote(user, safe='')}/changes/{change}"  # (a header: ASCII, percent-encoded)
    response.headers["Location"] = url
    return Written(user_id=user, event_id=rec["event_id"], event_type=rec["event_type"], change=change,
                   status_url=url)


async def _exists(state: Any, user: str) -> bool:
    try:
        return bool(await state.redis.exists(state.keys.user_attrs(user), state.keys.user_state(user)))
    except Exception as exc:  # noqa: BLE001 - unknown is not "absent": refuse rather than guess
        raise HTTPException(503, "profile store unavailable") from exc


ACCEPTED = {202: {"description": "Acknowledged by Kafka; visible once status_url says applied"},
            422: {"description": "Field-level errors (nothing was produced)"},
            503: {"description": "Kafka or Redis unavailable; retry (with the same Idempotency-Key)"}}


@router.post("", status_code=202, response_model=Written, summary="Create a profile (an identity create event)",
             responses={**ACCEPTED, 409: {"description": "A profile with this user id exists (use PATCH)"}})
async def create_profile(state: State, response: Response, body: ProfileIn,
                         idempotency_key: str | None = IDEMPOTENCY) -> Written:
    user = body.user_id or (str(uuid.uuid5(NAMESPACE, f"user\x1f{idempotency_key}")) if idempotency_key
                            else uuid.uuid4().hex)
    if body.user_id and await _exists(state, user):
        raise HTTPException(409, f"profile {user!r} exists; PATCH its attributes or PUT its preferences")
    attributes = dict(body.attributes)
    if body.email is not None:
        attributes["email"] = body.email
    records = [{"event_id": _event_id(user, idempotency_key, "create"), "event_type": "create", "user_id": user,
                "attributes": attributes}]
    if body.preferences is not None:
        records.append({"event_id": _event_id(user, idempotency_key, "create-preferences"),
                        "event_type": "preferences", "user_id": user, "preferences": body.preferences.record(False)})
    placed = await produce_identity(state, records)
    return _written(response, user, records[-1], placed[-1])


@router.patch("/{user_id}", status_code=202, response_model=Written, responses=ACCEPTED,
              summary="Set or remove attributes (an identity update event)")
async def update_profile(state: State, response: Response, body: AttributesIn, user_id: str = UserId,
                         idempotency_key: str | None = IDEMPOTENCY) -> Written:
    rec = {"event_id": _event_id(user_id, idempotency_key, "update"), "event_type": "update", "user_id": user_id,
           "attributes": dict(body.attributes)}
    return _written(response, user_id, rec, (await produce_identity(state, [rec]))[0])


async def _preferences(state: Any, response: Response, user: str, body: PreferencesIn, replace: bool,
                       key: str | None) -> Written:
    if not body.model_fields_set:
        raise HTTPException(422, [{"loc": ["body"], "msg": "no preference sections given", "type": "too_short"}])
    rec = {"event_id": _event_id(user, key, f"preferences:{int(replace)}"), "event_type": "preferences",
           "user_id": user, "preferences": body.record(replace)}
    return _written(response, user, rec, (await produce_identity(state, [rec]))[0])


@router.put("/{user_id}/preferences", status_code=202, response_model=Written, responses=ACCEPTED,
            summary="Set preferences: each section sent replaces the stored one (an empty one clears it); "
                    "sections not sent are kept")
async def put_preferences(state: State, response: Response, body: Annotated[PreferencesIn, Body()],
                          user_id: str = UserId, idempotency_key: str | None = IDEMPOTENCY) -> Written:
    return await _preferences(state, response, user_id, body, True, idempotency_key)


@router.post("/{user_id}/preferences", status_code=202, response_model=Written, responses=ACCEPTED,
             summary="Merge preferences into the stored ones (weights per name overwrite; blocked items add up)")
async def post_preferences(state: State, response: Response, body: Annotated[PreferencesIn, Body()],
                           user_id: str = UserId, idempotency_key: str | None = IDEMPOTENCY) -> Written:
    return await _preferences(state, response, user_id, body, False, idempotency_key)


@router.delete("/{user_id}", status_code=202, response_model=Written, responses=ACCEPTED,
               summary="Erase the profile: every key, row and segment membership of the user (admin)")
async def erase_profile(state: State, response: Response, user_id: str = UserId,
                        idempotency_key: str | None = IDEMPOTENCY) -> Written:
    rec = {"event_id": _event_id(user_id, idempotency_key, "erase"), "event_type": "erase", "user_id": user_id}
    return _written(response, user_id, rec, (await produce_identity(state, [rec]))[0])


@router.get("/{user_id}/changes/{change}", response_model=ChangeStatus,
            summary="Whether a profile write is applied (visible in the profile reads)")
async def change_status(state: State, user_id: str = UserId,
                        change: str = Path(pattern=r"^\d{1,6}-\d{1,19}(-erase)?$",
                                           description="<partition>-<offset>[-erase], as the write answered"),
                        ) -> ChangeStatus:
    part, off = (int(x) for x in change.split("-")[:2])
    erase = change.endswith("-erase")
    k = state.keys
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.hget(k.user_attrs(user_id), f"{ATTRS_FENCE}{part}")
        pipe.exists(k.user_attrs(user_id), k.user_state(user_id))
        fence, present = await pipe.execute()
    except Exception as exc:  # noqa: BLE001
        raise HTTPException(503, "profile store unavailable") from exc
    # applied: the partition's fence reached the offset; an erase: no key of the user is left
    applied = (not present) if erase else (fence is not None and int(fence) >= off)
    return ChangeStatus(user_id=user_id, change=change, applied=applied)


class BehaviorIn(Strict):
    """The seed's behavior tracking: one behavior event for the user, id and receive time set here."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"action": "view", "item_id": "prod_456", "timestamp": "2026-11-27T09:00:00Z",
         "context": {"page": "product", "device": "mobile"}}]})

    action: Literal[tuple(sorted(BEHAVIOR_TYPES - {"purchase", "impression"}))]  # type: ignore[valid-type]
    item_id: Id | None = Field(None, validation_alias=AliasChoices("item_id", "itemId"))
    timestamp: EventTime | None = Field(None, description="Default: now")
    value: Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)] | None = None
    context: Context | None = None


class Tracked(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"user_id": "john_123", "event_id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"}]})

    user_id: str
    event_id: str


@router.post("/{user_id}/behavior", status_code=202, response_model=Tracked, responses=ACCEPTED,
             summary="Track one behavior of the user (the seed's form; purchases and impressions: POST /events)")
async def track_behavior(state: State, body: BehaviorIn, user_id: str = UserId,
                         idempotency_key: str | None = IDEMPOTENCY) -> Tracked:
    event: dict[str, Any] = {"event_type": body.action, "user_id": user_id, "item_id": body.item_id,
                             "value": body.value, "context": body.context.model_dump() if body.context else {}}
    if idempotency_key:
        event["event_id"] = _event_id(user_id, idempotency_key, "behavior")
    if body.timestamp is not None:
        event["event_time"] = as_millis(body.timestamp)
    return Tracked(user_id=user_id, event_id=await produce_behavior(state, event))
