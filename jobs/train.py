"""Batch job: train a model of a trainable type (EASE, item-kNN, popularity) on the interactions of a
time window and evaluate it on a later window, then register the version with its metrics.

``run`` loads the ``interactions`` table (checkpointed pages, resumable with the job id: the loader
of jobs/ease.py), trains on ``[train_from, train_to)`` and evaluates on ``[train_to, eval_to)``: per
user seen in training, the items they took up later and had not seen (``jobs.algos.time_split``),
scored by HR@10, NDCG@10 and catalog coverage@10 (``evaluate_sets``). The version is registered with
its type, configuration, window and metrics (status training -> ready, or failed with the error), so
versions of one model and of different types compare side by side in ``GET /v1/models/{id}/versions``.
Serving the EASE lists stays the job of jobs/ease.py (the ranking's ``ease`` source).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aura import bootstrap
from aura.errors import AuraError
from aura.models.base import BatchModel
from aura.models.ease import EASE
from aura.models.itemknn import ItemKNN
from aura.models.popularity import Popularity
from aura.models.registry import Registry
from aura.settings import Settings, get_settings
from jobs.algos import evaluate_sets, interaction_matrix, recommend_all, time_split
from jobs.ease import Checkpoint, load_interactions


class TrainError(AuraError, ValueError):
    """A training request the job cannot run (type, configuration, window)."""


def build(kind: str, config: dict[str, Any]) -> BatchModel:
    """A model of ``kind`` from its configuration (unknown keys refused)."""
    allowed = {"ease": {"lambda"}, "item_knn": {"neighbours"}, "popularity": set()}
    if kind not in allowed:
        raise TrainError(f"type {kind!r} is not trained by this job; trainable: {sorted(allowed)}")
    extra = set(config) - allowed[kind]
    if extra:
        raise TrainError(f"unknown configuration for {kind}: {sorted(extra)}")
    if kind == "ease":
        return EASE(float(config.get("lambda", 500.0)))
    if kind == "item_knn":
        return ItemKNN(int(config.get("neighbours", 100)))
    return Popularity()


def say(msg: str) -> None:
    print(f"[job train] {msg}", flush=True)  # noqa: T201 - a batch job reports progress on stdout


def run(s: Settings, session: Any, model_id: str, kind: str, config: dict[str, Any], train_from: int,
        train_to: int, eval_to: int, job_id: str | None = None) -> dict[str, Any]:
    """Train, evaluate and register one version; returns a summary (the registry has the same)."""
    if not train_from < train_to < eval_to:
        raise TrainError("the windows must satisfy train_from < train_to < eval_to")
    model = build(kind, config)
    job_id = job_id or f"train-{model_id}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    ck = Checkpoint(Path(s.home) / "jobs" / s.cassandra.keyspace, job_id)
    registry = Registry(session, s)
    if "version" not in ck.state:
        mv = registry.register(model_id, kind, {**config, "train_from": train_from, "train_to": train_to,
                                                "eval_to": eval_to, "job_id": job_id})
        ck.save(version=mv.version)
    version = int(ck.state["version"])
    say(f"job {job_id}: {model_id} v{version} ({kind})")
    try:
        rows = load_interactions(session, ck)
        train, held = time_split(rows, train_from, train_to, eval_to)
        if not train:
            raise TrainError(f"no interactions in the training window [{train_from}, {train_to})")
        X, users, items = interaction_matrix([(u, i) for u, i, _ in train])
        t0 = time.monotonic()
        model.fit(X)
        model.ids = items  # type: ignore[attr-defined]
        say(f"fit: {len(users)} users x {len(items)} items in {time.monotonic() - t0:.1f}s")
        index = {u: r for r, u in enumerate(users)}
        eval_users = [u for u in held if u in index]
        recs: dict[str, list[str]] = {}
        if eval_users:
            rows_x = X[[index[u] for u in eval_users]]
            top = recommend_all(model, rows_x, 10)
            recs = {u: [items[j] for j in top[r]] for r, u in enumerate(eval_users)}
        metrics = evaluate_sets(recs, {u: held[u] for u in eval_users}, len(items), 10)
        metrics["train_interactions"] = float(len(train))
        say(f"eval on [{train_to}, {eval_to}): HR@10 {metrics['hr@10']:.4f} NDCG@10 {metrics['ndcg@10']:.4f} "
            f"coverage@10 {metrics['coverage@10']:.4f} over {int(metrics['users'])} users")
        registry.finish(model_id, version, artifact=model.to_bytes(), metrics=metrics, window=(train_from, train_to))
        ck.save(stage="done")
        return {"job_id": job_id, "model_id": model_id, "version": version, "type": kind, "metrics": metrics}
    except Exception as exc:
        registry.set_status(model_id, version, "failed", error=f"{type(exc).__name__}: {exc}")
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aura job train")
    p.add_argument("model_id")
    p.add_argument("--type", required=True)
    p.add_argument("--config", default="{}", help="JSON configuration (ease: lambda; item_knn: neighbours)")
    p.add_argument("--train-from", type=int, required=True)
    p.add_argument("--train-to", type=int, required=True)
    p.add_argument("--eval-to", type=int, required=True)
    p.add_argument("--resume", help="job id to resume")
    a = p.parse_args(argv)
    s = get_settings()
    session = bootstrap.cassandra_session(s)
    try:
        run(s, session, a.model_id, a.type, json.loads(a.config), a.train_from, a.train_to, a.eval_to, a.resume)
        return 0
    finally:
        session.cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
