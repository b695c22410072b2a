"""Campaign routes: define campaigns, move them through their lifecycle (draft -> scheduled -> running
<-> paused -> completed -> archived), preview and test-send a message for one user, estimate the
audience, read performance and lift, list a user's deliveries and in-app inbox, and list the local
mail server's Maildir. ``tracking_router`` holds the open pixel and click redirect (no key: they are
fetched by mail clients; the link's HMAC token is the credential) and turns them into behavior events.

Definitions live in Cassandra (``campaigns``) behind the versioned cache (aura/configcache.py), which
the worker's trigger owner reads too; the API never sends: a test-send is a record on the channel's
outbox topic, like the worker's, and the connectors deliver it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from fastapi.responses import RedirectResponse
from jinja2 import TemplateError
from pydantic import BaseModel, Field

from aura import layout
from aura.configcache import ConfigCache, ConfigUnavailable
from aura.layout import Tables
from aura.state import maildir, profile_codec
from aura.state.campaign_render import links, outbox_record, parse_link_token, recommendations
from aura.state.campaign_sends import decide, performance, template_error
from aura.state.campaigns import (
    API_TRIGGER_PROPERTY,
    STATUSES,
    Campaign,
    CampaignError,
    transition,
    validate_campaign,
)
from aura.state.profiles import ProfileConfig, document, parse_attrs
from aura.state.segments import parse_rules
from schemas.codec import codec
from serving.audience import scan_audience
from serving.decisions import now_ms, refused, unavailable
from serving.deps import State
from serving.routes.recommendations import recommender

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
tracking_router = APIRouter(prefix="/campaigns/track", tags=["campaigns"])
CampId = Path(min_length=1, max_length=64, description="Campaign id")
UserId = Path(min_length=1, max_length=256)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

EXAMPLE = {"id": "cart-abandon", "name": "Cart abandonment", "channel": "email",
           "audience": {"type": "everyone"},
           "trigger": {"type": "event", "event_type": "add_to_cart", "delay_s": 1800, "unless": "purchase"},
           "template": {"subject": "Still thinking about it, {{ user.first_name | default('there') }}?",
                        "body": "Your cart misses you. You may also like:\n{% for r in recommendations %}"
                                "- {{ r.title }}\n{% endfor %}"},
           "caps": {"per_user": 2, "window_s": 86400}, "quiet_hours": {"start_hour": 22, "end_hour": 8, "tz": "UTC"},
           "holdout": 0.1, "goal": {"event_type": "purchase", "window_s": 86400}}
CampaignBody = Annotated[dict[str, Any], Body(openapi_examples={"cart_abandonment": {"value": EXAMPLE}})]
T0 = 1795784400000
STORED = {**EXAMPLE, "status": "draft", "version": 1, "created_at": T0, "updated_at": T0}
RUNNING = {**STORED, "status": "running", "running_at": T0}
MESSAGE = {"message_id": "3f1c0e2a9d4b4c7e8a5b6c7d8e9f0a1b", "campaign_id": "cart-abandon", "user_id": "u7",
           "channel": "email", "address": "ann@example.com", "subject": "Still thinking about it, Ann?",
           "title": None, "body": "Your cart misses you. You may also like:\n- Trail shoes\n", "html": None,
           "url": None, "items": ["i552", "i565"], "trigger_time": T0, "queued_time": T0, "test": True}
PERFORMANCE = {"campaign_id": "cart-abandon", "status": "running", "channel": "email",
               "counts": {"queued": 900, "sent": 898, "failed": 2, "opened": 300, "clicked": 90, "cancelled": 410,
                          "suppressed:no_consent": 12},
               "rates": {"delivery": 1.0, "open": 0.334, "click": 0.1},
               "goal": {"event_type": "purchase", "window_s": 86400},
               "treated": {"users": 900, "conversions": 180, "rate": 0.2, "ci95": [0.175, 0.227], "revenue": 9120.5},
               "holdout": {"users": 100, "conversions": 10, "rate": 0.1, "ci95": [0.055, 0.174], "revenue": 480.0},
               "lift": {"absolute": 0.1, "ci95": [0.035, 0.165], "relative": 1.0, "z": 2.39, "p_value": 0.017,
                        "significant": True}}
DELIVERY = {"message_id": MESSAGE["message_id"], "campaign_id": "cart-abandon", "channel": "email", "status": "sent",
            "detail": "", "subject": MESSAGE["subject"], "items": ["i552", "i565"], "queued_at": T0, "at": T0 + 412}


def answer(example: Any, code: int = 200, more: dict[int | str, Any] | None = None) -> dict[int | str, Any]:
    """``responses=`` documenting the success answer's example (and any error answers in ``more``)."""
    return {code: {"content": {"application/json": {"example": example}}}, **(more or {})}



