"""Segment routes: the segments in force (built-in ones from settings, and definitions managed here),
their members, and create / replace / delete of definitions with a backfill over existing users.

Definitions are configuration: stored in Cassandra (``segments``) through the versioned config cache
(aura/configcache.py), which the worker reads per batch (streams/segments.py ``LiveRules``), so new
events are evaluated with a new definition at once. Existing users are re-evaluated by the worker's
backfill (streams/lifecycle.py), which a write here queues; its progress is in the answers
(``backfill``: state pending / running / done, profiles scanned, users whose segments changed).
The grammar is aura/state/segments.py; membership sets are written by the worker only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query

from aura.bootstrap import cassandra_execute
from aura.configcache import ConfigCache, ConfigUnavailable
from aura.layout import Tables
from aura.state import segments as segment_rules
from aura.state.profiles import ProfileConfig
from aura.state.rules import RuleError
from serving.deps import State
from serving.routes.analytics import WindowDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/segments", tags=["profiles"])
SegmentPath = Path(min_length=1, max_length=segment_rules.NAME_MAX, description="Segment name")

EXAMPLE = {"id": "big_spenders_fr", "description": "Shoppers with at least 3 orders and 300 spent",
           "conditions": [["orders", ">=", 3], {"field": "ltv", "op": "gte", "value": 300}]}
ATTR_EXAMPLE = {"id": "gold_teams", "description": "Gold or platinum plan, 10 seats or more, known email",
                "conditions": [["attr.plan", "in", ["gold", "platinum"]], ["attr.seats", ">=", 10],
                               {"field": "attr.email", "op": "exists"}]}
SegmentBody = Annotated[dict[str, Any], Body(openapi_examples={"segment": {"value": EXAMPLE},
                                                               "attributes": {"value": ATTR_EXAMPLE}})]


def _cache(state: Any) -> ConfigCache[dict[str, Any]]:
    cache = state.statements.get("_segments_cache")
    if cache is None or cache.redis is not state.redis:
        cache = state.statements["_segments_cache"] = ConfigCache(
            segment_rules.CONFIG_KIND, Tables.SEGMENTS, "segment_id", state.redis, state.keys, state.cassandra,
            segment_rules.validate_segment)
    cache.bind_session(state.cassandra)
    return cache


def _base(state: Any) -> segment_rules.Rules:
    cfg = state.statements.get("_profile_cfg")
    if cfg is None:
        cfg = state.statements["_profile_cfg"] = ProfileConfig.from_settings(state.settings)
    return cfg.rules


async def _stored(state: Any) -> dict[str, dict[str, Any]]:
    try:
        return await _cache(state).get()
    except ConfigUnavailable as exc:
        raise HTTPException(503, f"segment store unavailable: {exc}", headers={"Retry-After": "1"}) from exc


async def in_force(state: Any) -> segment_rules.Rules:
    """The rules in force: the settings' built-ins overlaid by the stored definitions."""
    return segment_rules.effective(_base(state), await _stored(state))


def _backfill(raw: dict[str, str]) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {"state": raw.get("state")}
    for k in ("scanned", "changed", "members", "requested_at", "started_at", "finished_at"):
        if raw.get(k) not in (None, ""):
            out[k] = int(float(raw[k]))
    return out


async def _describe(state: Any, names: list[str], rules: segment_rules.Rules,
                    stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    pipe = state.redis.pipeline(transaction=False)
    for n in names:
        pipe.scard(state.keys.segment_members(n))
        pipe.hgetall(state.keys.segment_backfill(n))
    got = await pipe.execute()
    out = []
    for i, n in enumerate(names):
        doc: dict[str, Any] = {"name": n, "rule": rules[n], "source": "api" if n in stored else "settings",
                               "members": got[2 * i], "backfill": _backfill(got[2 * i + 1])}
        if n in stored and stored[n].get("description"):
            doc["description"] = stored[n]["description"]
        out.append(doc)
    return out


@router.get("", summary="Segments in force (built-in and managed), member counts, backfill progress")
async def list_segments(state: State) -> dict[str, Any]:
    stored = await _stored(state)
    rules = segment_rules.effective(_base(state), stored)
    return {"segments": await _describe(state, sorted(rules), rules, stored)}


@router.get("/{segment}", summary="One segment: its rule, members count and backfill progress",
            responses={404: {"description": "Unknown segment"}})
async def get_segment(state: State, segment: str = SegmentPath) -> dict[str, Any]:
    stored = await _stored(state)
    rules = segment_rules.effective(_base(state), stored)
    if segment not in rules:
        raise HTTPException(404, f"unknown segment {segment!r}")
    return (await _describe(state, [segment], rules, stored))[0]


def _validated(doc: Any, name: str | None = None) -> dict[str, Any]:
    if name is not None and isinstance(doc, dict):
        if doc.get("id", name) != name:
            raise HTTPException(422, [{"loc": ["body", "id"], "msg": "differs from the path", "type": "value_error"}])
        doc = {**doc, "id": name}
    try:
        return segment_rules.validate_segment(doc)
    except RuleError as exc:
        raise HTTPException(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": "value_error"}
                                  for e in exc.errors]) from exc


async def queue_backfill(state: Any, name: str) -> dict[str, Any]:
    """Ask the worker to re-evaluate existing users with the definitions as of now (its version)."""
    cache, k = _cache(state), state.keys
    ver, now = await cache.version(), int(time.time() * 1000)
    pipe = state.redis.pipeline(transaction=False)
    pipe.delete(k.segment_backfill(name))
    pipe.hset(k.segment_backfill(name), mapping={"state": "pending", "version": ver, "requested_at": now})
    pipe.zadd(k.segment_backfill_queue(), {name: now})
    await pipe.execute()
    return {"state": "pending", "requested_at": now}


