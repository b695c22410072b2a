"""Profile read routes: a user's activity, profile, preferences, engagement and segments as the
stream materialized them (writes: serving/routes/profile_writes.py; segments: serving/routes/segments.py).

Reads only: Redis first, the Cassandra copy when Redis is down or has nothing. The formats and the
views come from aura/state/profiles.py and aura/state/profile_codec.py, which the worker writes with."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from aura.bootstrap import cassandra_execute, epoch_ms
from aura.layout import Tables
from aura.state import profiles as profiles_mod
from aura.state.profile_codec import from_durable, queue_read, unpack
from aura.state.profiles import Profile, ProfileConfig, parse_attrs
from serving.deps import State

log = logging.getLogger(__name__)


def unavailable() -> HTTPException:
    """Neither profile store could be asked: 503 (never a false 404 for a user who may exist)."""
    return HTTPException(503, "profile stores unavailable")


router = APIRouter(prefix="/profiles", tags=["profiles"])

UserId = Path(min_length=1, max_length=256, description="User id (or anonymous id)")


class Activity(BaseModel):
    user_id: str
    counts: dict[str, int] = Field(description="Events per action type")
    first_seen: int | None = Field(description="Event time of the first event, epoch ms")
    last_seen: int | None = Field(description="Event time of the latest event, epoch ms")
    recent_items: list[str] = Field(description="Most recent item ids, newest first")
    source: str = Field(description="Which store answered: redis or cassandra")


class Single:
    """Takes the one command a ``queue_*`` read helper (aura/state) queues, and sends it alone:
    a one-command pipeline costs more CPU than the command alone (redis-py's pipeline machinery)."""

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.args, self.options = args, options

    async def send(self, redis: Any) -> Any:
        return await redis.execute_command(*self.args, **self.options)


@router.get("/{user_id}/activity", response_model=Activity, summary="A user's activity, fresh from the stream",
            responses={404: {"description": "No events seen for this user"}})
async def get_activity(state: State, user_id: str = UserId) -> Activity:
    keys = state.keys
    try:
        one = Single()
        queue_read(one, keys, user_id)
        raw = await one.send(state.redis)
        if raw:
            doc = profiles_mod.activity(unpack(raw))
            doc["recent_items"] = doc["recent_items"][: state.settings.profiles.recent_items_max]
            return Activity(user_id=user_id, source="redis", **doc)
    except Exception as exc:  # noqa: BLE001 - Redis down: fall back to Cassandra
        log.warning("redis read failed, falling back to cassandra: %s", exc)
        if state.cassandra is None or "activity" not in state.statements:
            raise unavailable() from exc  # no store to ask: unknown, not "no activity"
    if state.cassandra is not None and "activity" in state.statements:
        try:
            rows = await cassandra_execute(state.cassandra, state.statements["activity"].bind((user_id,)))
            row = rows[0] if rows else None
        except Exception as exc:  # noqa: BLE001
            log.warning("cassandra read failed: %s", exc)
            raise unavailable() from exc
        if row is not None:
            return Activity(
                user_id=user_id, source="cassandra", counts=dict(row.counts or {}),
                first_seen=epoch_ms(row.first_seen), last_seen=epoch_ms(row.last_seen),
                recent_items=list(row.recent_items or []),
            )
    raise HTTPException(404, f"no activity for user {user_id!r}")


# ---------------------------------------------------------------------------------------------
# The full profile: Redis first, Cassandra (user_profile + user_activity) as fallback.


def _cfg(state: Any) -> ProfileConfig:
    cfg = state.statements.get("_profile_cfg")
    if cfg is None:
        cfg = state.statements["_profile_cfg"] = ProfileConfig.from_settings(state.settings)
    return cfg


def _prepared(state: Any, name: str, cql: str) -> Any:
    st = state.statements.get(name)
    if st is None and state.cassandra is not None:
        st = state.statements[name] = state.cassandra.prepare(cql)
    return st


async def load_profile(state: Any, user_id: str) -> tuple[Profile, dict[str, str], str] | None:
    """(profile, attrs hash, source) of ``user_id``, or None when nothing is known."""
    keys = state.keys
    try:
        pipe = state.redis.pipeline(transaction=False)
        queue_read(pipe, keys, user_id)
        pipe.hgetall(keys.user_attrs(user_id))
        raw, attrs = await pipe.execute()
        if raw or attrs:
            return unpack(raw), attrs, "redis"
    except Exception as exc:  # noqa: BLE001 - Redis down: fall back to Cassandra
        log.warning("redis read failed, falling back to cassandra: %s", exc)
        redis_failed: BaseException | None = exc
    else:
        redis_failed = None
    st = _prepared(state, "profile_doc", f"SELECT doc FROM {Tables.USER_PROFILE} WHERE user_id = ?")
    act = state.statements.get("activity")
    if st is None or act is None:
        if redis_failed is not None:
            raise unavailable() from redis_failed  # no store to ask: unknown, not "no profile"
        return None
    try:
        rows, arows = await asyncio.gather(cassandra_execute(state.cassandra, st.bind((user_id,))),
                                           cassandra_execute(state.cassandra, act.bind((user_id,))))
    except Exception as exc:  # noqa: BLE001
        raise unavailable() from exc
    row, arow = (rows[0] if rows else None), (arows[0] if arows else None)
    if arow is None:
        return None
    doc = json.loads(row.doc) if row is not None and row.doc else {}
    p = from_durable(dict(arow.counts or {}), epoch_ms(arow.first_seen), epoch_ms(arow.last_seen),
                     list(arow.recent_items or []), doc)
    return p, {}, "cassandra"


async def _require(state: Any, user_id: str) -> tuple[Profile, dict[str, str], str]:
    found = await load_profile(state, user_id)
    if found is None:
        raise HTTPException(404, f"no profile for user {user_id!r}")
    return found


class FullProfile(BaseModel):
    user_id: str
    attributes: dict[str, Any] = Field(description="Identity attributes (create/update events)")
    preferences: dict[str, Any] = Field(description="Explicit preferences (preferences events)")
    counts: dict[str, int]
    first_seen: int | None
    last_seen: int | None
    recent_items: list[str]
    sessions: int
    orders: int
    lifetime_value: float
    engagement: float = Field(description="0..100, time-decayed to now (docs/state.md)")
    lifecycle: str = Field(description="new | active | at-risk | churned | reactivated, as of now")
    lifecycle_at_last_event: str | None
    affinities: dict[str, float] = Field(description="Implicit, time-decayed: category:*, brand:*, price:*")
    segments: list[str]
    source: str


def _now() -> int:
    return int(time.time() * 1000)


@router.get("/{user_id}", response_model=FullProfile, summary="The whole profile",
            responses={404: {"description": "Unknown user"}})
async def get_profile(state: State, user_id: str = UserId) -> FullProfile:
    p, attrs, source = await _require(state, user_id)
    a, prefs = parse_attrs(attrs)
    return FullProfile(user_id=user_id, attributes=a, preferences=prefs, source=source,
                       **profiles_mod.document(p, _now(), _cfg(state)))


@router.get("/{user_id}/preferences", summary="Explicit preferences", responses={404: {"description": "Unknown"}})
async def get_preferences(state: State, user_id: str = UserId) -> dict[str, Any]:
    _p, attrs, _src = await _require(state, user_id)
    return {"user_id": user_id, "preferences": parse_attrs(attrs)[1]}


@router.get("/{user_id}/engagement", summary="Engagement score and lifecycle stage, as of now",
            responses={404: {"description": "Unknown user"}})
async def get_engagement(state: State, user_id: str = UserId) -> dict[str, Any]:
    p, _a, source = await _require(state, user_id)
    cfg, now = _cfg(state), _now()
    return {"user_id": user_id, "engagement": profiles_mod.engagement_score(p.eng, p.eng_t, now, cfg),
            "lifecycle": profiles_mod.lifecycle(p, now, cfg), "last_seen": p.last_seen, "source": source}


@router.get("/{user_id}/segments", summary="The segments the user is in", responses={404: {"description": "Unknown"}})
async def get_segments(state: State, user_id: str = UserId) -> dict[str, Any]:
    p, _a, source = await _require(state, user_id)
    return {"user_id": user_id, "segments": p.segments, "source": source}


@router.get("/{user_id}/history", summary="Recent items, newest first, and counts per action",
            responses={404: {"description": "Unknown user"}})
async def get_history(state: State, user_id: str = UserId,
                      limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
    p, _a, source = await _require(state, user_id)
    return {"user_id": user_id, "recent_items": p.recent[:limit], "counts": p.counts, "sessions": p.sessions,
            "source": source}