class UserIn(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"user_id": "u7", "event": {"item_id": "i7"}}]}}

    user_id: str = Field(min_length=1, max_length=256)
    event: dict[str, Any] = Field(default_factory=dict, description="A trigger event for the template's `event`")


def cache(state: Any) -> ConfigCache[Campaign]:
    c: ConfigCache[Campaign] | None = getattr(state, "_campaigns", None)
    if c is None:
        c = ConfigCache("campaigns", Tables.CAMPAIGNS, "campaign_id", state.redis, state.keys, state.cassandra,
                        validate_campaign)
        state._campaigns = c
    c.bind_session(state.cassandra)
    return c


async def _all(state: Any) -> dict[str, Campaign]:
    try:
        return await cache(state).get()
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc


async def _one(state: Any, campaign_id: str) -> Campaign:
    c = (await _all(state)).get(campaign_id)
    if c is None:
        raise HTTPException(404, f"no campaign {campaign_id!r}")
    return c


def _check(state: Any, doc: dict[str, Any]) -> Campaign:
    segments = frozenset(parse_rules(state.settings.profiles.segment_rules))
    try:
        return validate_campaign(doc, segments=segments, check_template=template_error)
    except CampaignError as exc:
        raise refused(exc.errors) from exc


async def _store(state: Any, doc: dict[str, Any], *, create: bool = False) -> None:
    try:
        ok = await (cache(state).insert(doc["id"], doc) if create else cache(state).update(doc["id"], doc))
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    if not ok:
        raise HTTPException(409 if create else 404,
                            f"campaign {doc['id']!r} exists" if create else f"no campaign {doc['id']!r}")


@router.post("", status_code=201, summary="Create a campaign (status draft)",
             responses=answer(STORED, 201, {409: {"description": "Exists"},
                                            422: {"description": "Invalid definition"}}))
async def create_campaign(state: State, doc: CampaignBody) -> dict[str, Any]:
    if doc.get("status", "draft") != "draft":
        raise refused([{"loc": ["status"], "msg": "campaigns are created as draft; POST /campaigns/{id}/activate"}])
    doc = {**doc, "status": "draft", "version": 1, "created_at": now_ms(), "updated_at": now_ms()}
    _check(state, doc)
    await _store(state, doc, create=True)
    return doc


@router.put("/{campaign_id}", summary="Replace a campaign's definition (not while running: pause it first)",
            responses=answer(STORED, more={404: {"description": "No such campaign"},
                                           409: {"description": "Running, completed or archived"}}))
async def update_campaign(state: State, doc: CampaignBody, campaign_id: str = CampId) -> dict[str, Any]:
    current = await _one(state, campaign_id)
    if current.status not in ("draft", "scheduled", "paused"):
        raise HTTPException(409, f"campaign {campaign_id!r} is {current.status}: pause it to change it")
    if doc.get("id", campaign_id) != campaign_id:
        raise refused([{"loc": ["id"], "msg": f"the body's id {doc.get('id')!r} differs from the path's"}])
    doc = {**doc, "id": campaign_id, "status": current.status, "created_at": current.doc.get("created_at"),
           "version": int(current.doc.get("version", 1)) + 1, "updated_at": now_ms()}
    _check(state, doc)
    await _store(state, doc)
    return doc


async def _move(state: Any, campaign_id: str, to: str) -> dict[str, Any]:
    current = await _one(state, campaign_id)
    try:
        doc = transition(current.doc, to)
    except CampaignError as exc:
        raise HTTPException(409, exc.errors) from exc
    if to == "running":
        running = [c for c in (await _all(state)).values() if c.status == "running" and c.id != campaign_id]
        limit = state.settings.campaigns.max_concurrent
        if len(running) >= limit:
            raise HTTPException(409, f"{len(running)} campaigns are running; at most {limit} "
                                     "(AURA_CAMPAIGN_MAX_CONCURRENT)")
    doc[f"{to}_at"] = now_ms()
    await _store(state, doc)
    return doc


@router.post("/{campaign_id}/activate", summary="Start sending (draft or scheduled -> running)",
             responses=answer(RUNNING))
