"""Online matrix factorization for implicit feedback: numpy SGD on the BPR pairwise loss.

Why not ``river.reco.BiasedMF``: it regresses explicit ratings (every event here is an implicit
positive, so it would learn a constant without negatives), keeps factors in per-id dicts that cannot
be scored against the whole catalog in one matrix product, and lives inside one process. Here item
factors are one float32 matrix (one ``V @ u`` ranks the catalog), user factors are small vectors kept
in the user's Redis hash, and an update is a handful of numpy ops.

Progressive validation: before each update the model predicts whether the positive outranks the
sampled negative; the running share of wrong predictions is the online learner's error. The stream
learns it (streams/usersignals.py keeps the factors in Redis); the registry stores its bytes.
"""

from __future__ import annotations

import io
import math
import zlib
from typing import Any

import numpy as np


def _init_vector(item: str, dim: int, scale: float) -> np.ndarray:
    """A deterministic initial vector per id, so every worker starts an item the same way."""
    rng = np.random.default_rng(zlib.crc32(item.encode()))
    return (rng.standard_normal(dim) * scale).astype(np.float32)


class OnlineMF:
    """BPR matrix factorization with ``learn_one(user, item)`` / ``score(user)`` (river's verbs)."""

    kind = "online_mf"

    def __init__(self, dim: int = 32, lr: float = 0.05, reg: float = 0.005, n_neg: int = 2,
                 init_scale: float = 0.1, seed: int = 0) -> None:
        self.dim, self.lr, self.reg, self.n_neg, self.init_scale = dim, lr, reg, n_neg, init_scale
        self.rng = np.random.default_rng(seed)
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.V = np.zeros((0, dim + 1), dtype=np.float32)  # factors, bias in the last column
        self.users: dict[str, np.ndarray] = {}
        self.pv_n = 0
        self.pv_err = 0

    # ----------------------------------------------------------------------------------- items

    def item_row(self, item: str) -> int:
        row = self.index.get(item)
        if row is None:
            row = len(self.ids)
            self.index[item] = row
            self.ids.append(item)
            if row >= self.V.shape[0]:
                grown = np.zeros((max(16, 2 * self.V.shape[0]), self.dim + 1), dtype=np.float32)
                grown[: self.V.shape[0]] = self.V
                self.V = grown
            self.V[row, : self.dim] = _init_vector(item, self.dim, self.init_scale)
            self.V[row, self.dim] = 0.0
        return row

    def set_item(self, item: str, vector: np.ndarray) -> None:
        row = self.item_row(item)  # first: it may replace self.V with a grown array
        self.V[row] = vector

    def user_vector(self, user: str) -> np.ndarray:
        vec = self.users.get(user)
        if vec is None:
            vec = self.users[user] = _init_vector("u:" + user, self.dim, self.init_scale)
        return vec

    # -------------------------------------------------------------------------------- learning

    def learn_one(self, user: str, item: str, weight: float = 1.0) -> float:
        """One positive ``(user, item)``: ``n_neg`` BPR steps; returns the pre-update pairwise error."""
        i = self.item_row(item)
        n = len(self.ids)
        if n < 2:
            return 0.0
        u = self.user_vector(user)
        d, lr, reg = self.dim, self.lr, self.reg
        shrink = 1.0 - lr * reg
        V = self.V
        errors = 0
        for _ in range(self.n_neg):
            j = int(self.rng.integers(n))
            if j == i:
                continue
            # the BPR step with as few numpy calls as possible (each costs ~1 us at this
            # size, more than its arithmetic): rows updated in place through views, bias included
            vi, vj = V[i], V[j]
            diff = vi - vj
            x = float(u @ diff[:d]) + float(diff[d])
            errors += x <= 0
            g = weight / (1.0 + math.exp(min(x, 30.0)))  # sigmoid(-x)
            du = diff[:d] * g
            du -= u * reg
            step = u * (lr * g)
            bi, bj = float(vi[d]), float(vj[d])
            vi *= shrink
            vi[:d] += step
            vj *= shrink
            vj[:d] -= step
            vi[d] = bi + lr * (g - reg * bi)
            vj[d] = bj + lr * (-g - reg * bj)
            du *= lr
            u += du
        self.pv_n += self.n_neg
        self.pv_err += errors
        return errors / max(1, self.n_neg)

    # --------------------------------------------------------------------------------- scoring

    def score(self, user: str) -> np.ndarray:
        """Scores of every known item (in ``self.ids`` order) for ``user``."""
        n = len(self.ids)
        u = self.users.get(user)
        if u is None:
            return self.V[:n, self.dim].copy()
        return self.V[:n, : self.dim] @ u + self.V[:n, self.dim]

    def top_arrays(self, user: str, k: int, exclude: set[str] | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` best items for ``user`` (ids, and their scores as float64), best first."""
        scores = self.score(user)
        if exclude:
            for item in exclude:
                row = self.index.get(item)
                if row is not None:
                    scores[row] = -np.inf
        k = min(k, len(scores))
        if k <= 0:
            return [], np.zeros(0)
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx])]
        vals = scores[idx]
        keep = np.isfinite(vals)
        if not keep.all():
            idx, vals = idx[keep], vals[keep]
        ids = self.ids
        return [ids[r] for r in idx.tolist()], vals.astype(np.float64)

    def top(self, user: str, k: int, exclude: set[str] | None = None) -> list[tuple[str, float]]:
        ids, vals = self.top_arrays(user, k, exclude)
        return list(zip(ids, vals.tolist(), strict=True))

    @property
    def pv_error(self) -> float:
        return self.pv_err / self.pv_n if self.pv_n else 0.0

    # ------------------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        users = sorted(self.users)
        np.savez_compressed(
            buf, V=self.V[: len(self.ids)], ids=np.array(self.ids, dtype=object),
            users=np.array(users, dtype=object),
            U=np.stack([self.users[u] for u in users]) if users else np.zeros((0, self.dim), np.float32),
            meta=np.array([self.dim, self.lr, self.reg, self.n_neg, self.init_scale, self.pv_n, self.pv_err]),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> OnlineMF:
        z = np.load(io.BytesIO(data), allow_pickle=True)
        dim, lr, reg, n_neg, init_scale, pv_n, pv_err = z["meta"].tolist()
        model = cls(int(dim), lr, reg, int(n_neg), init_scale)
        model.ids = [str(x) for x in z["ids"]]
        model.index = {x: i for i, x in enumerate(model.ids)}
        model.V = z["V"].astype(np.float32).copy()
        model.users = {str(u): z["U"][k].astype(np.float32).copy() for k, u in enumerate(z["users"])}
        model.pv_n, model.pv_err = int(pv_n), int(pv_err)
        return model

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "lr": self.lr, "reg": self.reg, "n_neg": self.n_neg}
