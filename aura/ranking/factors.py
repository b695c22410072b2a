"""The online MF item factors as a reader ranks with them: one float32 matrix per process, reloaded
from ``recs_mf_items`` (written by streams/usersignals.py after every batch: the items whose factors
moved) at most every ``refresh_s``, and a user's MF candidates scored from it at read time.

Why at read time: a user's MF candidates are ``V @ u`` over the catalog, a function of two pieces of
state the stream already keeps (the user's factors ``u`` in ``recs_user_state``, written with every
batch of theirs, and the item factors). Materialising the top 200 per user cost the worker a ranking of
the whole catalog and Redis a 200-member sorted set rewrite for every active user and batch (the dearest
command of the stream, and 19 KB of memory per user), for lists most users never read. Here a request
pays one HGET of 132 bytes and one matrix-vector product (about 10 us for 2,000 items, 1 ms for
100,000), and the user's factors it reads are never older than the user's last applied batch.

The reload: the first ranking of a process waits for it; later ones are served from the matrix they
find while a reload runs behind them (one at a time). HSCAN in pages of ``SCAN_COUNT`` (a big catalog
never blocks Redis for long); every row decoded with one ``bytes.fromhex`` and one ``np.frombuffer``.
The matrix is at most ``refresh_s`` (plus a reload) older than the worker's: item factors move slowly
(a small step per positive), the user's part of the score is current.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import numpy as np

from aura.keys import RedisKeys
from aura.models.mf import scores_of, top_k
from aura.state.cooccurrence import decode_vector

log = logging.getLogger(__name__)

SCAN_COUNT = 2000  # fields per HSCAN page


def factor_matrix(raw: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """``recs_mf_items`` (item -> hex float32 factors, bias last) -> ids and one matrix; rows of
    another width than the most common one (a dimension change half-applied) are left out."""
    if not raw:
        return [], np.zeros((0, 1), dtype=np.float32)
    widths: dict[int, int] = {}
    for blob in raw.values():
        widths[len(blob)] = widths.get(len(blob), 0) + 1
    width = max(widths, key=lambda w: (widths[w], w))
    ids = [i for i, blob in raw.items() if len(blob) == width]
    flat = bytes.fromhex("".join(raw[i] for i in ids))
    return ids, np.frombuffer(flat, dtype=np.float32).reshape(len(ids), width // 8)


class ItemFactors:
    """This process's copy of the MF item factors; ``top`` scores a user's factors against it."""

    def __init__(self, redis: Any, keys: RedisKeys, refresh_s: float = 2.0) -> None:
        self.redis, self.keys, self.refresh_s = redis, keys, refresh_s
        self.ids: list[str] = []
        self.matrix = np.zeros((0, 1), dtype=np.float32)
        self.loaded_at = -math.inf
        self.loading: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Reload when older than ``refresh_s``: awaited the first time, behind the caller after."""
        if time.monotonic() - self.loaded_at < self.refresh_s:
            return
        if self.loading is None or self.loading.done():
            self.loading = asyncio.create_task(self.load())
            self.loading.add_done_callback(_report)
        if self.loaded_at == -math.inf:
            await asyncio.shield(self.loading)

    async def load(self) -> None:
        raw: dict[str, str] = {}
        cursor = 0
        while True:
            cursor, page = await self.redis.hscan(self.keys.recs_mf_items(), cursor, count=SCAN_COUNT)
            raw.update(page)
            if not cursor:
                break
        self.ids, self.matrix = factor_matrix(raw)
        self.loaded_at = time.monotonic()

    def top(self, user_factors: str | None, n: int) -> tuple[list[str], np.ndarray]:
        """The ``n`` best items for a user's factors as stored (hex; None or empty: no candidates), best
        first: the user's MF candidates. Factors of another dimension than the items' give none."""
        if not user_factors or not self.ids:
            return [], np.zeros(0)
        u = decode_vector(user_factors)
        if u.shape[0] != self.matrix.shape[1] - 1:
            return [], np.zeros(0)
        return top_k(self.ids, scores_of(self.matrix, u), n)


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("reloading the MF item factors failed (kept the previous ones): %r", task.exception())
