"""The segment member sets (streams/segments.py): the rows a reconcile writes, and the write-behind."""

from __future__ import annotations

import asyncio

from aura.keys import RedisKeys
from aura.state.profiles import Profile
from streams.segments import SegmentStore


class _Session:
    def prepare(self, cql: str) -> str:
        return cql.split()[0]  # "INSERT" / "DELETE"


class _Pipe:
    def __init__(self, log: list) -> None:
        self.log = log
        self.scripts: set = set()

    def evalsha(self, sha, numkeys, members_key, history_key, transitions_key, hour, n_add, origin, cap, *users):
        assert numkeys == 3 and transitions_key.endswith(":transitions") and origin == "fold"
        self.log.append(("changes", members_key, users[:n_add], users[n_add:]))

    async def execute(self):
        self.log.append(("execute",))


class _Redis:
    def __init__(self) -> None:
        self.log: list = []

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self.log)

    def register_script(self, source: str):
        return type("Script", (), {"sha": "sha"})()


def test_reconcile_rows_and_the_write_behind_buffer():
    redis = _Redis()
    store = SegmentStore(redis, _Session(), RedisKeys("t"), ["buyer", "vip"])
    states = {"a": Profile(segments=["vip"]), "b": Profile(segments=[]), "c": Profile(segments=["buyer"])}
    rows = store.rows(states, unchanged={"c"})
    assert rows == {("buyer", "a"): False, ("vip", "a"): True, ("buyer", "b"): False, ("vip", "b"): False}
    assert store.statements({("vip", "a"): True, ("buyer", "a"): False}) == [
        (("segment", "vip"), "INSERT", ("vip", "a")), (("segment", "buyer"), "DELETE", ("buyer", "a"))]
    # with the segments the fold started from: only what changed, unless the user's events were a replay
    before = {"a": ["buyer"], "b": []}
    assert store.rows(states, {"c"}, before=before) == {("buyer", "a"): False, ("vip", "a"): True}
    assert store.rows(states, {"c"}, before=before, full={"b"}) == {
        ("buyer", "a"): False, ("vip", "a"): True, ("buyer", "b"): False, ("vip", "b"): False}
    assert store.rows({"n": Profile(segments=["vip"])}, set(), before={"n": []}) == {("vip", "n"): True}
    # a replayed user whose segments did not change still gets its whole membership
    assert store.rows(states, {"c"}, before={"c": ["buyer"]}, full={"c"}) == {
        ("buyer", "a"): False, ("vip", "a"): True, ("buyer", "b"): False, ("vip", "b"): False,
        ("buyer", "c"): True, ("vip", "c"): False}
    buffered: list[dict] = []
    asyncio.run(store.reconcile(states, {"c"}, buffer=buffered.append))  # no Cassandra write: the buffer gets it
    assert buffered == [rows]
    keys = RedisKeys("t")
    assert ("changes", keys.segment_members("vip"), ("a",), ("b",)) in redis.log
    assert ("changes", keys.segment_members("buyer"), (), ("a", "b")) in redis.log
    assert redis.log[-1] == ("execute",)
    buffered.clear()
    asyncio.run(store.reconcile({"c": states["c"]}, {"c"}, buffer=buffered.append))  # nothing changed
    assert buffered == []
