"""The per-user candidate pool: the best candidates of a user's hybrid ranking for one placement, kept
ready by the worker (streams/usercands.py, the writer) and read by the API's ranking (aura/ranking, the
reader) instead of ranking from scratch.

Owns the pool's in-memory form (``Pool``, what the ranking's blend keeps), its stored form (the hash
``recs_user_cands(user, placement)``: fields ``CANDS_FIELDS``, and ``CANDS_REST`` when the pool holds more
than ``CANDS_HEAD`` ids; ``pool_record`` / ``pool_ids``), its size (``pool_size``), and the members of the
wanted set (``recs_cands_wanted``: the (placement, user) pairs whose request found no usable pool;
``wanted_member`` / ``parse_wanted``). Pure: no I/O, no ranking.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CANDS_FIELDS = ("weights", "strategy", "ids", "scores", "sources", "used", "off")
CANDS_REST = ("ids_rest", "scores_rest", "sources_rest")  # the pool beyond its head (absent when none)
CANDS_SEP = "\x1f"
CANDS_LIMIT = 10  # the stream ranks as for limit 10: the pool of ``pool_size(10)`` serves limits up to 15
CANDS_HEAD = 45  # ids kept in the pool's head fields: what a request of limit <= 15 reads (3 * limit)

WANTED_SEP = "\x1f"


def wanted_member(placement: str, user_id: str) -> str:
    """The wanted set's member for (placement, user): the placement first (a configured placement has
    no separator; a user id may)."""
    return f"{placement}{WANTED_SEP}{user_id}"


def parse_wanted(member: str) -> tuple[str, str]:
    placement, _, user = member.partition(WANTED_SEP)
    return placement, user


def pool_size(limit: int) -> int:
    """Candidates kept after the blend, before the filter records are read."""
    return max(limit * 20, 300)


@dataclass
class Pool:
    """The best candidates after the blend (unordered), their scores and each source's presence mask."""

    ids: list[str]
    scores: np.ndarray
    masks: dict[str, np.ndarray]
    strategy: str
    weights: dict[str, float]
    model: str
    index: dict[str, int]
    asked: dict[str, float]  # the placement's weights for the method (``method_weights``)


def pool_record(pool: Pool, sources: Sequence[str]) -> dict[str, str] | None:
    """A pool as the stream stores it (hash fields ``CANDS_FIELDS``, and ``CANDS_REST`` when it holds
    more than ``CANDS_HEAD`` ids): ids best first in the order (-score, id), scores as exact decimal
    text, each item's sources (named in the order of ``sources``, every source the ranking knows);
    None when an id contains the separator (such a user is served by the whole ranking)."""
    order = sorted(zip(pool.ids, pool.scores.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
    ids = [i for i, _s in order]
    text = CANDS_SEP.join(ids)
    if text.count(CANDS_SEP) != max(len(ids) - 1, 0):
        return None
    names = [s for s in sources if s in pool.masks]
    idx = np.fromiter(map(pool.index.__getitem__, ids), dtype=np.intp, count=len(ids))
    code = np.zeros(len(ids), dtype=np.intp)  # bit b: proposed by names[b]
    for b, n in enumerate(names):
        code |= pool.masks[n][idx].astype(np.intp) << b
    spelled = {c: ",".join(n for b, n in enumerate(names) if c >> b & 1) for c in set(code.tolist())}
    scores = [repr(s) for _i, s in order]
    spelled_sources = list(map(spelled.__getitem__, code.tolist()))
    h = CANDS_HEAD
    record = {"weights": json.dumps(pool.asked), "used": json.dumps(pool.weights), "strategy": pool.strategy,
              "ids": CANDS_SEP.join(ids[:h]), "scores": ",".join(scores[:h]),
              "sources": CANDS_SEP.join(spelled_sources[:h])}
    if len(ids) > h:
        record.update(ids_rest=CANDS_SEP.join(ids[h:]), scores_rest=",".join(scores[h:]),
                      sources_rest=CANDS_SEP.join(spelled_sources[h:]))
    return record


def pool_ids(record: dict[str, str]) -> list[str]:
    """Every id of a stored pool (``pool_record``'s fields, as HGETALL returns them), best first."""
    head, rest = record.get("ids") or "", record.get("ids_rest") or ""
    return (head.split(CANDS_SEP) if head else []) + (rest.split(CANDS_SEP) if rest else [])
