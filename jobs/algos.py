"""Batch recommenders and offline metrics (pure numpy/scipy): popularity, item-kNN (cosine), EASE.

Used by the batch job (jobs/ease.py), the registry's ``predict`` and the MovieLens benchmark. Every
model has ``fit(X)``, ``scores(rows)`` (users x items), ``item_neighbours(k)`` and a bytes round trip.
``X`` is a users x items CSR matrix of implicit feedback (1 = interacted).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

# --------------------------------------------------------------------------------- metrics


def hit_rate_at_k(ranked: Sequence[str], held_out: str, k: int = 10) -> float:
    """1 if the held-out item is in the first ``k`` recommendations."""
    return 1.0 if held_out in list(ranked[:k]) else 0.0


def ndcg_at_k(ranked: Sequence[str], held_out: str, k: int = 10) -> float:
    """``1 / log2(rank + 2)`` for the held-out item at 0-based ``rank`` < ``k`` (one relevant item)."""
    top = list(ranked[:k])
    if held_out not in top:
        return 0.0
    return 1.0 / math.log2(top.index(held_out) + 2)


def evaluate(recs: dict[str, Sequence[str]], held_out: dict[str, str], k: int = 10) -> dict[str, float]:
    """Mean HR@k and NDCG@k over the users of ``held_out`` (a user without recommendations scores 0)."""
    users = list(held_out)
    hr = [hit_rate_at_k(recs.get(u, []), held_out[u], k) for u in users]
    nd = [ndcg_at_k(recs.get(u, []), held_out[u], k) for u in users]
    return {f"hr@{k}": float(np.mean(hr)) if users else 0.0, f"ndcg@{k}": float(np.mean(nd)) if users else 0.0,
            "users": float(len(users))}


def leave_last_out(interactions: Iterable[tuple[str, str, int]]) -> tuple[list[tuple[str, str, int]], dict[str, str]]:
    """Per user, the chronologically last interaction is held out; ties on the timestamp keep the
    input order (the one listed last is "last", as RecBole's stable sort does)."""
    by_user: dict[str, list[tuple[int, int, str]]] = {}
    for k, (u, i, t) in enumerate(interactions):
        by_user.setdefault(u, []).append((t, k, i))
    train: list[tuple[str, str, int]] = []
    test: dict[str, str] = {}
    for u, evs in by_user.items():
        evs.sort()
        if len(evs) < 2:
            train += [(u, i, t) for t, _k, i in evs]
            continue
        test[u] = evs[-1][2]
        train += [(u, i, t) for t, _k, i in evs[:-1]]
    return train, test


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` best scores per row (descending), excluded entries never chosen."""
    s = np.array(scores, dtype=np.float64, copy=True)
    if s.ndim == 1:
        s = s[None, :]
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, s.shape[1])
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(s, idx, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(idx, order, axis=1)


def interaction_matrix(rows: Iterable[tuple[str, str]], users: list[str] | None = None,
                       items: list[str] | None = None) -> tuple[sparse.csr_matrix, list[str], list[str]]:
    """(user, item) pairs -> binary CSR matrix with its user and item id lists."""
    pairs = list(rows)
    users = users or sorted({u for u, _ in pairs})
    items = items or sorted({i for _, i in pairs})
    ui = {u: k for k, u in enumerate(users)}
    ii = {i: k for k, i in enumerate(items)}
    r = [ui[u] for u, i in pairs if u in ui and i in ii]
    c = [ii[i] for u, i in pairs if u in ui and i in ii]
    X = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(items)))
    X.data[:] = 1.0  # duplicates summed -> binary
    return X, users, items


# ---------------------------------------------------------------------------------- models


class _Base:
    kind = "base"

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **self._state())
        return buf.getvalue()

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError


class Popularity(_Base):
    kind = "popularity"

    def __init__(self) -> None:
        self.counts = np.zeros(0)

    def fit(self, X: sparse.csr_matrix) -> Popularity:
        self.counts = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        return self

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return np.tile(self.counts, (X_users.shape[0], 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    @classmethod
    def from_bytes(cls, data: bytes) -> Popularity:
        m = cls()
        m.counts = np.load(io.BytesIO(data))["counts"]
        return m


class ItemKNN(_Base):
    """Cosine item-item similarity, top-``neighbours`` kept per item; scores = X @ S."""

    kind = "item_knn"

    def __init__(self, neighbours: int = 100) -> None:
        self.neighbours = neighbours
        self.S = sparse.csr_matrix((0, 0))

    def fit(self, X: sparse.csr_matrix) -> ItemKNN:
        Xc = X.tocsc().astype(np.float64)
        norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        Xn = Xc @ sparse.diags(1.0 / norms)
        S = (Xn.T @ Xn).toarray()
        np.fill_diagonal(S, 0.0)
        n = S.shape[0]
        k = min(self.neighbours, max(n - 1, 1))
        idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(n), k)
        vals = np.take_along_axis(S, idx, axis=1).ravel()
        self.S = sparse.csr_matrix((vals, (rows, idx.ravel())), shape=(n, n))
        return self

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return (X_users.astype(np.float64) @ self.S).toarray()

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        out = []
        for r in range(self.S.shape[0]):
            row = self.S.getrow(r)
            pairs = sorted(zip(row.indices.tolist(), row.data.tolist(), strict=True), key=lambda t: -t[1])
            out.append([(j, s) for j, s in pairs[:k] if s > 0])
        return out

    def _state(self) -> dict[str, np.ndarray]:
        S = self.S.tocsr()
        return {"data": S.data, "indices": S.indices, "indptr": S.indptr, "shape": np.array(S.shape),
                "neighbours": np.array([self.neighbours])}

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemKNN:
        z = np.load(io.BytesIO(data))
        m = cls(int(z["neighbours"][0]))
        m.S = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return m


class EASE(_Base):
    """Embarrassingly Shallow Autoencoder (Steck 2019): ``B = I - P diagMat(1 / diag(P))``,
    ``P = (X'X + lambda I)^-1``, zero diagonal."""

    kind = "ease"

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam
        self.B = np.zeros((0, 0), dtype=np.float32)
        self.ids: list[str] = []  # item id of each row/column (set by the job)

    @staticmethod
    def gram(X: sparse.csr_matrix) -> np.ndarray:
        Xf = X.astype(np.float64)
        return np.asarray((Xf.T @ Xf).toarray())

    def fit(self, X: sparse.csr_matrix | None = None, G: np.ndarray | None = None) -> EASE:
        G = self.gram(X) if G is None else G.copy()
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.B = B.astype(np.float32)
        return self

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(X_users.astype(np.float32) @ self.B)

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        idx = top_k(self.B, k)
        return [[(int(j), float(self.B[r, j])) for j in idx[r] if self.B[r, j] > 0] for r in range(self.B.shape[0])]

    def _state(self) -> dict[str, np.ndarray]:
        return {"B": self.B, "lam": np.array([self.lam]), "ids": np.array(self.ids, dtype=str)}

    @classmethod
    def from_bytes(cls, data: bytes) -> EASE:
        z = np.load(io.BytesIO(data))
        m = cls(float(z["lam"][0]))
        m.B = z["B"]
        m.ids = [str(x) for x in z["ids"]] if "ids" in z else []
        return m


def recommend_all(model: _Base, X: sparse.csr_matrix, k: int, block: int = 1024) -> np.ndarray:
    """Top-``k`` item indices for every user row of ``X``, excluding the row's interacted items."""
    out = []
    for start in range(0, X.shape[0], block):
        rows = X[start:start + block]
        s = model.scores(rows)  # type: ignore[attr-defined]
        out.append(top_k(s, k, exclude=rows.toarray() > 0))
    return np.vstack(out) if out else np.zeros((0, k), dtype=int)
