"""The API's Redis connection packs commands with hiredis (serving/clients.PackedConnection): the
bytes on the wire must be exactly redis-py's own (Python) packing, for every argument type the API
sends, and refusals must stay refusals."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from serving.clients import PackedConnection, connection_class

CASES = [
    ("GET", "bench:{u1}:state"),
    ("HMGET", "recs:{recs-filters}", *[f"i{n}" for n in range(300)]),
    ("EVALSHA", "a" * 40, 3, "k1", "k2", "k3", 50, 3, 1, 0.6400000000000001, 1e-7, 2.0, -0.5, 10**18),
    ("ZREVRANGE", "k", 0, -1, "WITHSCORES"),
    ("SET", "k", b"\x00\xff\xfe binary", "PX", 1500),
    ("SET", "k", "é ünïcode ✓", "EX", 5),
    ("SET", "big", "x" * 100_000),
    ("CONFIG GET", "maxmemory"),
    ("SET", "k", memoryview(b"view")),
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: str(a[0]))
def test_hiredis_packing_is_byte_identical(args):
    assert connection_class() is PackedConnection  # hiredis is a dependency (redis[hiredis])
    python, packed = aioredis.Connection(), PackedConnection()
    assert b"".join(packed.pack_command(*args)) == b"".join(python.pack_command(*args))
    pipeline = [args, ("PING",), args]
    assert b"".join(packed.pack_commands(pipeline)) == b"".join(python.pack_commands(pipeline))


@pytest.mark.parametrize("bad", [None, {"a": 1}, True])
def test_unencodable_arguments_are_refused_like_redis_py(bad):
    with pytest.raises(DataError):
        aioredis.Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)


def test_lone_surrogates_are_refused_like_redis_py():
    with pytest.raises(UnicodeEncodeError):
        aioredis.Connection().pack_command("GET", "a\udc80")
    with pytest.raises(UnicodeEncodeError):
        PackedConnection().pack_command("GET", "a\udc80")
