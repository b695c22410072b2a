"""The segments writer's script against the real Redis: each real join or leave is recorded once in
the segment's transition stream, a replayed write records nothing, and removals record nothing."""

from __future__ import annotations

import pytest

from aura.keys import keys_for
from aura.state.campaign_schedule import parse_transition
from streams.segments import HISTORY_LUA

pytestmark = pytest.mark.integration


def test_transitions_are_recorded_once_per_real_change(isolated, redis_client):
    k = keys_for(isolated)
    keys = [k.segment_members("vip"), k.segment_history("vip"), k.segment_transitions("vip")]

    def apply(add: list[str], remove: list[str], origin: str = "fold") -> list[int]:
        return redis_client.eval(HISTORY_LUA, 3, *keys, "h1", len(add), origin, 1000, *add, *remove)

    assert apply(["ann", "bob"], []) == [2, 0]
    assert apply(["ann", "bob"], []) == [0, 0]  # a replay changes nothing and records nothing
    assert apply(["cat"], ["ann", "zed"], "backfill") == [1, 1]
    assert apply([], ["bob"], "remove") == [0, 1]  # an erasure: no transition
    got = [parse_transition(i, f) for i, f in redis_client.xrange(keys[2])]
    assert [(t.user_id, t.kind, t.origin) for t in got] == [
        ("ann", "enter", "fold"), ("bob", "enter", "fold"), ("cat", "enter", "backfill"), ("ann", "leave", "backfill")]
    assert redis_client.smembers(keys[0]) == {"cat"}
