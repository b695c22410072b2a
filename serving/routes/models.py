"""Model registry routes: list models and versions, train (starts the batch job), activate a version
per placement, predict with a stored version, and online monitoring (CTR of served lists from
impressions and clicks, progressive validation error of the online MF learner).

The registry itself is aura/models/registry.py (Cassandra); the monitoring counters (``recs_monitor``)
are kept by the stream (format: aura/state/cooccurrence.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from aura.bootstrap import redis_sync
from aura.models.registry import MODEL_TYPES, Registry, RegistryError
from aura.models.specs import TRAINABLE as TRAINED_ON_WINDOW
from aura.models.specs import SpecError, validate
from aura.ranking.blend import SOURCES
from aura.settings import REPO_ROOT, settings_env
from aura.state.cooccurrence import MONITOR_STREAM
from serving.deps import State

router = APIRouter(prefix="/models", tags=["models"])
ModelPath = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
TRAINABLE = {"ease": [sys.executable, "-m", "jobs.ease"]}
_cache: dict[tuple[str, int], Any] = {}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_sync_redis: dict[str, Any] = {}  # one synchronous client per Redis URL (registry writes run in threads)


def registry(state: Any) -> Registry:
    if state.cassandra is None:
        raise HTTPException(503, "registry store (Cassandra) unavailable")
    url = state.settings.redis.url
    if url not in _sync_redis:
        _sync_redis[url] = redis_sync(state.settings)
    return Registry(state.cassandra, state.settings, _sync_redis[url])


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except RegistryError as exc:
        raise HTTPException(404 if "no model" in str(exc) else 422, str(exc)) from exc


@router.get("", summary="Every model (latest version) and the active version per placement")
async def list_models(state: State) -> dict[str, Any]:
    reg = registry(state)
    models = await call(reg.models)
    return {"types": sorted(MODEL_TYPES), "models": [m.doc() for m in models],
            "placements": await call(reg.placements)}


@router.get("/{model_id}/versions", summary="Every version of a model")
async def versions(state: State, model_id: str = ModelPath) -> list[dict[str, Any]]:
    vs = await call(registry(state).versions, model_id)
    if not vs:
        raise HTTPException(404, f"no model {model_id!r}")
    return [v.doc() for v in vs]


Epoch = Annotated[int, Field(ge=0, le=253_402_300_799_999)]
WINDOWED = tuple(TRAINED_ON_WINDOW)  # trained on a time window by jobs/train.py


def spec_error(exc: SpecError) -> HTTPException:
    """A 422 in FastAPI's shape, naming the field (``config.<name>`` or ``type``)."""
    return HTTPException(422, [{"loc": ["body", *exc.field.split(".")], "msg": exc.msg, "type": "value_error"}])


class TrainIn(Strict):
    type: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="Default: the type the model was created with (POST /v1/models), else ease")
    lam: Annotated[float, Field(gt=0, le=1e6)] = 500.0
    activate: Annotated[str, Field(max_length=64)] | None = None
    config: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[float, Field(allow_inf_nan=False)]],
                      Field(max_length=16)] = Field(
        {}, description="Hyperparameters (ease: lambda; item_knn: neighbours; popularity: none)")
    train_from: Epoch | None = Field(None, description="Train on [train_from, train_to), epoch ms ...")
    train_to: Epoch | None = None
    eval_to: Epoch | None = Field(None, description="... and evaluate on [train_to, eval_to): HR@10, NDCG@10, "
                                                    "coverage@10 in the version's metrics")
    resume: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")] | None = Field(
        None, description="Continue a stopped or crashed windowed job (its job id, in the version's progress)")


@router.post("/{model_id}/train", status_code=202, summary="Start a training job (batch models)")
async def train(state: State, body: TrainIn, model_id: str = ModelPath) -> dict[str, Any]:
    windowed = (body.train_from, body.train_to, body.eval_to)
    spec = await call(registry(state).spec, model_id)
    kind = body.type or (spec["type"] if spec else "ease")
    if spec and kind != spec["type"]:
        raise HTTPException(422, [{"loc": ["body", "type"], "msg": f"model {model_id!r} was created as "
                                   f"{spec['type']!r}", "type": "value_error"}])
    if any(w is not None for w in windowed):
        if None in windowed or not body.train_from < body.train_to < body.eval_to:  # type: ignore[operator]
            raise HTTPException(422, [{"loc": ["body", "train_to"], "msg": "give train_from < train_to < eval_to",
                                       "type": "value_error"}])
        config = {**(spec["config"] if spec else {}), **body.config} or (
            {"lambda": body.lam} if kind == "ease" else {})
        try:
            validate(kind, config)
        except SpecError as exc:
            raise spec_error(exc) from exc
        argv = [sys.executable, "-m", "jobs.train", model_id, "--type", kind, "--config", json.dumps(config),
                "--train-from", str(body.train_from), "--train-to", str(body.train_to),
                "--eval-to", str(body.eval_to)]
        if body.resume:
            argv += ["--resume", body.resume]
    elif kind not in TRAINABLE or model_id != kind:
        raise HTTPException(422, f"only {sorted(TRAINABLE)} are trained by a job (model id = type); online models "
                                 "(online_mf, trending, co-occurrence, content) are trained by the stream; "
                                 f"{list(WINDOWED)} are trained and evaluated on a time window (train_from, "
                                 "train_to, eval_to)")
    else:
        argv = [*TRAINABLE[kind], "--lam", str(body.lam)]
        if body.activate:
            argv += ["--activate", body.activate]
    log_dir = state.settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"job-{model_id}.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, **settings_env(state.settings)},  # noqa: S603
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return {"model_id": model_id, "job_pid": proc.pid, "log": str(log_dir / f"job-{model_id}.log")}


