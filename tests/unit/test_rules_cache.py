"""The versioned configuration cache (aura/configcache.py) over an in-memory Redis and table:
warm reads never touch the durable store, writes invalidate, and a blob rebuilt from data read
before a concurrent write is never served after it."""

from __future__ import annotations

import copy
import json
from typing import Any

from aura.configcache import ConfigCache
from aura.keys import RedisKeys
from aura.state.rules import validate_rule


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: Any, nx: bool = False) -> bool:
        if nx and key in self.data:
            return False
        self.data[key] = str(value)
        return True

    async def incr(self, key: str) -> int:
        self.data[key] = str(int(self.data.get(key, "0")) + 1)
        return int(self.data[key])


class TableCache(ConfigCache[Any]):
    """ConfigCache whose durable store is a dict; ``during_read`` runs between reading the table
    and returning (a concurrent writer)."""

    def __init__(self, redis: FakeRedis) -> None:
        super().__init__("rules", "t", "rule_id", redis, RedisKeys("p"), None, validate_rule)
        self.table: dict[str, dict[str, Any]] = {}
        self.during_read: Any = None

    async def load_durable(self) -> list[dict[str, Any]]:
        self.durable_reads += 1
        snapshot = copy.deepcopy(list(self.table.values()))
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            await hook()
        return snapshot

    async def _write(self, name: str, params: tuple[Any, ...]) -> bool:
        if name == "delete":
            ok = self.table.pop(params[0], None) is not None
        elif name == "insert":
            ok = params[0] not in self.table
            if ok:
                self.table[params[0]] = json.loads(params[1])
        else:
            ok = params[1] in self.table
            if ok:
                self.table[params[1]] = json.loads(params[0])
        if ok:
            await self.redis.incr(self.ver_key)
        return ok


def rule(rid: str, variant: str) -> dict[str, Any]:
    return {"id": rid, "variant": variant}


async def test_warm_reads_and_invalidation():
    cache = TableCache(FakeRedis())
    assert await cache.insert("r1", rule("r1", "a"))
    assert not await cache.insert("r1", rule("r1", "a"))
    assert (await cache.get())["r1"].variant == "a"
    reads = cache.durable_reads
    for _ in range(10):
        await cache.get()
    assert cache.durable_reads == reads  # memo by version
    other = TableCache(cache.redis)  # another process: served from the Redis blob, no durable read
    other.table = cache.table
    assert (await other.get())["r1"].variant == "a" and other.durable_reads == 0
    assert await cache.update("r1", rule("r1", "b"))
    assert (await other.get())["r1"].variant == "b"
    assert await cache.delete("r1") and not await cache.delete("r1")
    assert await other.get() == {}


async def test_a_blob_built_before_a_concurrent_write_is_not_served_after_it():
    redis = FakeRedis()
    writer, reader = TableCache(redis), TableCache(redis)
    reader.table = writer.table
    await writer.insert("r1", rule("r1", "old"))
    await redis.set(writer.blob_key, "")  # force the reader to rebuild from the table

    async def concurrent_write() -> None:
        await writer.update("r1", rule("r1", "new"))

    reader.during_read = concurrent_write
    stale = await reader.get()  # read the table before the write, stamped with the old version
    assert stale["r1"].variant == "old"
    assert (await reader.get())["r1"].variant == "new"  # the version moved: rebuilt
    assert (await TableCache(redis).get())["r1"].variant == "new"


async def test_lost_version_key_restarts_from_a_fresh_version():
    redis = FakeRedis()
    cache = TableCache(redis)
    await cache.insert("r1", rule("r1", "a"))
    await cache.get()
    redis.data.clear()  # Redis flushed
    v = await cache.version()
    assert int(v) > 1_700_000_000_000
    cache.table["r1"] = rule("r1", "z")  # changed behind our back while Redis was gone
    assert (await cache.get())["r1"].variant == "z"
