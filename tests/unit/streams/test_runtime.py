"""streams/runtime.py: the retry of fenced batch steps."""

import pytest

from streams import runtime


async def test_retrying_repeats_a_failing_step_then_gives_up(monkeypatch):
    import asyncio

    async def no_sleep(_s: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    calls = []

    async def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise TimeoutError("redis")
        return x * 2

    assert await runtime.retrying("step", flaky, 21) == 42 and len(calls) == 3

    async def broken() -> None:
        raise TimeoutError("down")

    monkeypatch.setattr(runtime, "RETRIES", 4)
    with pytest.raises(TimeoutError):
        await runtime.retrying("step", broken)
