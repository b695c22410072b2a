"""The worker's shared contract: what every agent module receives and returns.

``Resources`` are the clients a worker process opens once (streams/app.py builds them); ``Batch`` is
one batch of the behavior topic after the intake, handed to every state owner; an ``Owner`` is a
named, idempotent step over such a batch; ``retrying`` reruns a fenced batch step on store errors.
Agent modules import this module and expose ``register(app, res) -> list[Owner]``; streams/app.py
imports the agent modules, and nothing imports streams/app.py back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aura.layout import RedisKeys
from aura.settings import Settings
from streams.durable import WriteBehind
from streams.intake import Accepted, Dead, RawRecord

log = logging.getLogger(__name__)

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
    """Run an owner's step over ``batch``; when it fails on the data, find the events that make it
    fail (bisection in arrival order, so per-partition fences only move forward), dead-letter them
    with reason ``fold_failed`` and fold the rest. Store errors are retried (``retrying``)."""
    try:
        return await _attempt(name, step, batch) or []
    except Exception as exc:  # noqa: BLE001 - classified: data errors are isolated, the rest re-raised
        if transient(exc):
            raise
        log.warning("%s failed on the data of a batch of %d (%s: %s); isolating the events that fail",
                    name, len(batch.kept), type(exc).__name__, exc)
        return await _bisect(name, step, batch, batch.kept, exc)


async def _attempt(name: str, step: OwnerStep, batch: Batch) -> list[Dead] | None:
    delay = 0.1
    for attempt in range(1, RETRIES + 1):
        try:
            return await step(batch)
        except Exception as exc:
            if not transient(exc) or attempt == RETRIES:
                raise
            log.warning("%s failed (%s: %s); retry %d in %.1fs", name, type(exc).__name__, exc, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return None


async def _bisect(name: str, step: OwnerStep, batch: Batch, events: list[Accepted], exc: Exception) -> list[Dead]:
    if len(events) == 1:
        acc = events[0]
        record = batch.raw[(acc.partition, acc.offset)]
        log.error("%s cannot fold event %s (partition %d offset %d): %s: %s; dead-lettered", name,
                  acc.event.event_id, acc.partition, acc.offset, type(exc).__name__, exc)
        return [Dead(record, "fold_failed", f"{name}: {type(exc).__name__}: {str(exc)[:500]}")]
    dead: list[Dead] = []
    mid = len(events) // 2
    for part in (events[:mid], events[mid:]):
        sub = Batch(part, batch.raw, batch.now_ms)
        try:
            dead += await _attempt(name, step, sub) or []
        except Exception as sub_exc:  # noqa: BLE001 - classified as above
            if transient(sub_exc):
                raise
            dead += await _bisect(name, step, sub, part, sub_exc)
    return dead
