"""Bandit routes: configure bandits, choose an arm (a decision record goes to the decisions topic;
the stream counts the pull and later the reward that carries the decision id), add and remove
arms while running, read the learned state; and strategy selection, a bandit per placement that
picks a recommender strategy (``choose_strategy`` is callable by other code in the API process).

Configuration lives in Cassandra (``bandits``) behind the versioned cache; the learned state is
the hash streams/bandits.py writes, read in the same pipeline as the cache version (one Redis
round trip per choice when warm). The policies are aura/bandits.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from aura.bootstrap import cassandra_execute
from aura.configcache import ConfigUnavailable
from aura.layout import Tables
from aura.state.bandits import (
    STRATEGIES,
    BanditConfig,
    BanditError,
    BanditState,
    feature_vector,
    features_dict,
    healthy,
    new_decision_id,
    new_state,
    pull,
    strategy_bandit_id,
    summary,
    validate_bandit,
)
from schemas.validation import BoundedObject, Context, Id
from serving.decisions import DecisionState, check_room, decision_state, now_ms, produce, refused, unavailable
from serving.deps import State
from serving.routes.models import call, registry

log = logging.getLogger(__name__)
router = APIRouter(tags=["bandits"])
BanditId = Path(min_length=1, max_length=64, description="Bandit id")
Placement = Path(min_length=1, max_length=56, pattern=r"^[A-Za-z0-9_.\-]+$", description="Placement name")

EXAMPLE = {"id": "homepage-hero", "policy": "thompson", "arms": ["summer", "sale", "new-in"], "floor": 0.05,
           "rewards": {"click": 1.0, "purchase": 1.0}}
CTX_EXAMPLE = {"id": "hero-ctx", "policy": "linucb", "arms": ["a", "b"], "features": ["device=mobile", "visits"],
               "params": {"alpha": 0.5}}
BanditBody = Annotated[BoundedObject, Body(openapi_examples={"thompson": {"value": EXAMPLE},
                                                              "linucb": {"value": CTX_EXAMPLE}})]


class ChooseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id
    context: Context = Field(default_factory=dict,
                             description="Features for contextual bandits (numbers within +-1e6); also logged")
    arms: list[Id] | None = Field(None, max_length=100, description="Restrict the choice to these active arms")


class ChooseOut(BaseModel):
    bandit_id: str
    decision_id: str = Field(description="Send it back as recommendation_id on the click / purchase events")
    arm: str
    explore: bool
    policy: str


class ArmsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[Id] = Field(default_factory=list, max_length=100)
    remove: list[Id] = Field(default_factory=list, max_length=100)


class BanditList(BaseModel):
    bandits: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Choice:
    bandit_id: str
    decision_id: str
    arm: str
    explore: bool
    policy: str


def _check(doc: dict[str, Any]) -> BanditConfig:
    try:
        return validate_bandit(doc)
    except BanditError as exc:
        raise refused(exc.errors) from exc


async def _configs(ds: DecisionState, ver: str | None = None) -> dict[str, BanditConfig]:
    try:
        return await ds.bandits.get(ver)
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc


async def _read(state: Any, ds: DecisionState, bandit_id: str) -> tuple[BanditConfig | None, BanditState | None, str]:
    """One pipeline: the config version and the bandit's state and version."""
    pipe = state.redis.pipeline(transaction=False)
    pipe.get(ds.bandits.ver_key)
    pipe.hmget(state.keys.bandit_state(bandit_id), "state", "ver")
    cfg_ver, (raw_state, ver) = await pipe.execute()
    cfg = (await _configs(ds, str(cfg_ver) if cfg_ver is not None else None)).get(bandit_id)
    if raw_state is None:
        return cfg, None, ""
    memo = ds.bandit_memo.get(bandit_id)
    if memo is not None and memo[0] == ver:
        return cfg, memo[1], ver
    try:
        st: BanditState | None = BanditState.from_json(json.loads(raw_state))
    except (ValueError, KeyError, TypeError) as exc:
        log.error("bandit %s: stored state unreadable (%s); choosing from the prior", bandit_id, exc)
        st = None
    if st is not None and not healthy(st):  # never serve a non-finite model: the prior instead
        log.error("bandit %s: stored state is not finite; choosing from the prior", bandit_id)
        st = None
    ds.bandit_memo[bandit_id] = (ver, st)
    return cfg, st, ver


