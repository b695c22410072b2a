"""Online matrix factorization for implicit feedback: numpy SGD on the BPR pairwise loss.

Why not ``river.reco.BiasedMF``: it regresses explicit ratings (every event here is an implicit
positive, so it would learn a constant without negatives), keeps factors in per-id dicts that cannot
be scored against the whole catalog in one matrix product, and lives inside one process. Here item
factors are one float32 matrix (one ``V @ u`` ranks the catalog), user factors are small vectors kept
in the user's Redis hash, and an update is a handful of numpy ops.

The SGD steps of a batch of positives run in one compiled loop (``_bpr_steps``, numba): each step is
a handful of 32-wide vector operations, and one numpy call per operation cost about 20 us per
positive in call overhead alone, the worker's largest single cost. The steps are the same, in the same
order, as one numpy step per positive would take.

Progressive validation: before each update the model predicts whether the positive outranks the
sampled negative; the running share of wrong predictions is the online learner's error. The stream
learns it (streams/usersignals.py keeps the factors in Redis); the registry stores its bytes.
"""

from __future__ import annotations

import functools
import io
import math
import zlib
from typing import Any

import numpy as np


def _bpr_steps(V: np.ndarray, U: np.ndarray, urow: np.ndarray, irow: np.ndarray, known: np.ndarray,
               draws: np.ndarray, weights: np.ndarray, lr: float, reg: float) -> np.ndarray:
    """BPR steps in order, in place on item factors ``V`` (bias last) and user factors ``U``: positive
    ``p`` is user row ``urow[p]`` and item row ``irow[p]``; its negatives are ``draws[p] * known[p]``
    (uniform among the items known then). Returns the wrong pre-update predictions per positive."""
    d = U.shape[1]
    shrink = 1.0 - lr * reg
    errors = np.zeros(len(urow), dtype=np.int64)
    for p in range(len(urow)):
        n = known[p]
        if n < 2:
            continue
        i = irow[p]
        u = U[urow[p]]
        for k in range(draws.shape[1]):
            j = int(draws[p, k] * n)
            if j == i:
                continue
            x = float(V[i, d]) - float(V[j, d])
            for t in range(d):
                x += float(u[t]) * (float(V[i, t]) - float(V[j, t]))
            if x <= 0:
                errors[p] += 1
            g = weights[p] / (1.0 + math.exp(min(x, 30.0)))  # sigmoid(-x)
            for t in range(d):
                ut = float(u[t])
                diff = float(V[i, t]) - float(V[j, t])
                step = ut * (lr * g)
                V[i, t] = V[i, t] * shrink + step
                V[j, t] = V[j, t] * shrink - step
                u[t] = ut + lr * (diff * g - ut * reg)
            bi, bj = float(V[i, d]), float(V[j, d])
            V[i, d] = bi + lr * (g - reg * bi)
            V[j, d] = bj + lr * (-g - reg * bj)
    return errors


@functools.cache
def _compiled_steps() -> Any:
    """``_bpr_steps`` compiled by numba (its machine code cached on disk beside this module). numba
    brings LLVM (about 170 MiB of RSS): imported by the processes that learn, not by every reader of
    this module (the API loads MF models to score them)."""
    import numba

    return numba.njit(cache=True, nogil=True)(_bpr_steps)


def _init_vector(item: str, dim: int, scale: float) -> np.ndarray:
    """A deterministic initial vector per id, so every worker starts an item the same way."""
    rng = np.random.default_rng(zlib.crc32(item.encode()))
    return (rng.standard_normal(dim) * scale).astype(np.float32)


def scores_of(V: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Every item's score for user factors ``u``: item factors ``V`` (one row per item, bias last)."""
    d = V.shape[1] - 1
    return V[:, :d] @ u + V[:, d]


def top_k(ids: list[str], scores: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    """The ``k`` best of ``scores`` (one per id, -inf: excluded): ids and scores as float64, best first.
    What the learner (``OnlineMF.top_arrays``) and the readers (aura/ranking/factors.py) both rank with."""
    k = min(k, len(scores))
    if k <= 0:
        return [], np.zeros(0)
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    vals = scores[idx]
    keep = np.isfinite(vals)
    if not keep.all():
        idx, vals = idx[keep], vals[keep]
    return [ids[r] for r in idx.tolist()], vals.astype(np.float64)


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
        self.moved: set[int] = set()  # rows changed since ``take_moved``: positives and their negatives

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
        return self.learn_many([(user, item, weight)])[0] / max(1, self.n_neg)

    def learn_many(self, positives: list[tuple[str, str, float]]) -> list[int]:
        """``n_neg`` BPR steps per ``(user, item, weight)``, in order (one compiled loop); returns the
        wrong pre-update predictions of each positive. A negative is drawn among the items known when
        its positive comes (an item first seen later in the batch cannot be one)."""
        if not positives:
            return []
        irow = np.empty(len(positives), dtype=np.int64)
        known = np.empty(len(positives), dtype=np.int64)
        urow = np.empty(len(positives), dtype=np.int64)
        weights = np.empty(len(positives), dtype=np.float64)
        rows: dict[str, int] = {}
        for p, (user, item, weight) in enumerate(positives):
            irow[p] = self.item_row(item)
            known[p] = len(self.ids)
            r = rows.get(user)
            if r is None:
                r = rows[user] = len(rows)
            urow[p] = r
            weights[p] = weight
        U = np.stack([self.user_vector(u) for u in rows])
        draws = self.rng.random((len(positives), self.n_neg))
        errors = _compiled_steps()(self.V, U, urow, irow, known, draws, weights, self.lr, self.reg)
        negatives = (draws * known[:, None]).astype(np.int64)  # as ``_bpr_steps`` draws them
        stepped = (known[:, None] >= 2) & (negatives != irow[:, None])
        self.moved.update(irow.tolist())
        self.moved.update(negatives[stepped].tolist())
        for user, r in rows.items():
            self.users[user] = U[r].copy()
        self.pv_n += self.n_neg * int((known >= 2).sum())
        self.pv_err += int(errors.sum())
        return errors.tolist()

    def take_moved(self) -> list[str]:
        """The items whose factors changed (or were created) since the last call, and forget them."""
        moved, self.moved = self.moved, set()
        return [self.ids[r] for r in sorted(moved)]

    # --------------------------------------------------------------------------------- scoring

    def score(self, user: str) -> np.ndarray:
        """Scores of every known item (in ``self.ids`` order) for ``user``."""
        n = len(self.ids)
        u = self.users.get(user)
        if u is None:
            return self.V[:n, self.dim].copy()
        return scores_of(self.V[:n], u)

    def top_arrays(self, user: str, k: int, exclude: set[str] | None = None) -> tuple[list[str], np.ndarray]:
        """The ``k`` best items for ``user`` (ids, and their scores as float64), best first."""
        scores = self.score(user)
        if exclude:
            for item in exclude:
                row = self.index.get(item)
                if row is not None:
                    scores[row] = -np.inf
        return top_k(self.ids, scores, k)

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
