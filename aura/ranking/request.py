"""What a ranking is asked and what it answers: ``Request`` (user, method, placement, filters,
diversity), ``Result`` (items with their scores and the sources that proposed each), and the two pure
steps over a user's candidate pool that every caller shares (``pool_head``: the head whose filter
records are read first; ``result_of``: the answer of a ranked pool). The stages that read the state
are in aura/ranking/ranker.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aura.ranking.blend import SOURCES, Diversity, Filters
from aura.state.pools import Pool


@dataclass
class Request:
    user_id: str | None
    method: str = "hybrid"
    limit: int = 10
    placement: str = "default"
    context_item: str | None = None
    preferred_categories: list[str] = field(default_factory=list)
    filters: Filters = field(default_factory=Filters)
    diversity: Diversity = field(default_factory=Diversity)
    recent_n: int = 10
    recent_decay: float = 0.8
    batch_model: str = "ease"


@dataclass
class Result:
    items: list[tuple[str, float, list[str]]]
    strategy: str
    weights: dict[str, float]
    model: str = ""  # "<model id>:<version>" active for the placement ("" when none)


def needs_whole_pool(req: Request) -> bool:
    """Boosts and diversity look at the whole pool (the records of every candidate)."""
    f = req.filters
    return bool(f.boost_items or f.boost_categories or req.diversity.max_per_category is not None
                or req.diversity.mmr_lambda is not None)


def pool_head(req: Request, pool: Pool) -> tuple[np.ndarray, list[str], list[float]]:
    """The head of the pool's order (-score, id) whose filter records round trip (3) reads first: every
    item scoring at least the ``max(3 * limit, 30)``-th best (the whole pool when boosts or diversity
    need it); returns (pool positions, ids best first, their scores)."""
    ids_all, pool_scores = pool.ids, pool.scores
    first = len(ids_all) if needs_whole_pool(req) else max(3 * req.limit, 30)
    head = np.arange(len(ids_all))
    if first < len(ids_all):
        threshold = np.partition(pool_scores, len(ids_all) - first)[len(ids_all) - first]
        head = np.flatnonzero(pool_scores >= threshold)
    best = sorted(zip([ids_all[j] for j in head], pool_scores[head].tolist(), strict=True),
                  key=lambda t: (-t[1], t[0]))
    return head, [i for i, _ in best], [x for _, x in best]


def result_of(pool: Pool, ranked: list[tuple[str, float]]) -> Result:
    """The ranked items with the sources that proposed each."""
    names = [s for s in SOURCES if s in pool.masks]
    rows = [pool.index[i] for i, _s in ranked]
    proposed = [pool.masks[name][rows].tolist() for name in names]  # one numpy read per source
    items = [(i, s, [name for name, col in zip(names, proposed, strict=True) if col[r]])
             for r, (i, s) in enumerate(ranked)]
    return Result(items=items, strategy=pool.strategy, weights=pool.weights, model=pool.model)
