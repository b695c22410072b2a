"""Clients of the API process, opened once in the lifespan and handed to routes via Depends.

Owns nothing durable: the Redis client and Cassandra session (both behind circuit breakers, see
``serving/degrade.py``), the Kafka producer, prepared statements, the authenticator's local key
cache and the last popular lists served (the stale fallback).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aura.layout import RedisKeys
from aura.settings import Settings
from serving.degrade import Breakers, PopularCache


@dataclass
class ApiState:
    settings: Settings
    keys: RedisKeys
    redis: Any
    cassandra: Any | None  # None while Cassandra is unreachable; reconnected in the background
    producer: Any | None
    statements: dict[str, Any]
    breakers: Breakers | None = None
    auth: Any = None  # serving.security.Authenticator
    popular: PopularCache = field(default_factory=PopularCache)
    started_at: float = field(default_factory=time.time)
    health: dict[str, Any] = field(default_factory=dict)  # last /v1/health result and its lock
    recommender: Any = None  # aura.ranking.reader.Recommender, built on first use (its scripts registered once)
    response_cache: Any = None  # serving.respcache.ResponseCache, built on first use (per process)
