"""The profiles owner of the behavior fan-out (streams/profiles_owner.py): alias resolution, the
write-behind of its Cassandra rows, and what ``register`` hands the behavior agent."""

from __future__ import annotations

import asyncio
from typing import Any

from aura.keys import RedisKeys
from aura.settings import Settings
from aura.state.profiles import Profile
from schemas.events import Behavior
from streams.durable import WriteBehind
from streams.intake import Accepted
from streams.profiles_owner import PROFILES_OWNER, BehaviorPipeline, register, resolve_aliases
from streams.runtime import Resources

KEYS = RedisKeys("t")


class _Redis:
    def __init__(self, aliases: dict[str, str] | None = None) -> None:
        self.aliases = aliases or {}

    async def mget(self, names: list[str]) -> list[str | None]:
        return [self.aliases.get(n) for n in names]

    def register_script(self, _lua: str) -> Any:
        return object()


class _Session:
    def prepare(self, cql: str) -> str:
        return cql


def acc(user: str, off: int) -> Accepted:
    return Accepted(Behavior(event_id=f"e{off}", event_type="view", user_id=user, item_id="i1", event_time=1), 0, off)


def test_events_of_merged_anonymous_ids_go_to_the_known_user():
    redis = _Redis({KEYS.user_alias("anon"): "known"})
    out = asyncio.run(resolve_aliases(redis, KEYS, [acc("anon", 1), acc("other", 2)]))
    assert [(a.event.user_id, a.offset) for a in out] == [("known", 1), ("other", 2)]
    unchanged = [acc("other", 3)]
    assert asyncio.run(resolve_aliases(_Redis(), KEYS, unchanged)) is unchanged
    assert asyncio.run(resolve_aliases(_Redis(), KEYS, [])) == []


def test_register_gives_one_owner_whose_rows_go_to_the_write_behind():
    durable = WriteBehind()
    res = Resources(settings=Settings(), redis=_Redis(), session=_Session(), keys=KEYS, durable=durable)
    owners = register(None, res)  # type: ignore[arg-type]  # it adds no agent: the app is not used
    assert [name for name, _step in owners] == [PROFILES_OWNER]
    assert {"profiles", "segments"} <= set(durable.sinks)
    store = BehaviorPipeline(res).profiles
    p = Profile(counts={"view": 1}, first_seen=1, last_seen=1, recent=["i1"], fences={0: 4}, version=2)
    asyncio.run(store.write_durable({"u": p}))
    assert durable.sinks["profiles"].pending == {"u": p}
    store.segment_buffer({("vip", "u"): True})
    assert durable.sinks["segments"].pending == {("vip", "u"): True}
    stmts = durable.sinks["profiles"].statements({"u": p})
    # activity, profile and search rows: one mutation per user
    assert [s[0] for s in stmts] == [("user", "u"), ("user", "u"), ("user", "u")]