async def activate(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return await _move(state, campaign_id, "running")


@router.post("/{campaign_id}/schedule", summary="Schedule (draft -> scheduled; runs in its schedule window "
                                                "once activated)", responses=answer({**STORED, "status": "scheduled"}))
async def schedule(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return await _move(state, campaign_id, "scheduled")


@router.post("/{campaign_id}/pause", summary="Stop sending; due messages wait (running -> paused)",
             responses=answer({**RUNNING, "status": "paused"}))
async def pause(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return await _move(state, campaign_id, "paused")


@router.post("/{campaign_id}/resume", summary="Send again (paused -> running)", responses=answer(RUNNING))
async def resume(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return await _move(state, campaign_id, "running")


@router.post("/{campaign_id}/complete", summary="End the campaign (conversions keep counting in the goal window)",
             responses=answer({**RUNNING, "status": "completed"}))
async def complete(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return await _move(state, campaign_id, "completed")


@router.post("/{campaign_id}/archive", summary="Archive a draft, scheduled or completed campaign",
             responses=answer({**STORED, "status": "archived"}))
async def archive(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return await _move(state, campaign_id, "archived")


@router.delete("/{campaign_id}", status_code=204, summary="Delete a campaign that is not running or paused",
               responses={404: {"description": "No such campaign"}, 409: {"description": "Running or paused"}})
async def delete_campaign(state: State, campaign_id: str = CampId) -> Response:
    current = await _one(state, campaign_id)
    if current.status in ("running", "paused"):
        raise HTTPException(409, f"campaign {campaign_id!r} is {current.status}; complete it first")
    try:
        if not await cache(state).delete(campaign_id):
            raise HTTPException(404, f"no campaign {campaign_id!r}")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return Response(status_code=204)


@router.get("", summary="Every campaign", responses=answer({"campaigns": [RUNNING]}))
async def list_campaigns(state: State, status: str | None = Query(None, description=f"One of {STATUSES}")
                         ) -> dict[str, Any]:
    cs = sorted((await _all(state)).values(), key=lambda c: c.id)
    return {"campaigns": [c.doc for c in cs if status is None or c.status == status]}


@router.get("/mail", summary="The local development mail server's newest messages (Maildir)",
            responses=answer({"messages": [{"key": "1796569124.M540930P17367Q6.vm", "message_id":
                                            f"{MESSAGE['message_id']}@aura", "to": "ann@example.com",
                                            "from": "Aura <campaigns@aura.local>", "subject": MESSAGE["subject"],
                                            "date": "Sun, 06 Dec 2026 14:59:51 -0000", "mtime": 1796569124.5,
                                            "text": MESSAGE["body"]}]}))
async def list_mail(state: State, to: str | None = Query(None, max_length=320),
                    limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
    return {"messages": maildir.list_messages(maildir.root(state.settings), limit=limit, to=to)}


@router.get("/{campaign_id}", summary="One campaign", responses=answer(RUNNING))
async def get_campaign(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    return (await _one(state, campaign_id)).doc


async def _user(state: Any, user_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], bool]:
    pipe = state.redis.pipeline(transaction=False)
    profile_codec.queue_read(pipe, state.keys, user_id)
    pipe.hgetall(state.keys.user_attrs(user_id))
    raw_state, raw_attrs = await pipe.execute()
    attrs, prefs = parse_attrs(raw_attrs)
    prof = document(profile_codec.unpack(raw_state), now_ms(), ProfileConfig.from_settings(state.settings))
    return attrs, prefs, prof, bool(raw_state) or bool(raw_attrs)


async def _render(state: Any, c: Campaign, body: UserIn, message_id: str, test: bool) -> dict[str, Any]:
    attrs, _prefs, prof, _exists = await _user(state, body.user_id)
    cs = state.settings.campaigns
    recs = await recommendations(recommender(state), state.redis, state.keys, body.user_id,
                                 cs.recommendations)
    message_links = links(cs.public_url, cs.link_secret.get_secret_value(), c.id, body.user_id, message_id)
    try:
        return outbox_record(c, body.user_id, message_id, attrs, prof, body.event, recs, message_links, now_ms(),
                             now_ms(), test=test)
    except TemplateError as exc:
        raise refused([{"loc": ["template"], "msg": f"the template fails for this user: {type(exc).__name__}: "
                                                    f"{exc}"}]) from exc


@router.post("/{campaign_id}/preview", summary="The message the user would get now (nothing is sent)",
             responses=answer({**MESSAGE, "deliverable": True, "reason": None}))
async def preview(state: State, body: UserIn, campaign_id: str = CampId) -> dict[str, Any]:
    c = await _one(state, campaign_id)
    attrs, prefs, _prof, exists = await _user(state, body.user_id)
    verdict = decide(c, body.user_id, now_ms(), in_audience=True, prefs=prefs, attrs=attrs, cap_members=[],
                     exists=exists, forced=True)
    out = await _render(state, c, body, f"preview-{uuid.uuid4().hex[:16]}", test=True)
    return {**out, "deliverable": verdict.outcome == "send", "reason": verdict.reason or None}


@router.post("/{campaign_id}/test-send", status_code=202,
             summary="Send the message to one user now (skips audience, holdout, caps and quiet hours, never consent)",
             responses=answer({"message_id": "test-9b2f", "channel": "email", "queued": True}, 202))
async def test_send(state: State, body: UserIn, campaign_id: str = CampId) -> dict[str, Any]:
    c = await _one(state, campaign_id)
    attrs, prefs, _prof, exists = await _user(state, body.user_id)
    verdict = decide(c, body.user_id, now_ms(), in_audience=True, prefs=prefs, attrs=attrs, cap_members=[],
                     exists=exists, forced=True)
    if verdict.outcome != "send":
        raise HTTPException(409, f"cannot send to {body.user_id!r}: {verdict.reason}")
    record = await _render(state, c, body, f"test-{uuid.uuid4().hex}", test=True)
    if state.producer is None:
        raise HTTPException(503, "no Kafka producer", headers={"Retry-After": "1"})
    topic = layout.topic(state.settings, layout.OUTBOX[c.channel])
    state.producer.produce(topic, value=codec("campaign_message").encode(record), key=body.user_id.encode())
    await asyncio.to_thread(state.producer.flush, 5)
    return {"message_id": record["message_id"], "channel": c.channel, "queued": True}


class TriggerIn(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"user_id": "u7", "occurrence_id": "order-1042",
                                                        "data": {"order": "1042"}}]}}

    user_id: str = Field(min_length=1, max_length=256)
    occurrence_id: str = Field(min_length=1, max_length=200, description="Idempotency key: one message per "
                                                                          "(campaign, user, occurrence)")
    item_id: str | None = Field(None, max_length=256)
    data: dict[str, str] = Field(default_factory=dict, max_length=50,
                                 description="Strings the template sees as event.properties")


@router.post("/{campaign_id}/trigger", status_code=202,
             summary="Transactional send: trigger an api campaign for one user (guards apply; idempotent)",
             responses=answer({"campaign_id": "receipt", "user_id": "u7", "event_id": "campaign:receipt:order-1042",
                               "accepted": True}, 202))
async def trigger(state: State, body: TriggerIn, campaign_id: str = CampId) -> dict[str, Any]:
    c = await _one(state, campaign_id)
    if c.trigger.kind != "api":
        raise HTTPException(409, f"campaign {campaign_id!r} is triggered by events, not by API calls")
    if c.status != "running":
        raise HTTPException(409, f"campaign {campaign_id!r} is {c.status}")
    if state.producer is None:
        raise HTTPException(503, "no Kafka producer", headers={"Retry-After": "1"})
    ms = now_ms()
    event_id = f"campaign:{c.id}:{body.occurrence_id}"
    rec = {"event_id": event_id, "event_type": "custom", "user_id": body.user_id, "item_id": body.item_id,
           "event_time": ms, "receive_time": ms, "campaign_id": c.id,
           "properties": {**body.data, API_TRIGGER_PROPERTY: c.id}}
    state.producer.produce(layout.topic(state.settings, layout.BEHAVIOR), key=body.user_id.encode(),
                           value=codec("behavior_event").encode(rec))
    await asyncio.to_thread(state.producer.flush, 5)
    return {"campaign_id": c.id, "user_id": body.user_id, "event_id": event_id, "accepted": True}


AUDIENCE = {"campaign_id": "vip-winback", "type": "rule", "size": 1873, "scanned": 10000, "exact": False,
            "share": 0.1873, "share_low": 0.1798, "share_high": 0.1951, "stopped": "scan",
            "note": "estimate: the scan stopped at `scan` (10000) users; `size` counts the audience among the 10000 "
                    "users with a stored profile or identity attributes scanned, `share` is its share of them with "
                    "a 95% Wilson interval, an estimate of the audience's share of all users with a stored profile "
                    "or identity attributes (their total is not known without a full scan)"}


@router.get("/{campaign_id}/audience",
            summary="Audience size: exact for segments and user lists; for everyone and rules, the rule evaluated "
                    "on up to `scan` users (exact when that covers them all, else a share with a 95% interval)",
            responses=answer(AUDIENCE))
async def audience(state: State, campaign_id: str = CampId,
                   scan: int = Query(10_000, ge=100, le=200_000,
                                     description="Users (with a profile or identity attributes) looked at at most")
                   ) -> dict[str, Any]:
    c = await _one(state, campaign_id)
    a = c.audience
    if a.kind == "users":
        return {"campaign_id": c.id, "type": a.kind, "size": len(a.users), "exact": True,
                "note": "the ids on the campaign's user list"}
    if a.kind == "segment":
        n = await state.redis.scard(state.keys.segment_members(a.segment or ""))
        return {"campaign_id": c.id, "type": a.kind, "size": int(n), "exact": True,
                "note": f"the members of segment {a.segment!r} now"}
    found = await scan_audience(state.redis, state.keys, a, scan, state.settings.campaigns.audience_scan_s)
    return {"campaign_id": c.id, "type": a.kind, **found}


@router.get("/{campaign_id}/performance", summary="Counts, rates, conversions and lift against the holdout",
            responses=answer(PERFORMANCE))
async def get_performance(state: State, campaign_id: str = CampId) -> dict[str, Any]:
    c = await _one(state, campaign_id)
    tally = await state.redis.hgetall(state.keys.campaign_stats(c.id))
    out = performance(c, tally)
    if c.trigger.kind == "schedule":  # the audience expansion's progress (streams/campaign_schedule.py)
        out["schedule"] = await state.redis.hgetall(state.keys.campaign_schedule(c.id))
    return out


@router.get("/users/{user_id}/deliveries", summary="The user's latest campaign messages, newest first",
            responses=answer({"user_id": "u7", "deliveries": [DELIVERY]}))
async def deliveries(state: State, user_id: str = UserId, limit: int = Query(50, ge=1, le=100)) -> dict[str, Any]:
    raw = await state.redis.lrange(state.keys.campaign_user_messages(user_id), 0, limit - 1)
    return {"user_id": user_id, "deliveries": [json.loads(r) for r in raw]}


@router.get("/inbox/{user_id}", summary="The user's in-app messages (the storefront polls this)",
            responses=answer({"user_id": "u7", "messages": [{"message_id": MESSAGE["message_id"],
                                                             "campaign_id": "welcome", "title": "Welcome",
                                                             "body": "Picked for you", "url": None,
                                                             "items": ["i552"], "queued_time": T0}]}))
async def inbox(state: State, user_id: str = UserId) -> dict[str, Any]:
    raw = await state.redis.zrevrange(state.keys.campaign_inbox(user_id), 0, -1)
    return {"user_id": user_id, "messages": [json.loads(v) for v in raw]}


def _track(state: Any, token: str, event_type: str) -> tuple[str, str, str]:
    parsed = parse_link_token(state.settings.campaigns.link_secret.get_secret_value(), token)
    if parsed is None:
        raise HTTPException(404, "unknown link")
    cid, user, mid = parsed
    if state.producer is not None:
        ms = int(time.time() * 1000)
        rec = {"event_id": f"{mid}:{event_type}", "event_type": event_type, "user_id": user, "event_time": ms,
               "receive_time": ms, "campaign_id": cid, "message_id": mid, "context": {"channel": "email"}}
        state.producer.produce(layout.topic(state.settings, layout.BEHAVIOR), key=user.encode(),
                               value=codec("behavior_event").encode(rec))
        state.producer.poll(0)
    return cid, user, mid


@tracking_router.get("/open/{token}.gif", summary="Open pixel: records a message_open event",
                     response_class=Response, responses={200: {"content": {"image/gif": {
                         "schema": {"type": "string", "format": "binary"}, "example": "GIF89a (1x1, transparent)"}}}})
async def track_open(state: State, token: str = Path(max_length=1024)) -> Response:
    _track(state, token, "message_open")
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


@tracking_router.get("/click/{token}", summary="Click redirect: records a message_click event, then redirects",
                     status_code=302, response_class=RedirectResponse)
async def track_click(state: State, token: str = Path(max_length=1024),
                      url: str = Query("/", max_length=2048)) -> Response:
    _track(state, token, "message_click")
    if not (url.startswith(("https://", "http://")) or url.startswith("/")) or url.startswith("//"):
        raise HTTPException(422, [{"loc": ["query", "url"], "msg": "an http(s) URL or a path", "type": "value_error"}])
    return RedirectResponse(url, status_code=302)
