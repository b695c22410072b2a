"""The worker's shared contract: what every agent module receives and returns.

``Resources`` are the clients a worker process opens once (streams/app.py builds them); ``Batch`` is
one batch of the behavior topic after the intake, handed to every state owner; an ``Owner`` is a
named, idempotent step over such a batch; ``retrying`` reruns a fenced batch step on store errors;
``isolating`` also dead-letters the events a step cannot fold (every agent's batches use it).
Agent modules import this module and expose ``register(app, res) -> list[Owner]``; streams/app.py
imports the agent modules, and nothing imports streams/app.py back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aura.keys import RedisKeys
from aura.settings import Settings
from streams.durable import WriteBehind
from streams.intake import Accepted, Dead, RawRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 30
PROFILES_OWNER = "profiles+analytics"  # the owner whose commit makes a batch visible through the API


@dataclass
class Resources:
    """Clients the agents share, opened once per worker process."""

    settings: Settings
    redis: Any
    session: Any
    keys: RedisKeys
    durable: WriteBehind  # the behavior owners' Cassandra rows, written behind the hot loop
    redis_guard: Any = None  # streams/redisloss.py RedisLossGuard of the worker process (None: unguarded)


@dataclass
class Batch:
    """One batch of the behavior topic after the intake: what every state owner receives."""

    kept: list[Accepted]  # decoded, valid, first sightings; in the batch's arrival order
    raw: dict[tuple[int, int], RawRecord]  # (partition, offset) -> raw record, for owners that dead-letter
    now_ms: int


# A state owner fed by the behavior topic: its name (logs, retries) and an idempotent batch step that
# keeps its own fences and returns the dead letters it found (or None). Owners run concurrently.
OwnerStep = Callable[[Batch], Awaitable["list[Dead] | None"]]
Owner = tuple[str, OwnerStep]


async def retrying(what: str, fn: Any, *args: Any) -> Any:
    """Run an idempotent batch step until it succeeds (backoff up to 5 s, ``RETRIES`` attempts).

    A crashed Faust agent is restarted *without* the batch it was folding, so transient store errors
    are retried here; the fences make a retried step harmless. Every agent of the worker retries its
    batch steps with this.
    """
    delay = 0.1
    for attempt in range(1, RETRIES + 1):
        try:
            return await fn(*args)
        except Exception as exc:  # noqa: BLE001 - retried, then re-raised
            if attempt == RETRIES:
                raise
            log.warning("%s failed (%s: %s); retry %d in %.1fs", what, type(exc).__name__, exc, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return None


# Errors that mean a store cannot answer now: the step is retried as it is. Anything else raised by a
# step is taken to come from the data (an event, or a user's stored state, the fold cannot handle).
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError, asyncio.TimeoutError)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says a store is unavailable (retry) rather than that the data is bad (isolate)."""
    if isinstance(exc, TRANSIENT):
        return True
    name = type(exc).__name__
    mod = type(exc).__module__
    if mod.startswith("redis"):
        return name in ("ConnectionError", "TimeoutError", "BusyLoadingError", "ClusterDownError", "TryAgainError",
                        "MasterDownError", "ReadOnlyError")
    return mod.startswith("cassandra")  # timeouts, unavailable, no host: Cassandra says nothing about our data


async def fold_isolating(name: str, step: OwnerStep, batch: Batch) -> list[Dead]:
    """Run a behavior owner's step over ``batch``, isolating the events it cannot fold (``isolating``)."""

    async def sub(part: list[Accepted]) -> list[Dead] | None:
        return await step(batch if part is batch.kept else Batch(part, batch.raw, batch.now_ms))

    return await isolating(name, sub, batch.kept, lambda acc: batch.raw[(acc.partition, acc.offset)])


async def isolating(name: str, step: Callable[[list[T]], Awaitable[list[Dead] | None]], items: list[T],
                    record_of: Callable[[T], RawRecord]) -> list[Dead]:
    """Run an idempotent, fenced batch ``step`` over ``items`` (any agent's decoded events); when it
    fails on the data, find the items that make it fail (bisection in arrival order, so per-partition
    fences only move forward), dead-letter their records (``record_of``) with reason ``fold_failed``
    and fold the rest. Store errors (``transient``) are retried as ``retrying`` does, never isolated.
    Returns the step's own dead letters plus the ``fold_failed`` ones."""
    try:
        return await _attempt(name, step, items) or []
    except Exception as exc:  # noqa: BLE001 - classified: data errors are isolated, the rest re-raised
        if transient(exc):
            raise
        log.warning("%s failed on the data of a batch of %d (%s: %s); isolating the events that fail",
                    name, len(items), type(exc).__name__, exc)
        return await _bisect(name, step, items, record_of, exc)


async def _attempt(name: str, step: Callable[[list[T]], Awaitable[list[Dead] | None]], items: list[T]
                   ) -> list[Dead] | None:
    delay = 0.1
    for attempt in range(1, RETRIES + 1):
        try:
            return await step(items)
        except Exception as exc:
            if not transient(exc) or attempt == RETRIES:
                raise
            log.warning("%s failed (%s: %s); retry %d in %.1fs", name, type(exc).__name__, exc, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return None


async def _bisect(name: str, step: Callable[[list[T]], Awaitable[list[Dead] | None]], items: list[T],
                  record_of: Callable[[T], RawRecord], exc: Exception) -> list[Dead]:
    if len(items) == 1:
        record = record_of(items[0])
        log.error("%s cannot fold the record at %s partition %d offset %d: %s: %s; dead-lettered", name,
                  record.topic, record.partition, record.offset, type(exc).__name__, exc)
        return [Dead(record, "fold_failed", f"{name}: {type(exc).__name__}: {str(exc)[:500]}")]
    dead: list[Dead] = []
    mid = len(items) // 2
    for part in (items[:mid], items[mid:]):
        try:
            dead += await _attempt(name, step, part) or []
        except Exception as sub_exc:  # noqa: BLE001 - classified as above
            if transient(sub_exc):
                raise
            dead += await _bisect(name, step, part, record_of, sub_exc)
    return dead
