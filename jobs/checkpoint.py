"""What the batch training jobs share: the job's checkpoint directory, the resumable loader of the
``interactions`` table and the publisher of a model's lists.

A job's directory (``<home>/jobs/<keyspace>/<job_id>/``) holds ``state.json`` (stage, paging state,
chunk done) and numpy artifacts, so ``--resume <job_id>`` continues where a crashed or stopped run left
off. ``publish`` writes each item's top neighbours (``recs_item_similar``) and each user's top unseen
items (``recs_user_batch``) under a lists name, in chunks of users, the last chunk done saved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cassandra.query import SimpleStatement

from aura.keys import RedisKeys
from aura.layout import Tables
from aura.models.base import top_k

PAGE = 5000  # interactions per Cassandra page
CHUNK = 500  # users per published chunk


def say(msg: str) -> None:
    print(f"[job] {msg}", flush=True)  # noqa: T201 - a batch job reports progress on stdout


class Checkpoint:
    """A job's directory: ``state.json`` (stage, paging state, chunk) plus numpy artifacts."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.dir = root / job_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.job_id = job_id
        self.path = self.dir / "state.json"
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {"stage": "load"}

    def save(self, **updates: Any) -> None:
        self.state.update(updates)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.path)

    def save_rows(self, rows: list[tuple[str, str, int]]) -> None:
        arr = np.array(rows, dtype=object) if rows else np.zeros((0, 3), dtype=object)
        tmp = self.dir / "rows.tmp.npy"
        np.save(tmp, arr, allow_pickle=True)
        tmp.replace(self.dir / "rows.npy")

    def load_rows(self) -> list[tuple[str, str, int]]:
        p = self.dir / "rows.npy"
        if not p.exists():
            return []
        return [(str(u), str(i), int(t)) for u, i, t in np.load(p, allow_pickle=True)]


def load_interactions(session: Any, ck: Checkpoint,
                      window: tuple[int, int] | None = None) -> list[tuple[str, str, int]]:
    """Page through the interactions table, checkpointing rows and the paging state; ``window``
    [lo, hi) filters on the event time in Cassandra (still a scan of every partition, but only the
    window's rows cross the wire)."""
    rows = ck.load_rows()
    paging = bytes.fromhex(ck.state["paging"]) if ck.state.get("paging") else None
    if ck.state.get("loaded"):
        return rows
    where = "" if window is None else f" WHERE event_time >= {int(window[0])} AND event_time < {int(window[1])} " \
                                       "ALLOW FILTERING"
    stmt = SimpleStatement(f"SELECT user_id, item_id, event_time FROM {Tables.INTERACTIONS}{where}", fetch_size=PAGE)
    started, n0 = time.monotonic(), len(rows)
    pages = 0
    while True:
        rs = session.execute(stmt, paging_state=paging)
        page = rs.current_rows
        rows += [(r.user_id, r.item_id, int(r.event_time)) for r in page]
        paging = rs.paging_state
        pages += 1
        if pages % 10 == 0 or paging is None:
            ck.save_rows(rows)
            ck.save(paging=paging.hex() if paging else None, loaded=paging is None)
            rate = (len(rows) - n0) / max(time.monotonic() - started, 1e-6)
            say(f"load: {len(rows)} interactions ({rate:,.0f} rows/s)")
        if paging is None:
            return rows


def publish(redis: Any, keys: RedisKeys, ck: Checkpoint, model: Any, X: Any, users: list[str], items: list[str],
            name: str, k_users: int, k_items: int, progress: Callable[[str, int, int], None],
            positive_only: bool = True, chunk: int = CHUNK, max_chunks: int | None = None) -> bool:
    """Item lists, then user lists in chunks of ``chunk`` users (resumable at the last chunk done);
    ``positive_only`` keeps only the unseen items with a score above 0 in a user's list. Stops after
    ``max_chunks`` chunks (a simulated crash); True when every user's list is published."""
    if not ck.state.get("items_published") and hasattr(model, "item_neighbours"):
        neigh = model.item_neighbours(k_items)
        pipe = redis.pipeline(transaction=False)
        for r, lst in enumerate(neigh):
            key = keys.recs_item_similar(items[r], name)
            pipe.delete(key)
            if lst:
                pipe.zadd(key, {items[j]: s_ for j, s_ in lst})
            if len(pipe) >= 2000:
                pipe.execute()
        pipe.execute()
        ck.save(items_published=True)
        say(f"publish: {len(items)} item lists as {name}")
    done = int(ck.state.get("users_done", 0))
    for n, start in enumerate(range(done, len(users), chunk)):
        if max_chunks is not None and n >= max_chunks:
            return False
        rows = X[start:start + chunk]
        scores = model.scores(rows)
        seen = rows.toarray() > 0
        idx = top_k(scores, k_users, exclude=seen)
        pipe = redis.pipeline(transaction=False)
        for r in range(rows.shape[0]):
            key = keys.recs_user_batch(users[start + r], name)
            pipe.delete(key)
            cands = {items[j]: float(scores[r, j]) for j in idx[r]
                     if not seen[r, j] and np.isfinite(scores[r, j]) and (scores[r, j] > 0 or not positive_only)}
            if cands:
                pipe.zadd(key, cands)
        pipe.execute()
        end = min(start + chunk, len(users))
        ck.save(users_done=end)
        progress("publish", end, len(users))
    return True
