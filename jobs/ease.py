"""Batch job: rebuild EASE (lambda = 500) from the interaction history in Cassandra and publish it.

Stages, each checkpointed under ``<home>/jobs/<job_id>/`` so that ``--resume <job_id>`` continues
where a crashed or stopped run left off:

1. ``load``: page through the ``interactions`` table (paging state + rows saved every few pages);
2. ``eval``: offline HR@10/NDCG@10 with the last interaction of each user held out (optional);
3. ``fit``: EASE on every interaction (the item-item matrix ``B`` saved);
4. ``publish``: per item the top-K of ``B`` (``recs_item_similar(.., ease)``) and per user the top
   candidates (``recs_user_batch(.., ease)``), in chunks of users (the last chunk done saved);
5. ``register``: the version's artifact, window and metrics in the model registry (status ready),
   and, with ``--activate PLACEMENT``, made active there.

Progress goes to stdout (rows/s, stage, chunk). Owns the ``ease`` batch keys in Redis.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from aura import bootstrap
from aura.keys import RedisKeys
from aura.models.ease import EASE
from aura.models.registry import Registry
from aura.settings import Settings, get_settings
from jobs.algos import evaluate, interaction_matrix, leave_last_out, recommend_all
from jobs.checkpoint import Checkpoint, load_interactions, publish


def say(msg: str) -> None:
    print(f"[job ease] {msg}", flush=True)  # noqa: T201 - a batch job reports progress on stdout


def run(s: Settings, session: Any, redis: Any, *, job_id: str | None = None, lam: float = 500.0, k_items: int = 100,
        k_users: int | None = None, evaluate_first: bool = True, activate: str | None = None,
        chunk: int = 500, stop_after: str | None = None,
        window: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns a summary. ``window`` [lo, hi) of event times limits the
    interactions learnt from (all by default); ``stop_after`` (a stage name) simulates a crash."""
    keys = RedisKeys(s.redis.prefix)
    job_id = job_id or f"ease-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    ck = Checkpoint(Path(s.home) / "jobs" / s.cassandra.keyspace, job_id)
    say(f"job {job_id}: stage {ck.state['stage']}")
    registry = Registry(session, s)
    if "version" not in ck.state:
        mv = registry.register("ease", "ease", {"lambda": lam, "k_items": k_items, "job_id": job_id})
        ck.save(version=mv.version)
    version = int(ck.state["version"])
    k_users = k_users or s.recs.candidates
    try:
        rows = load_interactions(session, ck, window)
        if not rows:
            raise RuntimeError("no interactions to learn from")
        if stop_after == "load":
            return {"job_id": job_id, "stopped_after": "load"}
        window = (min(t for _, _, t in rows), max(t for _, _, t in rows))
        metrics = ck.state.get("metrics") or {}
        if evaluate_first and not metrics:
            train, test = leave_last_out(rows)
            X, users, items = interaction_matrix([(u, i) for u, i, _ in train])
            model = EASE(lam).fit(X)
            idx = recommend_all(model, X, 10)
            recs = {u: [items[j] for j in idx[r]] for r, u in enumerate(users)}
            known = set(users)
            metrics = evaluate(recs, {u: i for u, i in test.items() if u in known}, 10)
            ck.save(metrics=metrics)
            say(f"eval (leave-last-out): HR@10 {metrics['hr@10']:.4f} NDCG@10 {metrics['ndcg@10']:.4f}")
        X, users, items = interaction_matrix([(u, i) for u, i, _ in rows])
        bpath = ck.dir / "B.npy"
        if bpath.exists():
            model = EASE(lam)
            model.B = np.load(bpath)
        else:
            t0 = time.monotonic()
            model = EASE(lam).fit(X)
            np.save(bpath, model.B)
            say(f"fit: {len(users)} users x {len(items)} items in {time.monotonic() - t0:.1f}s")
        model.ids = items
        ck.save(stage="publish")
        if stop_after == "fit":
            return {"job_id": job_id, "stopped_after": "fit"}
        if not publish(redis, keys, ck, model, X, users, items, "ease", k_users, k_items,
                       lambda stage, done, total: say(f"{stage}: users {done}/{total}"), positive_only=False,
                       chunk=chunk, max_chunks=1 if stop_after == "chunk" else None):
            return {"job_id": job_id, "stopped_after": "chunk"}
        registry.finish("ease", version, artifact=model.to_bytes(), metrics=metrics, window=window, lists="ease")
        if activate:
            registry.redis = bootstrap.redis_sync(s)
            registry.activate(activate, "ease", version, None)
        ck.save(stage="done")
        say(f"done: ease v{version} ready ({len(rows)} interactions, window {window[0]}..{window[1]})")
        return {"job_id": job_id, "version": version, "metrics": metrics, "users": len(users), "items": len(items),
                "interactions": len(rows)}
    except Exception as exc:
        registry.set_status("ease", version, "failed", error=f"{type(exc).__name__}: {exc}")
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aura job ease")
    p.add_argument("--resume", help="job id to resume")
    p.add_argument("--lam", type=float, default=500.0)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--activate", help="make the new version active at this placement")
    p.add_argument("--every", type=float, default=None, help="repeat every N seconds (a schedule)")
    a = p.parse_args(argv)
    s = get_settings()
    session, redis = bootstrap.cassandra_session(s), bootstrap.redis_sync(s)
    try:
        while True:
            run(s, session, redis, job_id=a.resume, lam=a.lam, evaluate_first=not a.no_eval, activate=a.activate)
            if a.every is None:
                return 0
            a.resume = None
            time.sleep(a.every)
    finally:
        session.cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
