"""The model registry: models with type, configuration, version, training window, offline metrics and
status; the active version and blend weights per placement.

Owns the ``models`` and ``model_placements`` Cassandra tables and the ``recs_placement`` Redis hashes
(the serving copy of the placement table). Artifacts are stored as bytes (every model type has
``to_bytes``/``from_bytes``; ``MODEL_TYPES`` lists them and a contract test round-trips each): inline
in the row when small, else in a file under ``<home>/models`` whose path the row keeps.

Synchronous (jobs, CLI); the API calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aura.errors import AuraError
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.models.content import ContentModel, ContentSimilarity
from aura.models.ease import EASE
from aura.models.factors import ALS, BPR
from aura.models.itemknn import ItemKNN
from aura.models.mf import OnlineMF
from aura.models.popularity import Popularity
from aura.models.trending import Trending
from aura.settings import Settings

# type -> the class that restores it (``from_bytes``)
MODEL_TYPES: dict[str, type[Any]] = {
    "ease": EASE,
    "item_knn": ItemKNN,
    "popularity": Popularity,
    "online_mf": OnlineMF,
    "content_tfidf": ContentModel,
    "trending": Trending,
    "als": ALS,
    "bpr": BPR,
    "content_similarity": ContentSimilarity,
}
STATUSES = ("training", "ready", "active", "failed", "retired")
STRATEGY_FIELD = "strategy_bandit"  # field of ``recs_placement``: the bandit picking the placement's method
BATCH_FIELD = "batch"  # field of ``recs_placement``: the name of the batch lists its ``ease`` source reads
INLINE_MAX_BYTES = 2_000_000


class RegistryError(AuraError, ValueError):
    """Unknown model type, model or version."""


def model_class(kind: str) -> type[Any]:
    if kind not in MODEL_TYPES:
        raise RegistryError(f"unknown model type {kind!r}; known: {sorted(MODEL_TYPES)}")
    return MODEL_TYPES[kind]


def restore(kind: str, data: bytes) -> Any:
    """Bytes -> model object of ``kind``."""
    return model_class(kind).from_bytes(data)


@dataclass
class ModelVersion:
    model_id: str
    version: int
    type: str
    config: dict[str, Any] = field(default_factory=dict)
    window_start: int | None = None
    window_end: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "training"
    created_at: int = 0
    updated_at: int = 0
    has_artifact: bool = False
    progress: dict[str, Any] = field(default_factory=dict)  # the training job's stage and counts
    lists: str | None = None  # the name its published lists are stored under (``lists_name``)

    def doc(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("model_id", "version", "type", "config", "window_start", "window_end",
                                              "metrics", "status", "created_at", "updated_at", "has_artifact",
                                              "progress", "lists")}


def lists_name(model_id: str, version: int) -> str:
    """The name a version's published lists (``recs_user_batch`` / ``recs_item_similar``) are stored under."""
    return f"m.{model_id}.v{version}"


COLUMNS = ("model_id, version, type, config, window_start, window_end, metrics, status, created_at, updated_at, "
           "artifact, progress, lists")


