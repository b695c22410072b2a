"""The provider circuit breaker: opens after consecutive failures, one probe per cool-down, closes on
the probe's success and wakes every waiter."""

from __future__ import annotations

import asyncio

from streams.providers import Breaker


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_consecutive_failures_and_a_success_resets_the_count():
    b = Breaker("p", failures=3, first_open_s=1.0, max_open_s=4.0, clock=Clock())
    b.failure()
    b.failure()
    b.success()
    b.failure()
    b.failure()
    assert b.state == "closed" and b.try_probe()
    b.failure()
    assert b.state == "open" and b.opens == 1


def test_one_probe_per_cool_down_which_doubles_up_to_the_maximum():
    clock = Clock()
    b = Breaker("p", failures=1, first_open_s=1.0, max_open_s=3.0, clock=clock)
    b.failure()
    assert not b.try_probe()  # cooling down
    clock.t = 1.0
    assert b.try_probe() and b.state == "half_open"
    assert not b.try_probe()  # one probe at a time
    b.failure()  # the probe failed: 2 s now
    clock.t = 2.5
    assert not b.try_probe()
    clock.t = 3.0
    assert b.try_probe()
    b.failure()  # 4 s capped at 3 s
    clock.t = 5.9
    assert not b.try_probe()
    clock.t = 6.0
    assert b.try_probe()
    b.success()
    assert b.state == "closed" and b.try_probe() and b.try_probe()


def test_an_abandoned_probe_lets_another_caller_probe():
    clock = Clock()
    b = Breaker("p", failures=1, first_open_s=1.0, clock=clock)
    b.failure()
    clock.t = 1.0
    assert b.try_probe() and not b.try_probe()
    b.abandon()
    assert b.try_probe()


def test_waiters_are_admitted_together_when_the_probe_succeeds():
    async def run() -> list[str]:
        b = Breaker("p", failures=1, first_open_s=0.05, max_open_s=0.05)
        b.failure()
        order: list[str] = []

        async def sender(name: str) -> None:
            await b.admit()
            order.append(name)
            if name == order[0]:  # the first admitted is the probe: it succeeds
                await asyncio.sleep(0.01)
                b.success()

        await asyncio.wait_for(asyncio.gather(*(sender(f"s{i}") for i in range(5))), timeout=10)
        return order

    order = asyncio.run(run())
    assert sorted(order) == [f"s{i}" for i in range(5)]
