"""Batch job: train a model of any trainable type (EASE, item-kNN, popularity, ALS, BPR, content
similarity; aura/models/specs.py) on the interactions of a time window, evaluate it on a later window,
publish its lists and register the version.

Stages, checkpointed under ``<home>/jobs/<keyspace>/<job_id>/`` so that ``--resume <job_id>`` continues
where a crashed or stopped run left off, each reported as the version's ``progress`` in the registry
(``GET /v1/models/{id}/versions``) and on stdout:

1. ``load``: page through the ``interactions`` table (jobs/checkpoint.py);
2. ``fit``: on ``[train_from, train_to)`` (ALS/BPR report their iterations); the fitted model is saved;
3. ``eval``: per user seen in training, the items they took up in ``[train_to, eval_to)`` and had not
   seen (``jobs.algos.time_split``) -> HR@10, NDCG@10 and catalog coverage@10 (``evaluate_sets``);
4. ``publish`` (with Redis): each item's top neighbours (``recs_item_similar(.., lists)``) and each
   training user's top unseen items (``recs_user_batch(.., lists)``) under the version's own name
   (``registry.lists_name``), in chunks of users (the last chunk done saved). Activating the version
   at a placement then points that placement's ``ease`` source at these lists, and a rollback points it
   back: neither retrains nor rewrites a list;
5. ``register``: artifact, window, metrics and the lists' name; status ready (or failed with the error).
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
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.models.content import ContentSimilarity
from aura.models.ease import EASE
from aura.models.factors import ALS, BPR
from aura.models.itemknn import ItemKNN
from aura.models.popularity import Popularity
from aura.models.registry import Registry, lists_name, restore
from aura.models.specs import SpecError, validate
from aura.settings import Settings, get_settings
from jobs.algos import evaluate_sets, interaction_matrix, recommend_all, time_split
from jobs.checkpoint import Checkpoint, load_interactions, publish


class TrainError(AuraError, ValueError):
    """A training request the job cannot run (type, configuration, window)."""


def build(kind: str, config: dict[str, Any]) -> Any:
    """A model of ``kind`` from its configuration (validated: unknown keys and bad values refused)."""
    try:
        c = validate(kind, config)
    except SpecError as exc:
        raise TrainError(str(exc)) from exc
    if kind == "ease":
        return EASE(c["lambda"])
    if kind == "item_knn":
        return ItemKNN(int(c["neighbours"]))
    if kind == "als":
        return ALS(int(c["factors"]), c["regularization"], int(c["iterations"]), alpha=c["alpha"])
    if kind == "bpr":
        return BPR(int(c["factors"]), c["regularization"], int(c["iterations"]), learning_rate=c["learning_rate"])
    if kind == "content_similarity":
        return ContentSimilarity(int(c["neighbours"]))
    return Popularity()


def say(msg: str) -> None:
    print(f"[job train] {msg}", flush=True)  # noqa: T201 - a batch job reports progress on stdout


def load_catalog(session: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The catalog records (title, categories, tags, text) of ``ids``, 100 per query."""
    out: dict[str, dict[str, Any]] = {}
    st = session.prepare(f"SELECT item_id, title, categories, tags, text, deleted FROM {Tables.CATALOG_ITEMS} "
                         "WHERE item_id IN ?")
    for start in range(0, len(ids), 100):
        for r in session.execute(st, (ids[start:start + 100],)):
            if not r.deleted:
                out[r.item_id] = {"title": r.title, "categories": list(r.categories or []),
                                  "tags": list(r.tags or []), "text": r.text}
    return out


def fit(model: Any, kind: str, X: Any, items: list[str], session: Any, progress: Any) -> Any:
    if kind == "content_similarity":
        return model.fit_items(items, load_catalog(session, items))
    if kind in ("als", "bpr"):
        return model.fit(X, progress=progress)
    model.fit(X)
    if kind == "ease":
        model.ids = items
    return model


