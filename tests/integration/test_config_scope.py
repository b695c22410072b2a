"""Configuration documents are scoped (aura/configcache.py): tests sharing one keyspace store their
segments, rules, experiments and bandits under their own scope, and never see, replace or delete
another scope's; an unscoped process (production) sees no scoped document."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from aura import bootstrap
from aura.configcache import SCOPE_SEP, ConfigCache
from aura.keys import RedisKeys, keys_for
from aura.layout import Tables
from aura.state import segments as segment_rules

pytestmark = [pytest.mark.integration]


def test_scopes_do_not_see_each_other(isolated, cassandra, api_client):
    name = f"scoped_{uuid.uuid4().hex[:8]}"
    other = f"o{uuid.uuid4().hex[:8]}"
    # this test's scope stores through the API
    r = api_client.post("/v1/segments", json={"id": name, "conditions": [["orders", ">=", 1]]})
    assert r.status_code == 201, r.text

    async def run() -> tuple[Any, ...]:
        redis = bootstrap.redis_async(isolated)

        def cache(keys: RedisKeys) -> ConfigCache:
            return ConfigCache(segment_rules.CONFIG_KIND, Tables.SEGMENTS, "segment_id", redis, keys, cassandra,
                               segment_rules.validate_segment)

        try:
            mine, theirs, unscoped = cache(keys_for(isolated)), cache(RedisKeys(other, other)), cache(RedisKeys(other))
            created = await theirs.insert(name, {"id": name, "conditions": [["orders", ">=", 5]]})
            seen = (set(await mine.get()), set(await theirs.get()), set(await unscoped.get()))
            return created, *seen, await theirs.delete(name), await theirs.get_doc(name), await mine.get_doc(name)
        finally:
            await redis.aclose()

    created, mine, theirs, unscoped, deleted, theirs_after, mine_after = asyncio.run(run())
    assert created, "the same id in another scope is no conflict"
    assert name in mine and name in theirs and name not in unscoped
    assert deleted and theirs_after is None
    assert mine_after is not None and mine_after["conditions"] == [["orders", ">=", 1]]
    # the other scope's delete left this scope's definition alone; its row id carries the scope
    assert api_client.get(f"/v1/segments/{name}").json()["source"] == "api"
    row_id = f"{isolated.redis.config_scope}{SCOPE_SEP}{name}"
    assert cassandra.execute(f"SELECT segment_id FROM {Tables.SEGMENTS} WHERE segment_id = %s", (row_id,)).one()
    assert cassandra.execute(f"SELECT segment_id FROM {Tables.SEGMENTS} WHERE segment_id = %s", (name,)).one() is None