async def choose(state: Any, bandit_id: str, user_id: str, context: dict[str, Any],
                 arms: list[str] | None = None, placement: str | None = None) -> Choice | None:
    """Choose an arm and record the decision (None: no such bandit). For use by any route."""
    ds = decision_state(state)
    cfg, st, _ver = await _read(state, ds, bandit_id)
    if cfg is None:
        return None
    active = [a for a in cfg.arms if arms is None or a in arms]
    if not active:
        raise HTTPException(422, [{"loc": ["body", "arms"], "msg": f"none of {arms} is an active arm of "
                                                                   f"{bandit_id!r}: {list(cfg.arms)}",
                                   "type": "value_error"}])
    x = feature_vector(cfg.features, context) if cfg.policy == "linucb" else None
    try:
        arm, explore = pull(cfg, st or new_state(cfg), active, ds.rng, x)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:  # a degenerate model: explore
        log.error("bandit %s: policy failed (%s); choosing uniformly", bandit_id, exc)
        arm, explore = active[int(ds.rng.integers(len(active)))], True
    decision_id = new_decision_id(bandit_id)
    produce(state, ds, "bandit_decision", user_id, {
        "decision_id": decision_id, "bandit_id": bandit_id, "arm": arm, "user_id": user_id,
        "event_time": now_ms(), "policy": cfg.policy, "explore": explore,
        "features": features_dict(cfg.features, x) if x is not None else {},
        "placement": placement or cfg.placement,
        "properties": {k: str(v) for k, v in list(context.items())[:16]},
    })
    return Choice(bandit_id, decision_id, arm, explore, cfg.policy)


async def choose_strategy(state: Any, placement: str, user_id: str, context: dict[str, Any] | None = None,
                          strategies: list[str] | None = None) -> Choice:
    """The recommender strategy for a placement, chosen by that placement's bandit, which an admin
    creates (``PUT /v1/strategies/{placement}``; a choice never creates one: read keys must not grow
    the configuration). Put the returned decision_id on the served list as recommendation_id so its
    clicks and purchases reward the strategy. 404 when the placement has no strategy bandit."""
    bid = strategy_bandit_id(placement)
    choice = await choose(state, bid, user_id, context or {}, strategies, placement)
    if choice is None:
        raise HTTPException(404, f"no strategy bandit for placement {placement!r}; an admin creates it with "
                                 f"PUT /v1/strategies/{placement}")
    return choice


@router.post("/bandits", status_code=201, summary="Create a bandit",
             responses={409: {"description": "Exists"}, 422: {"description": "Invalid configuration"}})
async def create_bandit(state: State, doc: BanditBody) -> dict[str, Any]:
    _check(doc)
    await check_room(state, decision_state(state).bandits)
    doc = {**doc, "created_at": now_ms()}
    try:
        if not await decision_state(state).bandits.insert(doc["id"], doc):
            raise HTTPException(409, f"bandit {doc['id']!r} exists")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return doc


async def _current(state: Any, bandit_id: str) -> BanditConfig:
    cfg = (await _configs(decision_state(state))).get(bandit_id)
    if cfg is None:
        raise HTTPException(404, f"no bandit {bandit_id!r}")
    return cfg


