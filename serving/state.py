"""Clients of the API process, opened once in the lifespan and handed to routes via Depends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aura.layout import RedisKeys
from aura.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    keys: RedisKeys
    redis: Any
    cassandra: Any | None  # None while Cassandra is unreachable; reconnected lazily
    producer: Any | None
    statements: dict[str, Any]
