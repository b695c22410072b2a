"""Automatic pipelining of the API's Redis client (serving/autopipe.py), against real Redis: concurrent
commands travel in fewer round trips than commands and each caller gets exactly its own answer (the same
as the command sent alone through a plain redis-py client, replies parsed by the command's callbacks);
an error reply reaches only its own caller; a script unknown to the server is loaded and run
(``NOSCRIPT`` handled per caller); a connection failure reaches every caller of the batch, and the
client's breaker opens; transactions and blocking commands are never batched."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc

from serving.autopipe import AutoPipeline, batchable
from serving.breakers import CircuitBreaker
from serving.clients import guarded_redis

pytestmark = [pytest.mark.integration]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_commands_share_pipelines_and_keep_their_answers(isolated):
    p = isolated.redis.prefix

    async def body() -> None:
        r = guarded_redis(isolated, CircuitBreaker("redis"))
        plain = aioredis.Redis.from_url(isolated.redis.url, decode_responses=True)  # the oracle: no pipelining
        try:
            assert isinstance(r.autopipe, AutoPipeline)
            await r.hset(f"{p}:h", mapping={f"f{n}": str(n) for n in range(50)})
            await r.zadd(f"{p}:z", {f"m{n}": n for n in range(50)})
            await r.set(f"{p}:s", "x")
            calls = [lambda n=n: r.hget(f"{p}:h", f"f{n}") for n in range(50)]
            calls += [lambda n=n: r.zrevrange(f"{p}:z", 0, n % 5, withscores=True) for n in range(50)]
            calls += [lambda: r.exists(f"{p}:s"), lambda: r.hgetall(f"{p}:h"), lambda: r.get(f"{p}:none")]
            b0, c0 = r.autopipe.batches, r.autopipe.commands
            got = await asyncio.gather(*(c() for c in calls))
            assert r.autopipe.commands - c0 == len(calls)
            assert r.autopipe.batches - b0 < len(calls) / 10  # coalesced, not one round trip each
            plain_calls = [lambda n=n: plain.hget(f"{p}:h", f"f{n}") for n in range(50)]
            plain_calls += [lambda n=n: plain.zrevrange(f"{p}:z", 0, n % 5, withscores=True) for n in range(50)]
            plain_calls += [lambda: plain.exists(f"{p}:s"), lambda: plain.hgetall(f"{p}:h"),
                            lambda: plain.get(f"{p}:none")]
            want = [await c() for c in plain_calls]
            assert got == want
            assert got[0] == "0" and got[50] == [("m49", 49.0)] and got[-1] is None  # (callbacks applied)
            # alone: a batch of one is a plain command
            b0 = r.autopipe.batches
            assert await r.get(f"{p}:s") == "x" and r.autopipe.batches == b0 + 1
        finally:
            await r.aclose()
            await plain.aclose()

    run(body())


def test_an_error_reply_reaches_only_its_caller_and_scripts_load_themselves(isolated):
    p = isolated.redis.prefix

    async def body() -> None:
        r = guarded_redis(isolated, CircuitBreaker("redis"))
        try:
            await r.set(f"{p}:s", "x")
            await r.script_flush()
            script = r.register_script("return {KEYS[1], ARGV[1]}")  # not on the server: NOSCRIPT first
            got = await asyncio.gather(r.hget(f"{p}:s", "f"), r.get(f"{p}:s"),
                                       *(script(keys=[f"{p}:k{n}"], args=[n]) for n in range(20)),
                                       return_exceptions=True)
            assert isinstance(got[0], rexc.ResponseError) and "WRONGTYPE" in str(got[0])
            assert got[1] == "x"
            assert got[2:] == [[f"{p}:k{n}", str(n)] for n in range(20)]
            assert r.breaker.state == "closed"  # an error reply is the server answering
        finally:
            await r.aclose()

    run(body())


def test_a_connection_failure_reaches_every_caller_and_opens_the_breaker(isolated):
    dead = isolated.replace(**{"redis_url": "redis://127.0.0.1:1/0", "api_redis_timeout_s": 0.2})

    async def body() -> None:
        breaker = CircuitBreaker("redis", failures=1, reset_s=60)
        r = guarded_redis(dead, breaker)
        try:
            got = await asyncio.gather(*(r.get(f"k{n}") for n in range(10)), return_exceptions=True)
            assert all(isinstance(g, rexc.ConnectionError) for g in got), got
            assert breaker.state == "open"
        finally:
            await r.aclose()

    run(body())


def test_transactions_and_blocking_commands_are_not_batched():
    assert batchable(("HGET", "k", "f")) and batchable((b"EVALSHA", "sha", 0))
    assert batchable(("XREAD", "COUNT", 1, "STREAMS", "s", "0"))
    for args in [("WATCH", "k"), ("MULTI",), ("blpop", "k", 1), (b"BZPOPMIN", "k", 1), ("SUBSCRIBE", "c"),
                 ("XREAD", "BLOCK", 100, "STREAMS", "s", "$"), (b"XREADGROUP", "GROUP", "g", "c", b"block", 1), ()]:
        assert not batchable(args), args
