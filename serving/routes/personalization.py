"""Personalization rule routes: create, replace, delete, list rules, and evaluate them for a user in
a context (channel web, email or mobile).

Rules are stored in Cassandra (``personalization_rules``) and read through the versioned cache
(aura/configcache.py): a warm evaluation is one Redis pipeline (the cache version, the user's
profile hashes and the segment memberships the rules test) and no Cassandra read. The grammar
and semantics are aura/rules.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from aura.configcache import ConfigUnavailable
from aura.state.rules import RuleError, evaluate, ordered, referenced_segments, validate_rule, with_time
from schemas.validation import BoundedObject, ContextValue, Id, ShortText
from serving.decisions import check_room, decision_state, now_ms, refused, unavailable, user_fields
from serving.deps import State

router = APIRouter(prefix="/personalization", tags=["personalization"])
RuleId = Path(min_length=1, max_length=64, description="Rule id")

RULE_EXAMPLE = {
    "id": "fr-vip-mobile", "name": "French VIPs on mobile", "priority": 10, "channels": ["web", "mobile"],
    "conditions": {"all": [
        {"field": "profile.country", "op": "equals", "value": "FR"},
        {"any": [{"field": "segments", "op": "contains", "value": "vip"},
                 {"field": "profile.ltv", "op": "gte", "value": 500}]},
        {"field": "context.device", "op": "in", "value": ["ios", "android"]}]},
    "content": {"banner": "promo-fr-vip"}, "variant": "promo",
}
RuleBody = Annotated[BoundedObject, Body(openapi_examples={"rule": {"value": RULE_EXAMPLE}})]


class ContextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[ShortText, Field(max_length=256)] | None = None
    placement: Annotated[ShortText, Field(max_length=128)] | None = None
    device: Annotated[ShortText, Field(max_length=64)] | None = None
    locale: Annotated[ShortText, Field(max_length=32)] | None = None
    referrer: ShortText | None = None
    time: int | None = Field(None, ge=0, le=253_402_300_799_999,  # up to year 9999: datetime's range
                             description="Epoch ms (default: now); hour, weekday, date derive from it")


class EvaluateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id
    channel: Literal["web", "email", "mobile"] = "web"
    context: ContextIn = Field(default_factory=ContextIn)
    profile: Annotated[dict[Annotated[ShortText, Field(min_length=1, max_length=128)], ContextValue],
                       Field(max_length=64)] | None = Field(
        None, description="Profile fields that override the stored profile (e.g. known by the caller)")
    segments: list[Id] | None = Field(None, max_length=100, description="Extra segments the user is in")
    all_matches: bool = Field(False, description="Return every matching rule, best first")


class MatchOut(BaseModel):
    rule_id: str
    priority: int
    variant: str | None
    content: Any


class EvaluateOut(BaseModel):
    user_id: str
    channel: str
    rule_id: str | None = Field(description="The winning rule (None: no rule matched)")
    variant: str | None
    content: Any
    matches: list[MatchOut]


class RuleList(BaseModel):
    rules: list[dict[str, Any]]


async def _rules(state: Any) -> dict[str, Any]:
    try:
        return await decision_state(state).rules.get()
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc


def _check(doc: dict[str, Any]) -> None:
    try:
        validate_rule(doc)
    except RuleError as exc:
        raise refused(exc.errors) from exc


@router.post("/rules", status_code=201, summary="Create a rule",
             responses={409: {"description": "A rule with this id exists"}, 422: {"description": "Invalid rule"}})
async def create_rule(state: State, doc: RuleBody) -> dict[str, Any]:
    _check(doc)
    await check_room(state, decision_state(state).rules)
    try:
        if not await decision_state(state).rules.insert(doc["id"], doc):
            raise HTTPException(409, f"rule {doc['id']!r} exists; PUT /personalization/rules/{doc['id']} replaces it")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return doc


@router.put("/rules/{rule_id}", summary="Replace a rule", responses={404: {"description": "No such rule"}})
async def replace_rule(state: State, doc: RuleBody, rule_id: str = RuleId) -> dict[str, Any]:
    doc = {**doc, "id": doc.get("id", rule_id)}
    if doc["id"] != rule_id:
        raise refused([{"loc": ["id"], "msg": f"the body's id {doc['id']!r} differs from the path's {rule_id!r}"}])
    _check(doc)
    try:
        if not await decision_state(state).rules.update(rule_id, doc):
            raise HTTPException(404, f"no rule {rule_id!r}")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return doc


@router.delete("/rules/{rule_id}", status_code=204, summary="Delete a rule",
               responses={404: {"description": "No such rule"}})
async def delete_rule(state: State, rule_id: str = RuleId) -> Response:
    try:
        if not await decision_state(state).rules.delete(rule_id):
            raise HTTPException(404, f"no rule {rule_id!r}")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return Response(status_code=204)


@router.get("/rules", response_model=RuleList, summary="Every rule, in evaluation order")
async def list_rules(state: State) -> RuleList:
    return RuleList(rules=[r.doc for r in ordered((await _rules(state)).values())])


@router.get("/rules/{rule_id}", summary="One rule", responses={404: {"description": "No such rule"}})
async def get_rule(state: State, rule_id: str = RuleId) -> dict[str, Any]:
    rule = (await _rules(state)).get(rule_id)
    if rule is None:
        raise HTTPException(404, f"no rule {rule_id!r}")
    return rule.doc


@router.post("/evaluate", response_model=EvaluateOut, summary="The content or variant for a user in a context")
async def evaluate_rules(state: State, body: EvaluateIn) -> EvaluateOut:
    rules = ordered((await _rules(state)).values())
    profile, segments = await user_fields(state, body.user_id, referenced_segments(rules))
    if body.profile:
        profile.update(body.profile)
    segments |= set(body.segments or ())
    ctx = with_time(body.context.model_dump(exclude_none=True), now_ms())
    matches = evaluate(rules, body.channel, profile, frozenset(segments), ctx, first_only=not body.all_matches)
    best = matches[0] if matches else None
    return EvaluateOut(
        user_id=body.user_id, channel=body.channel, rule_id=best.rule_id if best else None,
        variant=best.variant if best else None, content=best.content if best else None,
        matches=[MatchOut(rule_id=m.rule_id, priority=m.priority, variant=m.variant, content=m.content)
                 for m in matches])