class ActivateIn(Strict):
    placement: Annotated[str, Field(min_length=1, max_length=64)]
    weights: dict[str, Annotated[float, Field(ge=0, le=100)]] | None = Field(
        None, description=f"Blend weights per source: {', '.join(SOURCES)}")


@router.post("/{model_id}/versions/{version}/activate", summary="Serve this version (and weights) at a placement")
async def activate(state: State, body: ActivateIn, model_id: str = ModelPath,
                   version: int = Path(ge=1)) -> dict[str, Any]:
    if body.weights and set(body.weights) - set(SOURCES):
        raise HTTPException(422, f"unknown sources {sorted(set(body.weights) - set(SOURCES))}")
    await call(registry(state).activate, body.placement, model_id, version, body.weights)
    return {"placement": body.placement, "model_id": model_id, "version": version, "weights": body.weights}


class PredictIn(Strict):
    user_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    history: Annotated[list[str], Field(max_length=1000)] | None = Field(None, description="Items (default: seen)")
    items: Annotated[list[str], Field(max_length=1000)] | None = Field(None, description="Score these only")
    k: Annotated[int, Field(ge=1, le=200)] = 10
    version: Annotated[int, Field(ge=1)] | None = None


@router.post("/{model_id}/predict", summary="Scores of a stored batch model version for a history")
async def predict(state: State, body: PredictIn, model_id: str = ModelPath) -> dict[str, Any]:
    reg = registry(state)
    mv = await call(reg.get, model_id, body.version)
    if mv.type != "ease":
        raise HTTPException(422, f"predict serves item-item batch models (ease); {mv.type}: use /recommendations")
    key = (model_id, mv.version)
    if key not in _cache:
        _, model = await call(reg.load, model_id, mv.version)
        _cache.clear()
        _cache[key] = model
    model = _cache[key]
    ids = model.ids
    if len(ids) != model.B.shape[0]:
        raise HTTPException(409, "item index of this version is not available")
    index = {i: n for n, i in enumerate(ids)}
    history = body.history
    if history is None and body.user_id:
        history = await state.redis.zrange(state.keys.recs_user_seen(body.user_id), 0, -1)
    x = np.zeros(len(ids), dtype=np.float32)
    for i in history or []:
        if i in index:
            x[index[i]] = 1.0
    scores = x @ model.B
    if body.items is not None:
        return {"model_id": model_id, "version": mv.version,
                "scores": {i: float(scores[index[i]]) if i in index else None for i in body.items}}
    scores[x > 0] = -np.inf
    top = np.argsort(-scores)[: body.k]
    return {"model_id": model_id, "version": mv.version,
            "items": [{"item_id": ids[j], "score": float(scores[j])} for j in top if np.isfinite(scores[j])]}


@router.get("/{model_id}/monitoring", summary="Online monitoring: CTR of served lists, online learner error")
async def monitoring(state: State, model_id: str = ModelPath) -> dict[str, Any]:
    names = [model_id, f"hybrid+{model_id}"] if model_id not in ("hybrid", MONITOR_STREAM) else [model_id]
    pipe = state.redis.pipeline(transaction=False)
    for n in names:
        pipe.hgetall(state.keys.recs_monitor(n))
    raw = await pipe.execute()
    out: dict[str, Any] = {"model_id": model_id, "served_as": {}}
    for n, h in zip(names, raw, strict=True):
        if not h:
            continue
        doc: dict[str, Any] = {k: int(float(v)) for k, v in h.items()}
        if "impressions" in doc:
            doc["ctr"] = doc.get("clicks", 0) / doc["impressions"] if doc["impressions"] else None
        if "pv_n" in doc:
            doc["progressive_validation_error"] = doc.get("pv_err", 0) / doc["pv_n"] if doc["pv_n"] else None
        out["served_as"][n] = doc
    return out
