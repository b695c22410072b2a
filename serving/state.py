"""The API process's state, opened once in the lifespan and handed to routes via ``Depends``.

Owns nothing durable: the Redis client and Cassandra session (both behind circuit breakers, see
``serving/clients.py``), the Kafka producer, prepared statements, the breakers, the authenticator
(with its local key cache), the last popular lists served (the stale fallback), the health memo,
and the per-process recommender and response cache (built on first use).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from aura.keys import RedisKeys
from aura.ranking.reader import Recommender
from aura.settings import Settings
from serving.breakers import Breakers
from serving.clients import GuardedRedis, GuardedSession
from serving.fallbacks import PopularCache
from serving.health import HealthMemo
from serving.respcache import ResponseCache
from serving.security import Authenticator
from serving.streamlag import LagReader


@dataclass
class ApiState:
    """Everything a route may use, handed through ``Depends`` (``serving/deps.py``'s ``State``)."""

    settings: Settings
    keys: RedisKeys
    redis: GuardedRedis
    cassandra: GuardedSession | None  # None while Cassandra is unreachable; reconnected in the background
    producer: Producer | None
    # ``PreparedStatement`` by name; the profile routes also memoize their ``ProfileConfig`` here
    statements: dict[str, Any]
    breakers: Breakers
    popular: PopularCache = field(default_factory=PopularCache)
    started_at: float = field(default_factory=time.time)
    health: HealthMemo = field(default_factory=HealthMemo)
    recommender: Recommender | None = None  # built on first use (its scripts registered once)
    response_cache: ResponseCache | None = None  # built on first use
    lag: LagReader | None = None  # the worker groups' consumer lag (serving/streamlag.py)
    auth: Authenticator = field(init=False)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self)
