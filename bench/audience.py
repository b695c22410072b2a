"""What the campaign audience estimate costs (serving/audience.py ``scan_audience``, the scan behind
``GET /v1/campaigns/{id}/audience``): ``users`` users seeded under a private Redis prefix (a profile
with counts, ltv, recent items and segments, plus identity attributes), then, alternately in one run,
an exact ``everyone`` estimate (SCAN of the whole keyspace, no reads) and an exact ``rule`` estimate
(the same SCAN, plus one pipeline of reads per page and the rule evaluated per user). The
difference per user is what reading and evaluating a rule adds; the ``everyone`` time is the cost of
an exact answer over the shared keyspace (its size is printed).

    python -m bench.audience --users 20000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from aura import bootstrap
from aura.keys import RedisKeys
from aura.settings import Settings
from aura.state import profile_codec
from aura.state.campaign_sends import template_error
from aura.state.campaigns import Audience, validate_campaign
from aura.state.profiles import Profile
from serving.audience import scan_audience

RULE = {"all": [{"field": "profile.country", "op": "in", "value": ["DE", "AT"]},
                {"any": [{"field": "profile.ltv", "op": "gte", "value": 100},
                         {"field": "profile.count.purchase", "op": "gte", "value": 2}]}]}


def audience(raw: dict) -> Audience:
    doc = {"id": "bench", "channel": "email", "trigger": {"type": "event", "event_type": "view"},
           "template": {"subject": "s", "body": "b"}, "audience": raw}
    return validate_campaign(doc, check_template=template_error).audience


async def main(users: int, runs: int) -> None:
    s = Settings().replace(redis_prefix=f"bench-audience-{uuid.uuid4().hex[:6]}")
    keys = RedisKeys(s.redis.prefix)
    redis = bootstrap.redis_async(s)
    countries = ["DE", "FR", "AT", "IT", "ES"]
    now = int(time.time() * 1000)
    try:
        for start in range(0, users, 2000):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(users, start + 2000)):
                p = Profile(counts={"view": 20 + i % 30, "purchase": i % 4}, ltv=float(i % 300), orders=i % 4,
                            recent=[f"i{(i + k) % 5000}" for k in range(20)], segments=["window_shopper"] * (i % 2),
                            last_seen=now, first_seen=now - 86_400_000, version=1)
                pipe.set(keys.user_state(f"u{i}"), profile_codec.pack(p))
                pipe.hset(keys.user_attrs(f"u{i}"), mapping={"x:country": json.dumps(countries[i % 5]),
                                                             "x:email": json.dumps(f"u{i}@example.com"),
                                                             "x:first_name": json.dumps("Ann")})
            await pipe.execute()
        kinds = {"everyone": audience({"type": "everyone"}), "rule": audience({"type": "rule", "condition": RULE})}
        got: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(runs):
            for name, a in kinds.items():
                t0 = time.perf_counter()
                out = await scan_audience(redis, keys, a, users + 1, 600.0)
                got[name].append(time.perf_counter() - t0)
                assert out["exact"] and out["scanned"] == users, out
        print(f"keyspace: {await redis.dbsize()} keys; {users} users, rule matched {out['size']}")  # noqa: T201
        med = {k: statistics.median(v) for k, v in got.items()}
        for k, v in got.items():
            print(f"{k}: median {med[k] * 1000:.0f} ms exact (runs: {', '.join(f'{x * 1000:.0f}' for x in v)})")  # noqa: T201
        print(f"rule over everyone: +{(med['rule'] - med['everyone']) * 1e6 / users:.1f} us/user, "  # noqa: T201
              f"x{med['rule'] / med['everyone']:.2f}")
    finally:
        async for k in redis.scan_iter(match=f"{s.redis.prefix}:*", count=1000):
            await redis.delete(k)
        await redis.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main(args.users, args.runs))
