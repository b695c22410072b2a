"""Time parameters of query strings, one parser for every route that takes a time or a time range
(analytics windows, insights, profile search): epoch milliseconds or ISO-8601, with a 422 naming the
parameter otherwise. The standard library's ``datetime.fromisoformat`` reads ISO-8601 (dates,
date-times, offsets, ``Z``) since Python 3.11, so no date library is needed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Query

MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31: beyond it a bucket start overflows Cassandra's timestamp (fuzzer)
MAX_TIME_CHARS = 40
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
TIME_FORMATS = "epoch ms or ISO-8601 (2026-11-01, 2026-11-01T12:00:00Z; no zone: UTC)"


def parse_time(raw: str | None, name: str) -> int | None:
    """A time parameter: epoch milliseconds, or an ISO-8601 date (``2026-11-01``, UTC midnight) or
    date-time (a time without a zone is UTC); 422 naming the parameter otherwise."""
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    try:
        if raw.isdigit():
            ms = int(raw)
        else:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
            ms = ((dt if dt.tzinfo else dt.replace(tzinfo=UTC)) - EPOCH) // MILLISECOND  # exact: no float
    except (ValueError, OverflowError) as exc:
        raise HTTPException(422, [{"loc": ["query", name], "msg": "epoch milliseconds or an ISO-8601 date or "
                                   "date-time", "type": "value_error"}]) from exc
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise HTTPException(422, [{"loc": ["query", name], "msg": "out of range", "type": "value_error"}])
    return ms


def time_query(alias: str, description: str) -> Any:
    """The declaration of a time query parameter (``int | str | None = time_query("from", "Start")``):
    documented as either form; parsed by ``parse_time`` in the route."""
    return Query(None, alias=alias, max_length=MAX_TIME_CHARS, description=f"{description}: {TIME_FORMATS}")
