"""Redis bytes per user of the recommender's per-user state, as the stream writes it.

    .venv/bin/python -m bench.recs_memory --users 20000 --events-per-user 1

Each synthetic user gets ``--events-per-user`` views of random items, folded by the real ``fold`` of
streams/usersignals.py and written by its real user script (``USER_LUA``: fence, sequence, seen items,
MF factors of ``AURA_RECS_MF_DIM`` floats). Reports MEMORY USAGE summed over the keys the script writes (the users'
recommender state, sequence and seen items; exact per key, Redis' key overhead included) per user,
and the same extrapolated to a million users. The item-keyed state (neighbour lists, item factors) and
the on-demand pools are not per user and are left out. Deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from aura import bootstrap
from aura.keys import RedisKeys
from aura.settings import get_settings
from aura.state.cooccurrence import encode_vector
from bench.pipeline import bench_settings, cleanup_redis
from schemas.events import Behavior
from streams.intake import Accepted
from streams.usersignals import USER_LUA, CoocParams, fold, user_lua_args


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--events-per-user", type=int, default=1)
    ap.add_argument("--items", type=int, default=5000)
    a = ap.parse_args()
    s = bench_settings(get_settings())
    k, r, rng = RedisKeys(s.redis.prefix), bootstrap.redis_sync(s), random.Random(1)
    script = r.register_script(USER_LUA)
    nrng = np.random.default_rng(1)
    try:
        users = [f"user-{n:07d}" for n in range(a.users)]
        for start in range(0, len(users), 1000):
            chunk = users[start:start + 1000]
            per = a.events_per_user
            events = [Accepted(Behavior(f"{u}-{e}", "view", u, f"item-{rng.randrange(a.items)}",
                                        1_700_000_000_000 + e), 0, (start + n) * per + e)
                      for n, u in enumerate(chunk) for e in range(per)]
            f = fold(events, {}, {}, CoocParams(window=s.recs.window, decay=s.recs.decay, seq_max=s.recs.seq_max))
            pipe = r.pipeline(transaction=False)
            for u in chunk:
                vec = encode_vector(nrng.standard_normal(s.recs.mf_dim).astype(np.float32) * 0.1)
                script(keys=[k.recs_user_state(u), k.recs_user_seq(u), k.recs_user_seen(u)],
                       args=user_lua_args(None, f.users[u], vec), client=pipe)
            pipe.execute()
        total, keys = 0, 0
        sample = users[:: max(1, len(users) // 2000)]
        for u in sample:
            for key in (k.recs_user_state(u), k.recs_user_seq(u), k.recs_user_seen(u)):  # what the script writes
                used = r.memory_usage(key, samples=0)
                if used:
                    total, keys = total + used, keys + 1
        per_user = total / len(sample)
        print(f"users={a.users} events/user={a.events_per_user} mf_dim={s.recs.mf_dim}: "
              f"{keys / len(sample):.1f} keys and {per_user:.0f} bytes per user (MEMORY USAGE, {len(sample)} users "
              f"sampled) -> {per_user * 1e6 / 2**30:.2f} GiB per million users")
    finally:
        cleanup_redis(s)
        r.close()


if __name__ == "__main__":
    main()
