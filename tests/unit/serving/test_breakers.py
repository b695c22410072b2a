"""The circuit breaker of a dependency (serving/breakers.py): pure logic, an injected clock."""

from __future__ import annotations

from serving.breakers import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_consecutive_failures_and_half_opens_with_one_trial():
    clock = Clock()
    b = CircuitBreaker("redis", failures=3, reset_s=5.0, clock=clock)
    b.failure()
    b.success()  # a success resets the count
    b.failure()
    b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow() and b.rejected_total == 1
    assert 1 <= b.retry_after_s() <= 5
    clock.t += 5.0
    assert b.state == "half-open"
    assert b.allow()  # the trial
    assert not b.allow()  # only one trial at a time
    b.failure()  # trial failed: open again for a full period
    assert b.state == "open" and b.opened_total == 2
    clock.t += 5.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()