def run(s: Settings, session: Any, model_id: str, kind: str, config: dict[str, Any], train_from: int,
        train_to: int, eval_to: int, job_id: str | None = None, redis: Any = None,
        stop_after: str | None = None) -> dict[str, Any]:
    """Train, evaluate, publish (with ``redis``) and register one version; returns a summary (the
    registry has the same). ``stop_after`` (``fit``, ``chunk``) simulates a crash there."""
    if not train_from < train_to < eval_to:
        raise TrainError("the windows must satisfy train_from < train_to < eval_to")
    model = build(kind, config)
    full = validate(kind, config)
    job_id = job_id or f"train-{model_id}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    ck = Checkpoint(Path(s.home) / "jobs" / s.cassandra.keyspace, job_id)
    registry = Registry(session, s)
    if "version" not in ck.state:
        mv = registry.register(model_id, kind, {**full, "train_from": train_from, "train_to": train_to,
                                                "eval_to": eval_to, "job_id": job_id})
        ck.save(version=mv.version)
    version = int(ck.state["version"])
    say(f"job {job_id}: {model_id} v{version} ({kind})")

    def progress(stage: str, done: int, total: int) -> None:
        registry.set_progress(model_id, version, job_id=job_id, stage=stage, done=done, total=total)
        say(f"{stage}: {done}/{total}")

    try:
        progress("load", 0, 0)
        rows = load_interactions(session, ck, (train_from, eval_to))
        train, held = time_split(rows, train_from, train_to, eval_to)
        if not train:
            raise TrainError(f"no interactions in the training window [{train_from}, {train_to})")
        X, users, items = interaction_matrix([(u, i) for u, i, _ in train])
        path = ck.dir / "model.bin"
        if path.exists():
            model = restore(kind, path.read_bytes())
            if kind == "ease":
                model.ids = items
        else:
            t0 = time.monotonic()
            progress("fit", 0, int(full.get("iterations", 1)))
            model = fit(model, kind, X, items, session, lambda n, total: progress("fit", n, total))
            path.write_bytes(model.to_bytes())
            say(f"fit: {len(users)} users x {len(items)} items in {time.monotonic() - t0:.1f}s")
        if stop_after == "fit":
            return {"job_id": job_id, "stopped_after": "fit"}
        metrics = ck.state.get("metrics")
        if metrics is None:
            index = {u: r for r, u in enumerate(users)}
            eval_users = [u for u in held if u in index]
            progress("eval", 0, len(eval_users))
            recs: dict[str, list[str]] = {}
            if eval_users:
                top = recommend_all(model, X[[index[u] for u in eval_users]], 10)
                recs = {u: [items[j] for j in top[r]] for r, u in enumerate(eval_users)}
            metrics = evaluate_sets(recs, {u: held[u] for u in eval_users}, len(items), 10)
            metrics["train_interactions"] = float(len(train))
            ck.save(metrics=metrics)
            say(f"eval on [{train_to}, {eval_to}): HR@10 {metrics['hr@10']:.4f} NDCG@10 {metrics['ndcg@10']:.4f} "
                f"coverage@10 {metrics['coverage@10']:.4f} over {int(metrics['users'])} users")
        name = None
        if redis is not None:
            name = lists_name(model_id, version)
            if not publish(redis, RedisKeys(s.redis.prefix), ck, model, X, users, items, name,
                           int(full["k_users"]), int(full["k_items"]), progress,
                           max_chunks=1 if stop_after == "chunk" else None):
                return {"job_id": job_id, "stopped_after": "chunk"}
        registry.finish(model_id, version, artifact=model.to_bytes(), metrics=metrics, window=(train_from, train_to),
                        lists=name)
        progress("done", 1, 1)
        ck.save(stage="done")
        return {"job_id": job_id, "model_id": model_id, "version": version, "type": kind, "metrics": metrics,
                "lists": name}
    except Exception as exc:
        registry.set_status(model_id, version, "failed", error=f"{type(exc).__name__}: {exc}")
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aura job train")
    p.add_argument("model_id")
    p.add_argument("--type", required=True)
    p.add_argument("--config", default="{}", help="JSON hyperparameters (aura/models/specs.py)")
    p.add_argument("--train-from", type=int, required=True)
    p.add_argument("--train-to", type=int, required=True)
    p.add_argument("--eval-to", type=int, required=True)
    p.add_argument("--resume", help="job id to resume")
    p.add_argument("--no-publish", action="store_true", help="evaluate and register only (no served lists)")
    a = p.parse_args(argv)
    s = get_settings()
    session = bootstrap.cassandra_session(s)
    redis = None if a.no_publish else bootstrap.redis_sync(s)
    try:
        run(s, session, a.model_id, a.type, json.loads(a.config), a.train_from, a.train_to, a.eval_to, a.resume,
            redis=redis)
        return 0
    finally:
        session.cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