async def _write(state: Any, op: str, doc: dict[str, Any]) -> bool:
    try:
        cache = _cache(state)
        return await (cache.insert(doc["id"], doc) if op == "insert" else cache.update(doc["id"], doc))
    except ConfigUnavailable as exc:
        raise HTTPException(503, f"segment store unavailable: {exc}", headers={"Retry-After": "1"}) from exc


@router.post("", status_code=201, summary="Create a segment; existing users are evaluated by a backfill",
             responses={409: {"description": "The name is taken (a built-in or managed segment)"},
                        422: {"description": "Invalid definition"}})
async def create_segment(state: State, body: SegmentBody) -> dict[str, Any]:
    doc = _validated(body)
    if doc["id"] in _base(state) or not await _write(state, "insert", doc):
        raise HTTPException(409, f"segment {doc['id']!r} exists; PUT replaces it")
    return {**doc, "backfill": await queue_backfill(state, doc["id"])}


@router.put("/{segment}", summary="Create or replace a segment (a built-in one is overridden)",
            responses={422: {"description": "Invalid definition"}})
async def replace_segment(state: State, body: SegmentBody, segment: str = SegmentPath) -> dict[str, Any]:
    doc = _validated(body, segment)
    if not await _write(state, "update", doc) and not await _write(state, "insert", doc):
        await _write(state, "update", doc)  # created concurrently: replace it
    return {**doc, "backfill": await queue_backfill(state, segment)}


@router.post("/{segment}/backfill", status_code=202, summary="Re-evaluate existing users for the segments now",
             responses={404: {"description": "Unknown segment"}})
async def backfill(state: State, segment: str = SegmentPath) -> dict[str, Any]:
    if segment not in await in_force(state):
        raise HTTPException(404, f"unknown segment {segment!r}")
    return {"name": segment, "backfill": await queue_backfill(state, segment)}


@router.delete("/{segment}", summary="Delete a managed segment and its memberships",
               responses={404: {"description": "Unknown segment"},
                          409: {"description": "A built-in segment (settings) cannot be deleted"}})
async def delete_segment(state: State, segment: str = SegmentPath) -> dict[str, Any]:
    stored = await _stored(state)
    if segment not in stored:
        if segment in _base(state):
            raise HTTPException(409, f"{segment!r} is defined in AURA_SEGMENT_RULES")
        raise HTTPException(404, f"unknown segment {segment!r}")
    try:
        if not await _cache(state).delete(segment):
            raise HTTPException(404, f"unknown segment {segment!r}")
    except ConfigUnavailable as exc:
        raise HTTPException(503, f"segment store unavailable: {exc}", headers={"Retry-After": "1"}) from exc
    if segment not in _base(state):  # its members go; profiles drop it with the backfill
        await state.redis.delete(state.keys.segment_members(segment), state.keys.segment_history(segment))
        st = state.statements.get("segment_drop")
        if st is None:
            st = state.statements["segment_drop"] = await asyncio.to_thread(
                state.cassandra.prepare, f"DELETE FROM {Tables.SEGMENT_MEMBERS} WHERE segment = ?")
        await cassandra_execute(state.cassandra, st.bind((segment,)))
    return {"name": segment, "deleted": True, "backfill": await queue_backfill(state, segment)}


@router.get("/{segment}/members", summary="Members of a segment (paged by cursor)",
            responses={404: {"description": "Unknown segment"}})
async def segment_members(state: State, segment: str = SegmentPath,
                          cursor: int = Query(0, ge=0), count: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    try:
        known = segment in await in_force(state)
    except HTTPException:
        raise
    except Exception:  # noqa: BLE001 - Redis down: the Cassandra copy answers (an unknown segment has no rows)
        known = True
    if not known:
        raise HTTPException(404, f"unknown segment {segment!r}")
    try:
        nxt, members = await state.redis.sscan(state.keys.segment_members(segment), cursor=cursor, count=count)
        total = await state.redis.scard(state.keys.segment_members(segment))
        return {"segment": segment, "members": sorted(members), "next_cursor": int(nxt), "total": total,
                "source": "redis"}
    except Exception as exc:  # noqa: BLE001 - Redis down: Cassandra (first page only)
        log.warning("redis read failed, falling back to cassandra: %s", exc)
    st = state.statements.get("segment_members")
    if st is None and state.cassandra is not None:
        st = state.statements["segment_members"] = state.cassandra.prepare(
            f"SELECT user_id FROM {Tables.SEGMENT_MEMBERS} WHERE segment = ? LIMIT ?")
    if st is None:
        raise HTTPException(503, "segment stores unavailable")
    rows = await cassandra_execute(state.cassandra, st.bind((segment, count)))
    return {"segment": segment, "members": [r.user_id for r in rows], "next_cursor": 0, "total": None,
            "source": "cassandra"}


@router.get("/{segment}/history", summary="Members over time: joined, left and the member count per hour or day",
            responses={404: {"description": "Unknown segment"}})
async def segment_history(state: State, window: WindowDep, segment: str = SegmentPath) -> dict[str, Any]:
    """Counted by the stream as memberships change (streams/segments.py): per bucket the users who
    joined and left, and the member count after the bucket's last change (carried forward)."""
    if window.grain not in segment_rules.GRAINS:
        raise HTTPException(422, [{"loc": ["query", "grain"], "msg": "hour or day", "type": "value_error"}])
    if segment not in await in_force(state):
        raise HTTPException(404, f"unknown segment {segment!r}")
    raw = await state.redis.hgetall(state.keys.segment_history(segment))
    return {"segment": segment, "grain": window.grain, "from": window.from_ms, "to": window.to_ms,
            "buckets": segment_rules.history(raw, window.grain, window.from_ms, window.to_ms)}