class Registry:
    def __init__(self, session: Any, settings: Settings, redis: Any | None = None) -> None:
        self.session, self.s, self.redis = session, settings, redis
        self.keys = RedisKeys(settings.redis.prefix)
        self.dir = Path(settings.home) / "models" / settings.cassandra.keyspace

    def _row(self, r: Any) -> ModelVersion:
        has = r.artifact is not None and len(r.artifact) > 0
        return ModelVersion(r.model_id, r.version, r.type, json.loads(r.config or "{}"), r.window_start, r.window_end,
                            dict(r.metrics or {}), r.status, r.created_at or 0, r.updated_at or 0, has,
                            json.loads(r.progress) if r.progress else {}, r.lists)

    def versions(self, model_id: str) -> list[ModelVersion]:
        rows = self.session.execute(f"SELECT {COLUMNS} FROM {Tables.MODELS} WHERE model_id = %s", (model_id,))
        return [self._row(r) for r in rows]

    def models(self) -> list[ModelVersion]:
        """The latest version of every model."""
        rows = self.session.execute(f"SELECT {COLUMNS} FROM {Tables.MODELS} PER PARTITION LIMIT 1")
        return sorted((self._row(r) for r in rows), key=lambda m: m.model_id)

    def get(self, model_id: str, version: int | None = None) -> ModelVersion:
        vs = self.versions(model_id)
        for v in vs:
            if version is None or v.version == version:
                return v
        raise RegistryError(f"no model {model_id!r} version {version}")

    def register(self, model_id: str, kind: str, config: dict[str, Any]) -> ModelVersion:
        model_class(kind)
        existing = self.versions(model_id)
        version = (existing[0].version + 1) if existing else 1
        now = int(time.time() * 1000)
        self.session.execute(
            f"INSERT INTO {Tables.MODELS} (model_id, version, type, config, status, metrics, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) IF NOT EXISTS",
            (model_id, version, kind, json.dumps(config, sort_keys=True), "training", {}, now, now))
        return self.get(model_id, version)

    def finish(self, model_id: str, version: int, *, artifact: bytes | None, metrics: dict[str, float],
               window: tuple[int | None, int | None], status: str = "ready", lists: str | None = None) -> ModelVersion:
        blob = artifact
        if artifact is not None and len(artifact) > INLINE_MAX_BYTES:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f"{model_id}-v{version}.bin"
            path.write_bytes(artifact)
            blob = b"file:" + str(path).encode()
        self.session.execute(
            f"UPDATE {Tables.MODELS} SET artifact = %s, metrics = %s, window_start = %s, window_end = %s, "
            "status = %s, updated_at = %s, lists = %s WHERE model_id = %s AND version = %s",
            (blob, {k: float(v) for k, v in metrics.items()}, window[0], window[1], status,
             int(time.time() * 1000), lists, model_id, version))
        return self.get(model_id, version)

    def set_status(self, model_id: str, version: int, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise RegistryError(f"unknown status {status!r}")
        self.session.execute(
            f"UPDATE {Tables.MODELS} SET status = %s, updated_at = %s WHERE model_id = %s AND version = %s",
            (status, int(time.time() * 1000), model_id, version))
        if error:
            cfg = self.get(model_id, version).config
            cfg["error"] = error[:500]
            self.session.execute(f"UPDATE {Tables.MODELS} SET config = %s WHERE model_id = %s AND version = %s",
                                 (json.dumps(cfg), model_id, version))

    def artifact(self, model_id: str, version: int) -> bytes:
        row = self.session.execute(f"SELECT artifact FROM {Tables.MODELS} WHERE model_id = %s AND version = %s",
                                   (model_id, version)).one()
        if row is None or not row.artifact:
            raise RegistryError(f"model {model_id!r} v{version} has no artifact")
        data = bytes(row.artifact)
        if data.startswith(b"file:"):
            return Path(data[5:].decode()).read_bytes()
        return data

    def load(self, model_id: str, version: int | None = None) -> tuple[ModelVersion, Any]:
        mv = self.get(model_id, version)
        return mv, restore(mv.type, self.artifact(model_id, mv.version))

    def activate(self, placement: str, model_id: str, version: int, weights: dict[str, float] | None,
                 log: bool = True) -> None:
        """Serve ``model_id`` v``version`` (and blend ``weights``) at ``placement``: its published lists
        become the placement's ``ease`` source (``BATCH_FIELD``), and the activation is logged (a
        rollback walks the log back)."""
        mv = self.get(model_id, version)
        if mv.status not in ("ready", "active"):
            raise RegistryError(f"model {model_id!r} v{version} is {mv.status}, not ready")
        now = int(time.time() * 1000)
        wj = json.dumps(weights) if weights else None
        lists = mv.lists or ("ease" if model_id == "ease" and mv.type == "ease" else None)
        self.session.execute(
            f"INSERT INTO {Tables.MODEL_PLACEMENTS} (placement, model_id, version, weights, updated_at) "
            "VALUES (%s, %s, %s, %s, %s)", (placement, model_id, version, wj, now))
        if log:
            self.session.execute(
                f"INSERT INTO {Tables.MODEL_PLACEMENT_LOG} (placement, at, model_id, version, weights, lists, action) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'activate')", (placement, now, model_id, version, wj, lists))
        self.set_status(model_id, version, "active")
        if self.redis is not None:
            key = self.keys.recs_placement(placement)
            strategy = self.redis.hget(key, STRATEGY_FIELD)  # not the model's: kept
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(key)
            mapping = {"model_id": model_id, "version": str(version), "type": mv.type}
            if strategy:
                mapping[STRATEGY_FIELD] = strategy
            if wj:
                mapping["weights"] = wj
            if lists:
                mapping[BATCH_FIELD] = lists
            pipe.hset(key, mapping=mapping)
            pipe.execute()

    def history(self, placement: str) -> list[dict[str, Any]]:
        """Every activation of ``placement``, newest first (``action``: activate, or rolled_back)."""
        rows = self.session.execute(f"SELECT at, model_id, version, weights, lists, action FROM "
                                    f"{Tables.MODEL_PLACEMENT_LOG} WHERE placement = %s", (placement,))
        return [{"at": r.at, "model_id": r.model_id, "version": r.version,
                 "weights": json.loads(r.weights) if r.weights else None, "lists": r.lists, "action": r.action}
                for r in rows]

    def rollback(self, placement: str) -> dict[str, Any]:
        """Undo the placement's current activation: it is marked ``rolled_back`` and the activation
        before it is served again (its version and weights). Repeated rollbacks walk further back."""
        live = [h for h in self.history(placement) if h["action"] == "activate"]
        if len(live) < 2:
            raise RegistryError(f"placement {placement!r} has no earlier activation to roll back to")
        current, previous = live[0], live[1]
        self.session.execute(f"UPDATE {Tables.MODEL_PLACEMENT_LOG} SET action = 'rolled_back' WHERE placement = %s "
                             "AND at = %s", (placement, current["at"]))
        mv = self.get(previous["model_id"], previous["version"])
        if mv.status == "retired":
            self.set_status(mv.model_id, mv.version, "ready")
        self.activate(placement, previous["model_id"], previous["version"], previous["weights"], log=False)
        still = {(h["model_id"], h["version"]) for h in live[1:]}
        if (current["model_id"], current["version"]) not in still and \
                (current["model_id"], current["version"]) not in self._served_elsewhere(placement):
            self.set_status(current["model_id"], current["version"], "ready")
        return {"placement": placement, "rolled_back": current, "serving": previous}

    def _served_elsewhere(self, placement: str) -> set[tuple[str, int]]:
        return {(p["model_id"], p["version"]) for name, p in self.placements().items() if name != placement}

    def set_weights(self, placement: str, weights: dict[str, float] | None) -> dict[str, Any]:
        """The placement's blend weights, without training or activating a model (None: the defaults)."""
        now = int(time.time() * 1000)
        wj = json.dumps(weights) if weights else None
        self.session.execute(f"UPDATE {Tables.MODEL_PLACEMENTS} SET weights = %s, updated_at = %s "
                             "WHERE placement = %s", (wj, now, placement))
        if self.redis is not None:
            key = self.keys.recs_placement(placement)
            if wj:
                self.redis.hset(key, "weights", wj)
            else:
                self.redis.hdel(key, "weights")
        return {"placement": placement, "weights": weights, "updated_at": now}

    def set_progress(self, model_id: str, version: int, **progress: Any) -> None:
        self.session.execute(f"UPDATE {Tables.MODELS} SET progress = %s, updated_at = %s WHERE model_id = %s "
                             "AND version = %s", (json.dumps(progress), int(time.time() * 1000), model_id, version))

    # ------------------------------------------------------------------ models created through the API

    def create(self, model_id: str, kind: str, config: dict[str, Any], description: str = "") -> bool:
        """Record a model (type, validated configuration); False when the id is taken."""
        model_class(kind)
        row = self.session.execute(
            f"INSERT INTO {Tables.MODEL_SPECS} (model_id, type, config, description, created_at) "
            "VALUES (%s, %s, %s, %s, %s) IF NOT EXISTS",
            (model_id, kind, json.dumps(config, sort_keys=True), description, int(time.time() * 1000))).one()
        return bool(row[0])

    def spec(self, model_id: str) -> dict[str, Any] | None:
        r = self.session.execute(f"SELECT model_id, type, config, description, created_at FROM "
                                 f"{Tables.MODEL_SPECS} WHERE model_id = %s", (model_id,)).one()
        if r is None:
            return None
        return {"model_id": r.model_id, "type": r.type, "config": json.loads(r.config or "{}"),
                "description": r.description or "", "created_at": r.created_at}

    def delete_spec(self, model_id: str) -> None:
        self.session.execute(f"DELETE FROM {Tables.MODEL_SPECS} WHERE model_id = %s", (model_id,))

    def set_strategy(self, placement: str, bandit_id: str | None) -> None:
        """Name the strategy bandit of ``placement`` (None: none): Cassandra, then the Redis hash the
        API reads (``STRATEGY_FIELD`` of ``recs_placement``)."""
        self.session.execute(f"INSERT INTO {Tables.PLACEMENT_STRATEGY} (placement, bandit_id, updated_at) "
                             "VALUES (%s, %s, %s)", (placement, bandit_id, int(time.time() * 1000)))
        if self.redis is not None:
            key = self.keys.recs_placement(placement)
            if bandit_id:
                self.redis.hset(key, STRATEGY_FIELD, bandit_id)
            else:
                self.redis.hdel(key, STRATEGY_FIELD)

    def placements(self) -> dict[str, dict[str, Any]]:
        rows = self.session.execute(f"SELECT placement, model_id, version, weights, updated_at FROM "
                                    f"{Tables.MODEL_PLACEMENTS}")
        return {r.placement: {"model_id": r.model_id, "version": r.version,
                              "weights": json.loads(r.weights) if r.weights else None, "updated_at": r.updated_at}
                for r in rows}
