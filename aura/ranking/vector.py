"""The hybrid ranking vectorized: every source's scores over ONE candidate index, merged with numpy
(``Candidates``: ``np.bincount`` per source, normalised, weighted), the pool of the best candidates
(``pick_pool``) and its ranking with the compact filter records (``rank_pool``); and the parsing of Redis
replies into numpy arrays (``flat_scores``, ``float_array``).

The twin of aura/ranking/blend.py's dict ranking, tested equal to it; what the request path and the
worker's pool refresher run. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aura.ranking.blend import Diversity, Filters, apply_filters, diversify, passes
from aura.state.catalog import parse_filter_record

RANK_SCORES = 1.0 / (1.0 + np.arange(10_000, dtype=np.float64))  # rank-based scores of ordered lists


def rank_scores(n: int) -> np.ndarray:
    return RANK_SCORES[:n] if n <= len(RANK_SCORES) else 1.0 / (1.0 + np.arange(n, dtype=np.float64))


def normalise_vec(v: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``normalise`` over the items a source proposed (``present``); the others stay 0."""
    if not present.any():
        return v
    vals = v[present]
    top = vals.max()
    if top <= 0 or not math.isfinite(top):
        lo = vals.min()
        span = (top - lo) or 1.0
        return np.where(present, (v - lo) / span, 0.0)
    return v / top


class Candidates:
    """Every source's scores over ONE candidate index, merged with numpy.

    ``add`` appends a chunk (item ids, scores, times a factor) to a source; ``scores`` sums a source's
    chunks per item (``np.bincount``) and says which items the source proposed. ``blend`` is the
    vectorized ``blend``: normalise each source to a maximum of 1, weighted sum.
    """

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.chunks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.ids: list[str] = []

    def add(self, source: str, ids: Sequence[str], scores: Any, factor: float = 1.0) -> None:
        if not len(ids):
            return
        ix = self.index
        fresh = dict.fromkeys(ids)
        if fresh.keys().isdisjoint(ix):  # all new (often: the first lists): no per-item test in Python
            new: Any = fresh
        else:
            new = [i for i in fresh if i not in ix]
        if new:
            ix.update(zip(new, range(len(ix), len(ix) + len(new)), strict=True))
        idx = np.fromiter(map(ix.__getitem__, ids), dtype=np.intp, count=len(ids))
        sc = np.asarray(scores, dtype=np.float64)
        self.chunks.setdefault(source, []).append((idx, sc * factor if factor != 1.0 else sc))

    def has(self, source: str) -> bool:
        return bool(self.chunks.get(source))

    def scores(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(summed scores over the whole index, proposed-by-this-source mask)."""
        n = len(self.index)
        parts = self.chunks.get(source)
        if not parts:
            return np.zeros(n), np.zeros(n, dtype=bool)
        if len(parts) == 1:
            idx = parts[0][0]
            w = parts[0][1]
        else:
            idx = np.concatenate([p[0] for p in parts])
            w = np.concatenate([p[1] for p in parts])
        present = np.zeros(n, dtype=bool)
        present[idx] = True
        return np.bincount(idx, weights=w, minlength=n), present

    def blend(self, weights: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weighted sum of the normalised sources (``weights`` > 0 only); the presence mask of each."""
        self.ids = list(self.index)
        total = np.zeros(len(self.index))
        masks: dict[str, np.ndarray] = {}
        for name, w in weights.items():
            if w <= 0 or not self.has(name):
                continue
            v, present = self.scores(name)
            total += w * normalise_vec(v, present)
            masks[name] = present
        return total, masks


def pick_pool(total: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Indexes of the ``size`` best-scored candidates among ``mask``."""
    cand = np.flatnonzero(mask)
    if len(cand) > size:
        cand = cand[np.argpartition(-total[cand], size - 1)[:size]]
    return cand


def rank_pool(pool: list[str], scores: list[float], records: list[str | None], seen: set[str], f: Filters,
              d: Diversity, limit: int) -> list[tuple[str, float]]:
    """``apply_filters`` -> sort -> ``diversify`` over the pool, with the compact filter records.

    Without boosts or diversity the records are decoded lazily, in score order, until ``limit`` items
    passed (the same answer as the full pass: the order does not depend on the filters)."""
    order = sorted(range(len(pool)), key=lambda j: (-scores[j], pool[j]))
    if not (f.boost_items or f.boost_categories or f.soft is not None or d.max_per_category is not None
            or d.mmr_lambda is not None):
        out: list[tuple[str, float]] = []
        for j in order:
            item = pool[j]
            if passes(item, parse_filter_record(records[j]), seen, f):
                out.append((item, scores[j]))
                if len(out) >= limit:
                    break
        return out
    meta = {pool[j]: parse_filter_record(records[j]) for j in order}
    kept = apply_filters({pool[j]: scores[j] for j in order}, meta, seen, f)
    ranked = sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))
    return diversify(ranked, meta, limit, d)


# ---------------------------------------------------------------------------- Redis replies


def float_array(values: list[Any]) -> np.ndarray:
    """Scores from a reply: floats (RESP3 doubles) or decimal strings (RESP2); numpy's own string
    parsing is several times slower than ``float``."""
    if values and isinstance(values[0], str):
        values = list(map(float, values))
    return np.array(values, dtype=np.float64)


def flat_scores(flat: list[Any]) -> tuple[list[str], np.ndarray]:
    """A raw ``ZREVRANGE ... WITHSCORES`` reply -> ids, scores. RESP3 (``protocol=3``): [member, score]
    pairs with float scores; RESP2: member, score, member, score ... as strings."""
    if flat and isinstance(flat[0], list):
        return [p[0] for p in flat], np.fromiter((p[1] for p in flat), dtype=np.float64, count=len(flat))
    return flat[0::2], float_array(flat[1::2])