async def _replace(state: Any, bandit_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        if not await decision_state(state).bandits.update(bandit_id, doc):
            raise HTTPException(404, f"no bandit {bandit_id!r}")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return doc


@router.put("/bandits/{bandit_id}", summary="Replace a bandit's configuration (not its policy or features)",
            responses={409: {"description": "Policy or features changed"}})
async def replace_bandit(state: State, doc: BanditBody, bandit_id: str = BanditId) -> dict[str, Any]:
    cur = await _current(state, bandit_id)
    doc = {**doc, "id": doc.get("id", bandit_id), "created_at": cur.doc.get("created_at")}
    if doc["id"] != bandit_id:
        raise refused([{"loc": ["id"], "msg": "the body's id differs from the path's"}])
    new = _check(doc)
    if (new.policy, new.features) != (cur.policy, cur.features):
        raise HTTPException(409, "policy and features define the learned state; create a new bandit to change them")
    return await _replace(state, bandit_id, doc)


@router.post("/bandits/{bandit_id}/arms", summary="Add and remove arms while running (state is kept)")
async def change_arms(state: State, body: ArmsIn, bandit_id: str = BanditId) -> dict[str, Any]:
    cur = await _current(state, bandit_id)
    arms = [a for a in cur.arms if a not in body.remove] + [a for a in body.add if a not in cur.arms]
    doc = {**cur.doc, "arms": arms}
    _check(doc)
    return await _replace(state, bandit_id, doc)


@router.delete("/bandits/{bandit_id}", status_code=204, summary="Delete a bandit's configuration")
async def delete_bandit(state: State, bandit_id: str = BanditId) -> Response:
    try:
        if not await decision_state(state).bandits.delete(bandit_id):
            raise HTTPException(404, f"no bandit {bandit_id!r}")
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    return Response(status_code=204)


@router.get("/bandits", response_model=BanditList, summary="Every bandit's configuration")
async def list_bandits(state: State) -> BanditList:
    cfgs = await _configs(decision_state(state))
    return BanditList(bandits=[cfgs[k].doc for k in sorted(cfgs)])


# Reset: a fresh learned state, the version moved (a worker folding concurrently re-reads), the fences
# kept (events already folded stay folded), the quarantine mark cleared; the durable snapshot too.
RESET_LUA = """
local nv = (tonumber(redis.call('HGET', KEYS[1], 'ver') or '0') or 0) + 1
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'ver', nv)
redis.call('HDEL', KEYS[1], 'quarantine')
local out = {tostring(nv)}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 5) == '_off:' then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
end
return out
"""
RESET_CQL = (f"INSERT INTO {Tables.BANDIT_STATE} (bandit_id, state, ver, fences, updated_at) "
             "VALUES (?, ?, ?, ?, toTimestamp(now()))")


@router.post("/bandits/{bandit_id}/reset", summary="Forget what a bandit learned (admin); clears a quarantine",
             responses={404: {"description": "No such bandit"}})
async def reset_bandit(state: State, bandit_id: str = BanditId) -> dict[str, Any]:
    cfg = await _current(state, bandit_id)
    fresh = json.dumps(new_state(cfg).to_json())
    out = await state.redis.eval(RESET_LUA, 1, state.keys.bandit_state(bandit_id), fresh)
    ver = int(out[0])
    fences = {str(out[i]): int(out[i + 1]) for i in range(1, len(out), 2)}
    if state.cassandra is None:
        raise HTTPException(503, "Cassandra unavailable: the durable snapshot was not reset; retry",
                            headers={"Retry-After": "1"})
    stmt = await asyncio.to_thread(state.cassandra.prepare, RESET_CQL)
    await cassandra_execute(state.cassandra, stmt.bind((bandit_id, fresh, ver, fences)), timeout=5.0)
    decision_state(state).bandit_memo.pop(bandit_id, None)
    return {"bandit_id": bandit_id, "state_version": ver, "reset": True}


@router.get("/bandits/{bandit_id}", summary="A bandit's configuration and learned arm state")
async def get_bandit(state: State, bandit_id: str = BanditId) -> dict[str, Any]:
    ds = decision_state(state)
    cfg, st, ver = await _read(state, ds, bandit_id)
    if cfg is None:
        raise HTTPException(404, f"no bandit {bandit_id!r}")
    st = st or new_state(cfg)
    quarantine = await state.redis.hget(state.keys.bandit_state(bandit_id), "quarantine")
    return {"config": cfg.doc, "state_version": int(ver) if ver else 0, "pulls": st.pulls, "rewards": st.rewards,
            "arms": summary(cfg, st), "quarantine": json.loads(quarantine) if quarantine else None}


@router.post("/bandits/{bandit_id}/choose", response_model=ChooseOut, summary="Choose an arm for a user")
async def choose_arm(state: State, body: ChooseIn, bandit_id: str = BanditId) -> ChooseOut:
    choice = await choose(state, bandit_id, body.user_id, body.context, body.arms)
    if choice is None:
        raise HTTPException(404, f"no bandit {bandit_id!r}")
    return ChooseOut(bandit_id=choice.bandit_id, decision_id=choice.decision_id, arm=choice.arm,
                     explore=choice.explore, policy=choice.policy)


class StrategyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"policy": "thompson", "strategies": ["hybrid", "trending"]}, {"bandit_id": "homepage-methods"}]})

    bandit_id: str | None = Field(None, min_length=1, max_length=64, description=(
        "An existing bandit whose arms are recommendation methods; omitted: strategy.<placement>, created "
        "with the fields below when absent"))
    policy: Literal["thompson", "ucb1", "epsilon_greedy"] = "thompson"
    floor: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    strategies: list[Literal[STRATEGIES]] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="The strategies to choose among (default: all)")


