"""CPU cost of the recommender's fold per event on MovieLens-100K, no I/O.

    .venv/bin/python -m bench.recs_fold [--events 40000] [--batch 2000] [--runs 3]

The ratings in time order, split by user into 12 partitions, folded batch after batch as the worker
does (streams/usersignals.py): the item candidates and the fold (every item delta with its fences),
then the item scripts' arguments (streams/itemsignals.py ``item_lua_args``). Stored sequences carry
over between batches; item fences are all empty. Prints microseconds per event (median of the runs)
and item entries per event. Data: bench/movielens.py ``load``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

from aura.settings import get_settings
from aura.state import trending
from aura.state.cooccurrence import SeqEntry
from bench.movielens import load
from schemas.events import Behavior
from streams.intake import Accepted
from streams.itemsignals import item_lua_args
from streams.usersignals import CoocParams, fold, item_candidates


def events(n: int) -> list[Accepted]:
    rows, _ = load()
    offsets = [0] * 12
    out = []
    for u, i, t in sorted(rows, key=lambda r: r[2])[:n]:
        p = zlib.crc32(u.encode()) % 12
        out.append(Accepted(Behavior(f"{u}-{i}", "rating", u, i, t * 1000), p, offsets[p]))
        offsets[p] += 1
    return out


def one_run(acc: list[Accepted], batch: int, p: CoocParams, cap: int, half_life_ms: float) -> dict[str, float]:
    seqs: dict[str, list[SeqEntry]] = {}
    t_fold = t_args = 0.0
    entries = 0
    for start in range(0, len(acc), batch):
        part = acc[start:start + batch]
        t0 = time.perf_counter()
        stored = {u: seqs.get(u, []) for u in {a.event.user_id for a in part}}
        pairs = item_candidates(part, {}, stored, p)
        f = fold(part, {}, stored, p, dict.fromkeys(pairs))
        t1 = time.perf_counter()
        for d in f.items.values():
            item_lua_args(d, cap, half_life_ms)
        t2 = time.perf_counter()
        t_fold += t1 - t0
        t_args += t2 - t1
        entries += sum(d.entries for d in f.items.values())
        seqs.update({u: d.seq for u, d in f.users.items()})
    n = len(acc)
    return {"fold_us": t_fold / n * 1e6, "args_us": t_args / n * 1e6, "entries": entries / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=40000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    s = get_settings()
    p = CoocParams(window=s.recs.window, decay=s.recs.decay, seq_max=s.recs.seq_max)
    acc = events(a.events)
    runs = [one_run(acc, a.batch, p, s.recs.cooc_cap, trending.half_life_from_hours(s.recs.trending_half_life_h))
            for _ in range(a.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{len(acc)} MovieLens events, batch {a.batch}, window {p.window}: fold {med['fold_us']:.1f} us/event, "
          f"item script arguments {med['args_us']:.1f} us/event, {med['entries']:.1f} item entries per event "
          f"(median of {a.runs})")


if __name__ == "__main__":
    main()
