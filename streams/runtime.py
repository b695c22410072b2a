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
