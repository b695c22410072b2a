"""What a model of each trainable type is made of: its hyperparameters (type, bounds, default) and the
validation of a configuration, shared by the API (a 422 naming the field) and the training job.

Pure: no I/O. The registry (aura/models/registry.py) stores the validated configuration with the model;
jobs/train.py builds the model from it (``jobs.train.build``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aura.errors import AuraError


class SpecError(AuraError, ValueError):
    """A configuration a model type does not accept; ``field`` names the offending key."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field, self.msg = field, msg


@dataclass(frozen=True)
class Param:
    kind: type  # int or float
    low: float
    high: float
    default: float
    doc: str


# type -> hyperparameter -> its definition. Types trained by the batch job on a time window.
TRAINABLE: dict[str, dict[str, Param]] = {
    "ease": {"lambda": Param(float, 1e-3, 1e6, 500.0, "L2 penalty of the item-item regression")},
    "item_knn": {"neighbours": Param(int, 1, 2000, 100, "neighbours kept per item (cosine)")},
    "popularity": {},
    "als": {"factors": Param(int, 2, 512, 64, "latent factors"),
            "regularization": Param(float, 0.0, 100.0, 0.05, "L2 penalty"),
            "alpha": Param(float, 0.01, 1000.0, 20.0, "confidence = 1 + alpha * interaction"),
            "iterations": Param(int, 1, 200, 15, "alternating least squares sweeps")},
    "bpr": {"factors": Param(int, 2, 512, 64, "latent factors"),
            "learning_rate": Param(float, 1e-5, 1.0, 0.05, "SGD step"),
            "regularization": Param(float, 0.0, 10.0, 0.01, "L2 penalty"),
            "iterations": Param(int, 1, 1000, 100, "epochs over the interactions")},
    "content_similarity": {"neighbours": Param(int, 1, 2000, 100, "similar items kept per item (TF-IDF cosine)")},
}
# shared by every trainable type: how many items the job publishes per user and per item
PUBLISH: dict[str, Param] = {
    "k_users": Param(int, 1, 1000, 200, "candidates published per user"),
    "k_items": Param(int, 1, 500, 100, "neighbours published per item"),
}
# types the registry knows but the stream trains (online): no batch job
ONLINE = ("online_mf", "content_tfidf", "trending")


def validate(kind: str, config: dict[str, Any]) -> dict[str, float]:
    """``config`` checked against ``kind``'s hyperparameters; returns it complete (defaults filled).
    Raises ``SpecError`` naming the field: unknown type or key, wrong type, out of bounds."""
    if kind not in TRAINABLE:
        if kind in ONLINE:
            raise SpecError("type", f"{kind!r} is trained online by the stream, not by a job; "
                                    f"trainable: {sorted(TRAINABLE)}")
        raise SpecError("type", f"unknown model type {kind!r}; trainable: {sorted(TRAINABLE)}")
    params = {**TRAINABLE[kind], **PUBLISH}
    out: dict[str, float] = {}
    for key, value in config.items():
        p = params.get(key)
        if p is None:
            raise SpecError(f"config.{key}", f"not a hyperparameter of {kind}; known: {sorted(params)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"config.{key}", "must be a number")
        if not math.isfinite(value):
            raise SpecError(f"config.{key}", "must be finite")
        if p.kind is int and float(value) != int(value):
            raise SpecError(f"config.{key}", "must be an integer")
        if not p.low <= value <= p.high:
            raise SpecError(f"config.{key}", f"must be within [{p.low:g}, {p.high:g}]")
        out[key] = p.kind(value)
    for key, p in params.items():
        out.setdefault(key, p.kind(p.default))
    return out


def describe() -> dict[str, dict[str, dict[str, Any]]]:
    """Every trainable type's hyperparameters (the API lists them)."""
    return {kind: {k: {"type": p.kind.__name__, "min": p.low, "max": p.high, "default": p.default, "doc": p.doc}
                   for k, p in {**params, **PUBLISH}.items()} for kind, params in TRAINABLE.items()}
