"""Circuit breakers of the API's dependencies (Redis, Cassandra, Kafka), one set per process.

After ``breaker_failures`` consecutive connection errors or timeouts a dependency is skipped for
``breaker_reset_s``: calls fail at once (``CircuitOpen``) instead of costing a timeout each; then
one trial call is let through and its outcome closes or re-opens the breaker. The guarded clients
(``serving/clients.py``) consult them on every call; ``/v1/stats`` and the metrics report them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.exceptions as rexc

from aura.errors import AuraError
from aura.settings import Settings


class CircuitOpen(AuraError, rexc.ConnectionError):
    """Raised instead of calling a dependency whose breaker is open (a ConnectionError subclass,
    so code that already handles Redis connection errors handles it too)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} circuit open (recent failures); not calling it")
        self.dependency = name


class DependencyUnavailable(AuraError):  # noqa: N818 - reads better at raise sites
    """A request needs a dependency (or all of several) that cannot answer now."""

    def __init__(self, dependency: str, detail: str | None = None) -> None:
        super().__init__(detail or f"{dependency} unavailable")
        self.dependency = dependency
        self.detail = detail or f"{dependency} unavailable; retry shortly"


@dataclass
class CircuitBreaker:
    """Consecutive-failure breaker: closed -> open (after ``failures``) -> half-open (after ``reset_s``)."""

    name: str
    failures: int = 3
    reset_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    opened_total: int = 0
    rejected_total: int = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        """Whether to call the dependency now (in half-open state: one trial at a time)."""
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.reset_s and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        self.rejected_total += 1
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.trial_in_flight = False

    def failure(self) -> None:
        self.consecutive += 1
        if self.trial_in_flight or self.consecutive >= self.failures:
            if self.opened_at is None or self.trial_in_flight:
                self.opened_total += 1
            self.opened_at = self.clock()
        self.trial_in_flight = False

    def retry_after_s(self) -> int:
        if self.opened_at is None:
            return 1
        return max(1, int(self.reset_s - (self.clock() - self.opened_at) + 0.999))


@dataclass
class Breakers:
    redis: CircuitBreaker
    cassandra: CircuitBreaker
    kafka: CircuitBreaker

    @classmethod
    def from_settings(cls, s: Settings) -> Breakers:
        def mk(name: str) -> CircuitBreaker:
            return CircuitBreaker(name, failures=s.api.breaker_failures, reset_s=s.api.breaker_reset_s)

        return cls(mk("redis"), mk("cassandra"), mk("kafka"))

    def all(self) -> dict[str, CircuitBreaker]:
        return {"redis": self.redis, "cassandra": self.cassandra, "kafka": self.kafka}
