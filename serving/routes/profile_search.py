"""Profile search: ``GET /profiles`` lists and searches profiles by segment, attribute (equality and
one numeric range), activity window and lifecycle, from the searchable copy in Cassandra
(aura/state/profile_search.py, storage-attached indexes), paged by an opaque signed cursor.

One indexed query per page, no Redis read: the answer is as fresh as the worker's write-behind
(``AURA_DURABLE_FLUSH_MS`` after the worker folded the event; ``index_delay_ms`` in the answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from aura.bootstrap import epoch_ms
from aura.state import profile_search as ps
from aura.state import profiles as profiles_mod
from aura.state.profiles import Profile, ProfileConfig
from serving.deps import State
from serving.timeparams import parse_time, time_query

log = logging.getLogger(__name__)
router = APIRouter(prefix="/profiles", tags=["profiles"])
MAX_LIMIT = 500


class ProfileSummary(BaseModel):
    user_id: str
    attributes: dict[str, Any]
    segments: list[str]
    last_seen: int | None
    engagement: float
    lifecycle: str = Field(description="As of now (unknown: no event yet)")


class ProfilePage(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{
        "profiles": [{"user_id": "u7", "attributes": {"country": "US", "age": 31}, "segments": ["buyer"],
                      "last_seen": 1795784400000, "engagement": 41.7, "lifecycle": "active"}],
        "next_cursor": "q3J0...", "index_delay_ms": 250}]}}

    profiles: list[ProfileSummary]
    next_cursor: str | None = Field(description="Pass it back as ``cursor`` for the next page; null: the last page")
    index_delay_ms: int = Field(description="The index trails the worker's fold by up to this long (write-behind)")


def _refuse(exc: ps.SearchError) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", exc.param], "msg": exc.msg, "type": "value_error"}])


def _summary(row: Any, now: int, cfg: ProfileConfig) -> ProfileSummary:
    last_seen = epoch_ms(row.last_seen)
    p = Profile(last_seen=last_seen, stage="" if row.stage is None else row.stage,
                eng=row.eng or 0.0, eng_t=row.eng_t or 0)
    return ProfileSummary(
        user_id=row.user_id, attributes=json.loads(row.attrs) if row.attrs else {},
        segments=sorted(row.segments or ()), last_seen=last_seen,
        engagement=profiles_mod.engagement_score(p.eng, p.eng_t, now, cfg),
        lifecycle=profiles_mod.lifecycle(p, now, cfg))


async def _page(session: Any, statement: Any, paging_state: bytes | None) -> tuple[list[Any], bytes | None]:
    """One page of ``statement`` from ``paging_state``: (rows, the next page's paging state)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[list[Any], bytes | None]] = loop.create_future()
    rf = session.execute_async(statement, paging_state=paging_state)

    def ok(_rows: Any) -> None:
        rs = rf.result()  # done: the page and its paging state
        out = (list(rs.current_rows), rs.paging_state)
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(out))

    def err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

    rf.add_callbacks(ok, err)
    return await fut


@router.get("", response_model=ProfilePage, summary="List and search profiles, paged by cursor",
            responses={422: {"description": "A malformed filter or a cursor of another search (400)"},
                       400: {"description": "A cursor this API did not issue for this search"}})
async def search_profiles(
        state: State,
        cursor: str | None = Query(None, max_length=ps.CURSOR_MAX_CHARS, description="From the previous page"),
        limit: int = Query(50, ge=1, le=MAX_LIMIT),
        segment: list[str] | None = Query(None, max_length=ps.MAX_SEGMENTS,  # noqa: B008
                                          description="Member of every one given"),
        attribute: list[str] | None = Query(None, max_length=ps.MAX_ATTRIBUTES,  # noqa: B008
                                            description="name:value equality, every one must match "
                                                        "(numbers and booleans compared by value, lists by element)"),
        attribute_min: str | None = Query(None, max_length=300, description="name:number, numeric attribute >="),
        attribute_max: str | None = Query(None, max_length=300, description="name:number, numeric attribute <="),
        active_since: int | str | None = time_query("active_since", "Last event at or after"),  # noqa: B008
        active_before: int | str | None = time_query("active_before", "Last event before"),  # noqa: B008
        lifecycle: str | None = Query(None, max_length=16, description=", ".join(ps.LIFECYCLES) + " (as of now)"),
) -> ProfilePage:
    """Every filter given must hold (AND); no filter lists every profile. One storage-attached index
    query per page; the order is Cassandra's token order (stable across pages, not alphabetical).
    At most one numeric-range attribute per search (``attribute_min``/``attribute_max`` name the same)."""
    since = parse_time(str(active_since), "active_since") if active_since is not None else None
    before = parse_time(str(active_before), "active_before") if active_before is not None else None
    now = int(time.time() * 1000)
    cfg = _cfg(state)
    try:
        f = ps.parse_filters(segment or [], attribute or [], attribute_min, attribute_max, since, before,
                             lifecycle, now, cfg)
    except ps.SearchError as exc:
        raise _refuse(exc) from exc
    # the cursor is bound to the search it continues; a lifecycle's window moves with the clock, so
    # such a cursor is bound to the filters as given rather than to the window of the first page
    search_key = f.key() if lifecycle is None else json.dumps(
        [sorted(f.segments), sorted(f.terms), f.range_attr, f.num_min, f.num_max, since, before, lifecycle])
    secret = state.settings.profiles.search_cursor_secret.get_secret_value().encode()
    paging_state = None
    if cursor is not None:
        try:
            paging_state = ps.decode_cursor(secret, search_key, cursor)
        except ps.SearchError as exc:
            raise HTTPException(400, exc.msg) from exc
    if state.cassandra is None:
        raise HTTPException(503, "profile index unavailable")
    cql, params = ps.build_query(f)
    prepared = state.statements.get(cql)
    if prepared is None:
        try:
            prepared = state.statements[cql] = await asyncio.get_running_loop().run_in_executor(
                None, state.cassandra.prepare, cql)
        except Exception as exc:  # noqa: BLE001 - Cassandra unreachable or the index missing
            raise HTTPException(503, "profile index unavailable") from exc
    bound = prepared.bind(params)
    bound.fetch_size = limit
    try:
        rows, next_state = await _page(state.cassandra, bound, paging_state)
    except Exception as exc:  # noqa: BLE001 - an outage is a 503, never an empty page
        log.warning("profile search failed: %s: %s", type(exc).__name__, exc)
        raise HTTPException(503, "profile index unavailable") from exc
    return ProfilePage(
        profiles=[_summary(r, now, cfg) for r in rows],
        next_cursor=ps.encode_cursor(secret, search_key, next_state),
        index_delay_ms=state.settings.worker.durable_flush_ms)


def _cfg(state: Any) -> ProfileConfig:
    cfg = state.statements.get("_profile_cfg")
    if cfg is None:
        cfg = state.statements["_profile_cfg"] = ProfileConfig.from_settings(state.settings)
    return cfg
