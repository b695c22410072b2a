"""The CPU floor of the stream: what the pure per-event code costs with no I/O at all.

    .venv/bin/python -m bench.fold_floor [--events 40000] [--users 20000] [--batch 2000] [--runs 3]

Demo storefront events are encoded once, then, batch by batch and with the state carried from
batch to batch as the worker carries it, the pure functions each role runs per batch are timed
with ``time.process_time`` (CPU of this process only, so a loaded machine changes the figures
little): the intake (decode + validate, streams/intake.split), the profile fold
(streams/profiles.fold_user), the analytics fold (streams/analytics.fold), the recommender fold
(streams/usersignals.fold) and online MF (aura/models/mf.OnlineMF.learn_one over the batch's
positives). No Redis, Kafka or Cassandra, no Faust, no script arguments: the real worker does
all of this *and* its I/O, so ``1e6 / (us per event)`` is an upper bound of the events per second
one core can fold. Prints the median of ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from aura.demo import Storefront
from aura.models.mf import OnlineMF
from aura.settings import get_settings
from aura.state.cooccurrence import SeqEntry
from aura.state.profiles import Profile, ProfileConfig
from schemas.codec import codec
from streams import analytics, profiles
from streams.intake import Accepted, RawRecord, split
from streams.usersignals import CoocParams
from streams.usersignals import fold as cooc_fold


def records(n: int, users: int, seed: int) -> list[RawRecord]:
    c = codec("behavior_event")
    shop = Storefront(seed=seed, n_users=users)
    out: list[RawRecord] = []
    for ev in shop.events(int(time.time() * 1000) - 3600 * 1000):
        out.append(RawRecord("bench", hash(ev["user_id"]) % 12, len(out), ev["user_id"].encode(), c.encode(ev)))
        if len(out) >= n:
            break
    return out


def one_run(recs: list[RawRecord], batch: int) -> dict[str, float]:
    s = get_settings()
    cfg = ProfileConfig.from_settings(s)
    params = CoocParams(window=s.recs.window, decay=s.recs.decay, seq_max=s.recs.seq_max)
    c = codec("behavior_event")
    mf = OnlineMF(dim=s.recs.mf_dim, lr=s.recs.mf_lr, seed=0)
    users: dict[str, Profile] = {}
    seqs: dict[str, list[SeqEntry]] = {}
    cost = {"intake (decode + validate)": 0.0, "profile fold": 0.0, "analytics fold": 0.0,
            "recommender fold": 0.0, "online MF": 0.0}

    def timed(name: str, fn: Callable[[], object]) -> object:
        t = time.process_time()
        out = fn()
        cost[name] += time.process_time() - t
        return out

    now = int(time.time() * 1000)
    for i in range(0, len(recs), batch):
        accepted, _dead = timed("intake (decode + validate)", lambda i=i: split(recs[i:i + batch], c, now))
        by_user: dict[str, list[Accepted]] = {}
        for a in accepted:
            by_user.setdefault(a.event.user_id, []).append(a)

        def fold_profiles(by_user: dict[str, list[Accepted]] = by_user) -> list[profiles.Fact]:
            facts: list[profiles.Fact] = []
            for u, evs in by_user.items():
                facts += profiles.fold_user(users.setdefault(u, Profile()), evs, cfg, lambda _i: None)
            return facts

        facts = timed("profile fold", fold_profiles)
        timed("analytics fold", lambda facts=facts: analytics.fold(facts, {}))
        f = timed("recommender fold", lambda a=accepted: cooc_fold(
            a, {}, {u: seqs.get(u, []) for u in {x.event.user_id for x in a}}, params))
        for u, d in f.users.items():
            seqs[u] = d.seq

        def learn(f: object = f) -> None:
            for user, item, weight in f.positives:  # type: ignore[attr-defined]
                mf.learn_one(user, item, min(weight, 2.0))

        timed("online MF", learn)
    return {k: v / len(recs) * 1e6 for k, v in cost.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    recs = records(a.events, a.users, seed=7)
    runs = [one_run(recs, a.batch) for _ in range(a.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{len(recs)} demo events, {a.users} users, batches of {a.batch}, {a.runs} runs (medians, "
          f"CPU us per event of this process); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for k, v in med.items():
        print(f"  {k:28s} {v:7.1f} us")
    prof = sum(med[k] for k in ("intake (decode + validate)", "profile fold", "analytics fold"))
    total = sum(med.values())
    print(f"  profiles role (intake + profile + analytics folds): {prof:6.1f} us -> at most "
          f"{1e6 / prof:,.0f} events/s per core with free I/O")
    print(f"  every role above:                                   {total:6.1f} us -> at most "
          f"{1e6 / total:,.0f} events/s per core with free I/O")


if __name__ == "__main__":
    main()
