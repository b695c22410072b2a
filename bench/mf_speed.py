"""Online MF cost: BPR (aura/models/mf.py) one positive per call (``learn_one``) and a batch of 2,000
per call (``learn_many``, the worker's way), against river.reco.BiasedMF, per update and per ranking
of a 1,682-item catalog (MovieLens-100K size). Prints medians of 5 repeats.

    .venv/bin/python -m bench.mf_speed
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from aura.models.mf import OnlineMF

N_USERS, N_ITEMS, N_EVENTS = 943, 1682, 20_000


def events(seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(f"u{rng.integers(N_USERS)}", f"i{min(int(rng.zipf(1.3)), N_ITEMS) - 1}") for _ in range(N_EVENTS)]


def rank_ms(m: OnlineMF) -> float:
    """Milliseconds to rank the catalog for a user (mean of 200 users)."""
    t0 = time.perf_counter()
    for k in range(200):
        m.top(f"u{k}", 100)
    return (time.perf_counter() - t0) / 200 * 1e3


def numpy_mf(evs: list[tuple[str, str]]) -> tuple[float, float]:
    m = OnlineMF(dim=32, n_neg=2)
    for i in range(N_ITEMS):
        m.item_row(f"i{i}")
    t0 = time.perf_counter()
    for u, i in evs:
        m.learn_one(u, i)
    learn = (time.perf_counter() - t0) / len(evs) * 1e6
    return learn, rank_ms(m)


def batched_mf(evs: list[tuple[str, str]]) -> tuple[float, float]:
    m = OnlineMF(dim=32, n_neg=2)
    for i in range(N_ITEMS):
        m.item_row(f"i{i}")
    m.learn_many([(u, i, 1.0) for u, i in evs[:10]])  # compiled (or loaded from numba's cache) before the clock
    t0 = time.perf_counter()
    for start in range(0, len(evs), 2000):
        m.learn_many([(u, i, 1.0) for u, i in evs[start:start + 2000]])
    learn = (time.perf_counter() - t0) / len(evs) * 1e6
    return learn, rank_ms(m)


def river_mf(evs: list[tuple[str, str]]) -> tuple[float, float]:
    from river import optim, reco

    m = reco.BiasedMF(n_factors=32, latent_optimizer=optim.SGD(0.01), bias_optimizer=optim.SGD(0.01), seed=0)
    t0 = time.perf_counter()
    for u, i in evs:
        m.learn_one(u, i, 1.0)
    learn = (time.perf_counter() - t0) / len(evs) * 1e6
    items = [f"i{i}" for i in range(N_ITEMS)]
    t0 = time.perf_counter()
    for k in range(20):
        m.rank(f"u{k}", items)
    rank = (time.perf_counter() - t0) / 20 * 1e3
    return learn, rank


def main() -> None:
    evs = events()
    for name, fn in (("BPR learn_one (2 negatives / event)", numpy_mf),
                     ("BPR learn_many (batches of 2,000)", batched_mf),
                     ("river BiasedMF (1 step / event)", river_mf)):
        runs = [fn(evs) for _ in range(5)]
        print(f"{name:34s} per update median {statistics.median(r[0] for r in runs):7.1f} us   "
              f"rank {N_ITEMS} items median {statistics.median(r[1] for r in runs):7.2f} ms")


if __name__ == "__main__":
    main()
