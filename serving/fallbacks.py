"""Answers served in a degraded mode, and how an answer says so (``X-Aura-Degraded``).

Owns the last known popular lists (in memory, snapshotted to ``<home>/cache/popular-<prefix>.json``
so a restarted process has them too):

- :func:`read_through`: per-request "Redis first, Cassandra as fallback"; an answer served from
  Cassandra because Redis is down is marked ``X-Aura-Degraded: redis-down``;
- :class:`PopularCache` / :func:`stale_popular`: the last popular list that was served, answered
  with ``X-Aura-Degraded: stale-popular`` when both stores are down.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import Response

from serving.breakers import DependencyUnavailable
from serving.clients import CASSANDRA_OUTAGE, REDIS_OUTAGE

log = logging.getLogger(__name__)
T = TypeVar("T")
DEGRADED_HEADER = "X-Aura-Degraded"
STALE_POPULAR = "stale-popular"


def mark_degraded(response: Response, reason: str) -> None:
    """Say in the answer that it was served in a degraded mode (``redis-down``, ``stale-popular``...)."""
    prev = response.headers.get(DEGRADED_HEADER)
    response.headers[DEGRADED_HEADER] = reason if not prev else f"{prev}, {reason}"


@dataclass
class Sourced(Generic[T]):
    value: T | None
    source: str  # "redis" | "cassandra"


async def read_through(response: Response | None, redis: Callable[[], Awaitable[T | None]],
                       cassandra: Callable[[], Awaitable[T | None]] | None = None) -> Sourced[T]:
    """Redis first; on a Redis outage, or a Redis miss, Cassandra. Raises DependencyUnavailable
    when no store could answer. ``value`` None means "answered, not found".

    A Redis outage served from Cassandra is marked ``X-Aura-Degraded: redis-down``.
    """
    redis_error: BaseException | None = None
    try:
        value = await redis()
        if value is not None or cassandra is None:
            return Sourced(value, "redis")
    except REDIS_OUTAGE as exc:
        redis_error = exc
    if cassandra is None:
        raise DependencyUnavailable("redis") from redis_error
    try:
        value = await cassandra()
    except (DependencyUnavailable, *CASSANDRA_OUTAGE) as exc:
        raise DependencyUnavailable("redis+cassandra" if redis_error else "cassandra") from exc
    if redis_error is not None and response is not None:
        mark_degraded(response, "redis-down")
    return Sourced(value, "cassandra")


@dataclass
class PopularCache:
    """The last popular lists served (per key, e.g. "" or a category), kept to answer when both
    stores are down. Routes that serve popular/trending lists call :meth:`remember`; the lists are
    snapshotted to disk at most every ``snapshot_every_s`` so a restarted process has them too."""

    path: Path | None = None
    snapshot_every_s: float = 30.0
    lists: dict[str, list[Any]] = field(default_factory=dict)
    saved_at: float = 0.0
    dirty: bool = False

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.lists = {str(k): list(v) for k, v in data.items()}
        except (OSError, ValueError) as exc:
            log.warning("popular cache snapshot %s unreadable: %s", self.path, exc)

    def remember(self, items: list[Any], key: str = "") -> None:
        if not items or self.lists.get(key) == items:
            return
        self.lists[key] = list(items)
        self.dirty = True
        if time.monotonic() - self.saved_at >= self.snapshot_every_s:
            self.save()

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.lists))
            tmp.replace(self.path)
            self.saved_at = time.monotonic()
            self.dirty = False
        except OSError as exc:
            log.warning("cannot snapshot popular cache to %s: %s", self.path, exc)

    def get(self, key: str = "") -> list[Any]:
        return self.lists.get(key) or self.lists.get("") or []


def stale_popular(cache: PopularCache, response: Response, limit: int, key: str = "") -> list[Any]:
    """The last popular list (``key``, else the global one), marked ``X-Aura-Degraded: stale-popular``."""
    mark_degraded(response, STALE_POPULAR)
    return cache.get(key)[:limit]
