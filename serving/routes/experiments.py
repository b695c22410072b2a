"""Experiment routes: define A/B and multivariate experiments, move them through their lifecycle
(draft -> running <-> paused -> stopped -> winner), assign users (sticky, and an exposure record
on the decisions topic for each assignment) and read the results the stream keeps.

Definitions live in Cassandra (``experiments``) behind the versioned cache; assignment is a pure
hash (aura/experiments.py) so it needs no state per user; results are the tally hash that
streams/experiments.py keeps in Redis (``experiment_results`` in Cassandra when Redis has none).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from aura.bootstrap import cassandra_execute
from aura.configcache import ConfigUnavailable
from aura.layout import Tables
from aura.state.experiments import (
    STATUSES,
    Experiment,
    ExperimentError,
    decide,
    parse_tally,
    results,
    transition,
    validate_experiment,
)
from aura.state.rules import segments_in, with_time
from schemas.validation import BoundedObject, Id
from serving.decisions import check_room, decision_state, now_ms, produce, refused, unavailable, user_fields
from serving.deps import State
from serving.routes.personalization import ContextIn

router = APIRouter(prefix="/experiments", tags=["experiments"])
ExpId = Path(min_length=1, max_length=64, description="Experiment id")

EXAMPLE = {"id": "checkout-button", "variants": [{"id": "control", "weight": 1}, {"id": "green", "weight": 1,
                                                                                   "payload": {"color": "green"}}],
           "targeting": {"field": "context.device", "op": "in", "value": ["ios", "android", "web"]},
           "conversion_events": ["purchase", "add_to_cart"]}
MV_EXAMPLE = {"id": "hero-mvt", "factors": {"headline": ["A", "B"], "image": ["cat", "dog", "none"]}}
ExpBody = Annotated[BoundedObject, Body(openapi_examples={"ab": {"value": EXAMPLE}, "multivariate": {"value":
                                                                                                      MV_EXAMPLE}})]


class StatusIn(BaseModel):
    status: Literal["draft", "running", "paused", "stopped", "winner"]
    winner: str | None = Field(None, description="Required with status 'winner': the variant everyone gets")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id
    context: ContextIn = Field(default_factory=ContextIn)
    channel: Literal["web", "email", "mobile"] = "web"
    segments: list[Id] | None = Field(None, max_length=100, description="Extra segments the user is in")


class AssignOut(BaseModel):
    experiment_id: str
    variant: str = Field(description="What to show (control when the user is not in the experiment)")
    payload: dict[str, Any]
    in_experiment: bool = Field(description="True: an exposure was recorded")
    reason: str = Field(description="assigned, not_running, not_targeted, not_covered or winner")
    exposure_id: str | None = None


class AssignAllOut(BaseModel):
    user_id: str
    assignments: list[AssignOut]


class ExperimentList(BaseModel):
    experiments: list[dict[str, Any]]


async def _all(state: Any) -> dict[str, Experiment]:
    try:
        return await decision_state(state).experiments.get()
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc


async def _one(state: Any, experiment_id: str) -> Experiment:
    exp = (await _all(state)).get(experiment_id)
    if exp is None:
        raise HTTPException(404, f"no experiment {experiment_id!r}")
    return exp


def _check(doc: dict[str, Any]) -> Experiment:
    try:
        return validate_experiment(doc)
    except ExperimentError as exc:
        raise refused(exc.errors) from exc


async def _store(state: Any, doc: dict[str, Any], *, create: bool = False) -> None:
    cache = decision_state(state).experiments
    try:
        ok = await (cache.insert(doc["id"], doc) if create else cache.update(doc["id"], doc))
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    if not ok:
        raise HTTPException(409 if create else 404,
                            f"experiment {doc['id']!r} exists" if create else f"no experiment {doc['id']!r}")


@router.post("", status_code=201, summary="Create an experiment (status draft)",
             responses={409: {"description": "Exists"}, 422: {"description": "Invalid definition"}})
async def create_experiment(state: State, doc: ExpBody) -> dict[str, Any]:
    if doc.get("status", "draft") != "draft":
        raise refused([{"loc": ["status"], "msg": "experiments are created as draft; start them with "
                                                  "POST /experiments/{id}/status"}])
    doc = {**doc, "status": "draft", "created_at": now_ms()}
    _check(doc)
    await check_room(state, decision_state(state).experiments)
    await _store(state, doc, create=True)
    return doc


@router.put("/{experiment_id}", summary="Replace a draft experiment's definition",
            responses={404: {"description": "No such experiment"}, 409: {"description": "Not a draft"}})
async def replace_experiment(state: State, doc: ExpBody, experiment_id: str = ExpId) -> dict[str, Any]:
    current = await _one(state, experiment_id)
    if current.status != "draft":
        raise HTTPException(409, f"experiment {experiment_id!r} is {current.status}: only drafts can change; "
                                 "stop it and create a new experiment")
    doc = {**doc, "id": doc.get("id", experiment_id), "status": "draft", "created_at": current.doc.get("created_at")}
    if doc["id"] != experiment_id:
        raise refused([{"loc": ["id"], "msg": f"the body's id {doc['id']!r} differs from the path's"}])
    _check(doc)
    await _store(state, doc)
    return doc


@router.post("/{experiment_id}/status", summary="Move an experiment through its lifecycle",
             responses={409: {"description": "Transition not allowed from the current status"}})
async def set_status(state: State, body: StatusIn, experiment_id: str = ExpId) -> dict[str, Any]:
    current = await _one(state, experiment_id)
    try:
        doc = transition(current.doc, body.status, body.winner)
    except ExperimentError as exc:
        raise HTTPException(409 if exc.errors[0]["loc"] == ["status"] else 422, exc.errors) from exc
    doc[f"{body.status}_at"] = now_ms()
    await _store(state, doc)
    return doc


@router.delete("/{experiment_id}", status_code=204, summary="Delete a draft, stopped or decided experiment",
               responses={409: {"description": "Running or paused"}})
async def delete_experiment(state: State, experiment_id: str = ExpId) -> Response:
    current = await _one(state, experiment_id)
    if current.status in ("running", "paused"):
        raise HTTPException(409, f"experiment {experiment_id!r} is {current.status}; stop it first")
    try:
        if not await decision_state(state).experiments.delete(experiment_id):
            raise HTTPException(404, f"no experiment {experiment_id!r}")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return Response(status_code=204)


@router.get("", response_model=ExperimentList, summary="Every experiment")
async def list_experiments(state: State, status: str | None = Query(None, description=f"One of {STATUSES}")
                           ) -> ExperimentList:
    exps = sorted((await _all(state)).values(), key=lambda e: e.id)
    return ExperimentList(experiments=[e.doc for e in exps if status is None or e.status == status])


@router.get("/{experiment_id}", summary="One experiment")
async def get_experiment(state: State, experiment_id: str = ExpId) -> dict[str, Any]:
    return (await _one(state, experiment_id)).doc


async def _assign(state: Any, exps: list[Experiment], body: AssignIn) -> list[AssignOut]:
    ds = decision_state(state)
    tested = set().union(*(segments_in(e.targeting) for e in exps))
    profile, segments = await user_fields(state, body.user_id, tested)
    segments |= set(body.segments or ())
    ctx = with_time({**body.context.model_dump(exclude_none=True), "channel": body.channel}, now_ms())
    out = []
    for exp in exps:
        d = decide(exp, body.user_id, profile, frozenset(segments), ctx)
        v = exp.variant(d.variant)
        exposure_id = None
        if d.in_experiment:
            exposure_id = uuid.uuid4().hex
            produce(state, ds, "experiment_exposure", body.user_id, {
                "event_id": exposure_id, "user_id": body.user_id, "experiment_id": exp.id, "variant_id": d.variant,
                "event_time": ctx["time"], "receive_time": now_ms(),
                "context": {k: ctx.get(k) for k in ("page", "placement", "device", "channel", "locale", "referrer")},
            })
        out.append(AssignOut(experiment_id=exp.id, variant=d.variant, payload=v.payload if v else {},
                             in_experiment=d.in_experiment, reason=d.reason, exposure_id=exposure_id))
    return out


@router.post("/{experiment_id}/assign", response_model=AssignOut,
             summary="The user's variant (sticky); records an exposure when the user is in the experiment")
async def assign_one(state: State, body: AssignIn, experiment_id: str = ExpId) -> AssignOut:
    return (await _assign(state, [await _one(state, experiment_id)], body))[0]


@router.post("/assign", response_model=AssignAllOut, summary="The user's variants in every running experiment")
async def assign_all(state: State, body: AssignIn) -> AssignAllOut:
    exps = [e for e in sorted((await _all(state)).values(), key=lambda e: e.id) if e.status in ("running", "winner")]
    return AssignAllOut(user_id=body.user_id, assignments=await _assign(state, exps, body))


@router.get("/{experiment_id}/results", summary="Exposures, conversions, revenue and statistics per variant")
async def get_results(state: State, experiment_id: str = ExpId,
                      metric: str | None = Query(None, description="Conversion event type (default: the first "
                                                                   "of the experiment's conversion_events)")
                      ) -> dict[str, Any]:
    exp = await _one(state, experiment_id)
    raw = await state.redis.hgetall(state.keys.experiment_tally(experiment_id))
    source = "redis"
    if not raw and state.cassandra is not None:
        rows = await cassandra_execute(
            state.cassandra, f"SELECT tally FROM {Tables.EXPERIMENT_RESULTS} WHERE experiment_id = %s",
            (experiment_id,), timeout=2.0)
        row = rows[0] if rows else None
        raw = {k: str(v) for k, v in (row.tally or {}).items()} if row is not None else {}
        source = "cassandra"
    out = results(exp, parse_tally(raw), metric)
    out["source"] = source
    return out
