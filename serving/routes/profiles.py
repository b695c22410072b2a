"""Profile routes: a user's activity as the stream materialized it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from aura.bootstrap import cassandra_execute, epoch_ms
from serving.deps import State
from streams.profiles import parse_state

log = logging.getLogger(__name__)
router = APIRouter(prefix="/profiles", tags=["profiles"])

UserId = Path(min_length=1, max_length=256, description="User id (or anonymous id)")


class Activity(BaseModel):
    user_id: str
    counts: dict[str, int] = Field(description="Events per action type")
    first_seen: int | None = Field(description="Event time of the first event, epoch ms")
    last_seen: int | None = Field(description="Event time of the latest event, epoch ms")
    recent_items: list[str] = Field(description="Most recent item ids, newest first")
    source: str = Field(description="Which store answered: redis or cassandra")


@router.get("/{user_id}/activity", response_model=Activity, summary="A user's activity, fresh from the stream",
            responses={404: {"description": "No events seen for this user"}})
async def get_activity(state: State, user_id: str = UserId) -> Activity:
    keys = state.keys
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.hgetall(keys.user_counts(user_id))
        pipe.lrange(keys.user_recent(user_id), 0, state.settings.recent_items_max - 1)
        counts, recent = await pipe.execute()
        if counts:
            doc = parse_state(counts, recent)
            doc.pop("applied_offset", None)
            return Activity(user_id=user_id, source="redis", **doc)
    except Exception as exc:  # noqa: BLE001 - Redis down: fall back to Cassandra
        log.warning("redis read failed, falling back to cassandra: %s", exc)
    if state.cassandra is not None and "activity" in state.statements:
        try:
            rows = await cassandra_execute(state.cassandra, state.statements["activity"].bind((user_id,)))
            row = rows[0] if rows else None
        except Exception as exc:  # noqa: BLE001
            log.warning("cassandra read failed: %s", exc)
            raise HTTPException(503, "profile stores unavailable") from exc
        if row is not None:
            return Activity(
                user_id=user_id, source="cassandra", counts=dict(row.counts or {}),
                first_seen=epoch_ms(row.first_seen), last_seen=epoch_ms(row.last_seen),
                recent_items=list(row.recent_items or []),
            )
    raise HTTPException(404, f"no activity for user {user_id!r}")
