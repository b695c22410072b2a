"""Model management routes next to the registry's (serving/routes/models.py): create a model of a
trainable type with its validated hyperparameters, read one model (its definition and versions), compare
versions, read a placement's activation history, roll a placement back, and edit a placement's blend
weights without training or activating anything.

The registry (aura/models/registry.py) owns the tables and the ``recs_placement`` hashes; the
hyperparameters are aura/models/specs.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import Field

from aura.models.specs import SpecError, describe, validate
from aura.ranking.blend import DEFAULT_WEIGHTS, SOURCES
from serving.deps import State
from serving.routes.models import ModelPath, Strict, call, registry, spec_error

router = APIRouter(prefix="/models", tags=["models"])
PlacementPath = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
Weights = dict[Annotated[str, Field(max_length=32)], Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]]
COMPARED = ("hr@10", "ndcg@10", "coverage@10")


class ModelIn(Strict):
    model_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    type: Annotated[str, Field(min_length=1, max_length=64)]
    config: Annotated[dict[Annotated[str, Field(max_length=64)], Any], Field(max_length=16)] = Field(
        {}, description="Hyperparameters of the type (GET /v1/models/hyperparameters); defaults fill the rest")
    description: Annotated[str, Field(max_length=500)] = ""


@router.get("/hyperparameters", summary="Every trainable type's hyperparameters, bounds and defaults")
async def hyperparameters() -> dict[str, Any]:
    return {"types": describe()}


@router.post("", status_code=201, summary="Create a model: a trainable type and its hyperparameters")
async def create(state: State, body: ModelIn) -> dict[str, Any]:
    try:
        config = validate(body.type, body.config)
    except SpecError as exc:
        raise spec_error(exc) from exc
    reg = registry(state)
    if not await call(reg.create, body.model_id, body.type, config, body.description):
        raise HTTPException(409, f"model {body.model_id!r} exists")
    return {"model_id": body.model_id, "type": body.type, "config": config, "description": body.description,
            "train": f"POST /v1/models/{body.model_id}/train with train_from, train_to, eval_to"}


@router.get("/{model_id}", summary="One model: its definition and every version (with training progress)")
async def get_model(state: State, model_id: str = ModelPath) -> dict[str, Any]:
    reg = registry(state)
    spec = await call(reg.spec, model_id)
    versions = await call(reg.versions, model_id)
    if spec is None and not versions:
        raise HTTPException(404, f"no model {model_id!r}")
    return {"model_id": model_id, "definition": spec, "versions": [v.doc() for v in versions]}


@router.get("/{model_id}/compare", summary="Versions side by side: offline metrics, window, configuration")
async def compare(state: State, model_id: str = ModelPath,
                  versions: Annotated[str | None, Query(max_length=200, pattern=r"^\d+(,\d+)*$",
                                                        description="e.g. 1,3 (default: every version)")] = None,
                  ) -> dict[str, Any]:
    vs = await call(registry(state).versions, model_id)
    if versions:
        wanted = {int(v) for v in versions.split(",")}
        missing = wanted - {v.version for v in vs}
        if missing:
            raise HTTPException(404, f"model {model_id!r} has no version {sorted(missing)}")
        vs = [v for v in vs if v.version in wanted]
    if not vs:
        raise HTTPException(404, f"no model {model_id!r}")
    rows = [{"version": v.version, "type": v.type, "status": v.status, "window": [v.window_start, v.window_end],
             "config": v.config, "metrics": {m: v.metrics.get(m) for m in (*COMPARED, "users")}} for v in vs]
    best = {}
    for m in COMPARED:
        scored = [(v.metrics[m], v.version) for v in vs if m in v.metrics]
        if scored:
            best[m] = max(scored)[1]
    return {"model_id": model_id, "versions": rows, "best": best}


@router.get("/placements/{placement}", summary="A placement's served model, weights and activation history")
async def placement(state: State, placement: str = PlacementPath) -> dict[str, Any]:
    reg = registry(state)
    current = (await call(reg.placements)).get(placement)
    return {"placement": placement, "current": current,
            "default_weights": DEFAULT_WEIGHTS.get(placement, DEFAULT_WEIGHTS["default"]),
            "history": await call(reg.history, placement)}


@router.post("/placements/{placement}/rollback", summary="Serve the placement's previous activation again")
async def rollback(state: State, placement: str = PlacementPath) -> dict[str, Any]:
    return await call(registry(state).rollback, placement)


class WeightsIn(Strict):
    weights: Weights | None = Field(..., description=f"Blend weights per source ({', '.join(SOURCES)}); null: "
                                                     "the placement's defaults")


@router.put("/placements/{placement}/weights", summary="Edit a placement's blend weights (no training)")
async def set_weights(state: State, body: WeightsIn, placement: str = PlacementPath) -> dict[str, Any]:
    unknown = sorted(set(body.weights or {}) - set(SOURCES))
    if unknown:
        raise HTTPException(422, [{"loc": ["body", "weights", unknown[0]], "msg": f"unknown source; known: "
                                   f"{list(SOURCES)}", "type": "value_error"}])
    out = await call(registry(state).set_weights, placement, body.weights)
    notes = []
    if (body.weights or {}).get("users", 0) > 0 and not state.settings.recs.user_neighbours:
        notes.append("users: the workers do not keep user neighbours (AURA_RECS_USER_NEIGHBOURS=false)")
    return {**out, "visible": "next request (the users' precomputed pools are re-ranked with these weights on "
                              "their next request)", "warnings": notes}