@router.put("/strategies/{placement}", status_code=201,
            summary="Give a placement a strategy bandit (admin): generate without a method then lets it pick "
                    "the method and records the decision",
            responses={200: {"description": "The placement now names an existing bandit"},
                       404: {"description": "No such bandit"}, 409: {"description": "The limit of bandits is reached"},
                       422: {"description": "Its arms are not methods"}})
async def set_strategy(state: State, response: Response, body: StrategyIn | None = None,
                       placement: str = Placement) -> dict[str, Any]:
    body = body or StrategyIn()
    ds = decision_state(state)
    bid = body.bandit_id or strategy_bandit_id(placement)
    cfg = (await _configs(ds)).get(bid)
    if cfg is None and body.bandit_id is None:
        doc = {"id": bid, "arms": list(dict.fromkeys(body.strategies or STRATEGIES)), "placement": placement,
               "policy": body.policy, "floor": body.floor, "created_at": now_ms()}
        _check(doc)
        await check_room(state, ds.bandits)
        try:
            await ds.bandits.insert(bid, doc)  # False: created meanwhile by another request
        except ConfigUnavailable as exc:
            raise unavailable(exc) from exc
        cfg = (await _configs(ds)).get(bid)
    else:
        response.status_code = 200
    if cfg is None:
        raise HTTPException(404, f"no bandit {bid!r}")
    if not set(cfg.arms) & set(STRATEGIES):
        raise HTTPException(422, [{"loc": ["body", "bandit_id"], "msg": f"none of the arms of {bid!r} is a method "
                                   f"({list(STRATEGIES)})", "type": "value_error"}])
    await call(registry(state).set_strategy, placement, bid)
    return {"placement": placement, "bandit_id": bid, "arms": list(cfg.arms)}


@router.delete("/strategies/{placement}", status_code=204,
               summary="The placement no longer lets a bandit pick the method; its strategy.<placement> bandit is "
                       "deleted (a bandit it named by id is kept)")
async def clear_strategy(state: State, placement: str = Placement) -> Response:
    await call(registry(state).set_strategy, placement, None)
    if strategy_bandit_id(placement) in await _configs(decision_state(state)):
        await delete_bandit(state, strategy_bandit_id(placement))
    return Response(status_code=204)


@router.post("/strategies/{placement}/choose", response_model=ChooseOut,
             summary="The recommender strategy for a placement (a bandit learning from clicks and conversions)")
async def choose_strategy_route(state: State, body: ChooseIn, placement: str = Placement) -> ChooseOut:
    c = await choose_strategy(state, placement, body.user_id, body.context, body.arms)
    return ChooseOut(bandit_id=c.bandit_id, decision_id=c.decision_id, arm=c.arm, explore=c.explore,
                     policy=c.policy)
