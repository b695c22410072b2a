"""The right to be forgotten, beyond the profile: every Redis key and every reference to a user that
the recommenders, experiments and pools keep, and the user's raw interaction rows in Cassandra.

Called by the identity agent (streams/identity.py) on an ``erase`` event, before it deletes the
profile keys and rows it owns and writes the tombstone of the user's key on the compacted identity
topic. What it removes:

- every key under the user's recommender hash tag (``recs:user:{<user>}:*``: fence, sequence, seen
  items, MF factors and candidates, batch-model candidates, neighbours, neighbour fence, candidate
  pools of every placement) and the user's experiment assignments;
- the user as a member of other keys: the neighbour lists of the users who share items with it,
  the recent-actor lists of the items it touched, the experiments' user and converter sets, the
  pool requests waiting to be ranked;
- the user's first-seen time and active-period memberships of the acquisition cohorts
  (streams/retention.py);
- the ``interactions`` partition of the user (the history the batch models train on).

Counts already aggregated (analytics buckets and HyperLogLogs, item popularity, co-occurrence,
experiment tallies, cohort counters) carry no user id and stay. Raw behavior events stay on the behavior topic until
its retention (7 days; delete policy, not compacted) ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cassandra.concurrent import execute_concurrent

from aura.keys import RedisKeys, glob_escape
from aura.layout import Tables


def interactions_delete(session: Any) -> Any:
    return session.prepare(f"DELETE FROM {Tables.INTERACTIONS} WHERE user_id = ?")


async def erase_references(redis: Any, keys: RedisKeys, session: Any, delete_interactions: Any, user: str) -> None:
    """Remove ``user``'s recommender and experiment footprint (see the module docstring)."""
    pipe = redis.pipeline(transaction=False)
    pipe.zrange(keys.recs_user_nbrs(user), 0, -1)
    pipe.zrange(keys.recs_user_seen(user), 0, -1)
    pipe.hkeys(keys.user_experiments(user))
    nbrs, seen, exps = await pipe.execute()
    actors_pipe = redis.pipeline(transaction=False)
    for item in seen:
        actors_pipe.zrange(keys.recs_item_actors(item), 0, -1)
    co_actors = {u for members in (await actors_pipe.execute() if seen else []) for u in members}
    pattern = keys.recs_user_state(user).rsplit(":", 1)[0]  # recs:user:{<user>}
    owned = [k async for k in redis.scan_iter(match=glob_escape(pattern) + ":*", count=1000)]
    cohorts = [k async for k in redis.scan_iter(match=keys.retention_match(), count=1000)]
    wanted = [m async for m, _s in redis.zscan_iter(keys.recs_cands_wanted(), match="*\x1f" + glob_escape(user))]
    converted: dict[str, list[str]] = {}
    for e in exps:
        converted[e] = [m async for m in redis.sscan_iter(keys.experiment_converted(e),
                                                          match="*|" + glob_escape(user))]
    pipe = redis.pipeline(transaction=False)
    for other in (set(nbrs) | co_actors) - {user}:
        pipe.zrem(keys.recs_user_nbrs(other), user)
    for item in seen:
        pipe.zrem(keys.recs_item_actors(item), user)
    for e in exps:
        pipe.hdel(keys.experiment_users(e), user)
        if converted[e]:
            pipe.srem(keys.experiment_converted(e), *converted[e])
    if wanted:
        pipe.zrem(keys.recs_cands_wanted(), *wanted)
    for k in cohorts:
        kind = keys.retention_user_key(k)
        if kind == "first":
            pipe.hdel(k, user)
        elif kind == "seen":
            pipe.srem(k, user)
    for k in [*owned, keys.user_experiments(user)]:
        pipe.delete(k)
    await pipe.execute()
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: execute_concurrent(session, [(delete_interactions, (user,))], raise_on_first_error=True))
