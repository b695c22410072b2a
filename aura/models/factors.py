"""Matrix factorisation trained in batch: implicit ALS (Hu, Koren, Volinsky 2008) and BPR (Rendle et
al. 2009), fitted by the ``implicit`` library (its CPU kernels, one thread: the job shares the machine),
with the item factors kept as numpy so that scoring, fold-in and the bytes round trip need no library.

A user's scores are ``u @ V.T``; ``u`` is folded in from the user's row (so any history is scored, not
only the training users'): ALS exactly (``(V'V + alpha V_s'V_s + reg I) u = (1 + alpha) V_s' 1``, the
least squares step the fit itself takes), BPR by ridge least squares over the item factors of the
user's items (BPR has no closed form; the item biases it learns are added). Item neighbours are the
cosine of the item factors.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from scipy import sparse
from threadpoolctl import threadpool_limits

from aura.models.base import BatchModel, top_k

Progress = Callable[[int, int], None]  # (iterations done, iterations in all)


class FactorModel(BatchModel):
    kind = "factors"

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 seed: int = 7) -> None:
        self.factors, self.regularization, self.iterations, self.seed = factors, regularization, iterations, seed
        self.V = np.zeros((0, factors), dtype=np.float32)  # items x factors
        self.bias = np.zeros(0, dtype=np.float32)          # per item (BPR)

    def _library_model(self) -> object:
        raise NotImplementedError

    def fit(self, X: sparse.csr_matrix, progress: Progress | None = None) -> FactorModel:
        done = {"n": 0}

        def tick(*_args: object) -> None:
            done["n"] += 1
            if progress is not None:
                progress(done["n"], self.iterations)

        with threadpool_limits(1, "blas"):  # implicit's own loop is the parallelism (one thread here)
            lib = self._library_model()
            lib.fit(X.astype(np.float32).tocsr(), show_progress=False, callback=tick)  # type: ignore[attr-defined]
        self._take(np.asarray(lib.item_factors, dtype=np.float32))  # type: ignore[attr-defined]
        return self

    def _take(self, item_factors: np.ndarray) -> None:
        self.V = item_factors

    def user_factors(self, rows: sparse.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        s = self.user_factors(X_users.tocsr()) @ self.V.T
        return s + self.bias[None, :] if self.bias.size else s

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        norms = np.linalg.norm(self.V, axis=1)
        norms[norms == 0] = 1.0
        Vn = self.V / norms[:, None]
        out: list[list[tuple[int, float]]] = []
        for start in range(0, Vn.shape[0], 1024):
            S = Vn[start:start + 1024] @ Vn.T
            for r in range(S.shape[0]):
                S[r, start + r] = -np.inf
            idx = top_k(S, k)
            out += [[(int(j), float(S[r, j])) for j in idx[r] if S[r, j] > 0] for r in range(S.shape[0])]
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {"V": self.V, "bias": self.bias,
                "params": np.array([self.factors, self.regularization, self.iterations, self.seed], dtype=np.float64)}

    @classmethod
    def from_bytes(cls, data: bytes) -> FactorModel:
        z = np.load(io.BytesIO(data))
        f, reg, it, seed = z["params"].tolist()
        m = cls(int(f), float(reg), int(it), int(seed))
        m.V, m.bias = z["V"], z["bias"]
        m._restore(z)
        return m

    def _restore(self, z: np.lib.npyio.NpzFile) -> None:
        pass


class ALS(FactorModel):
    """Implicit ALS: confidence ``1 + alpha * x``, ``factors`` dimensions, ``iterations`` sweeps."""

    kind = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15, seed: int = 7,
                 alpha: float = 20.0) -> None:
        super().__init__(factors, regularization, iterations, seed)
        self.alpha = alpha

    def _library_model(self) -> object:
        return AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                       iterations=self.iterations, num_threads=1, random_state=self.seed)

    def user_factors(self, rows: sparse.csr_matrix) -> np.ndarray:
        V = self.V.astype(np.float64)
        VtV = V.T @ V
        eye = self.regularization * np.eye(V.shape[1])
        out = np.zeros((rows.shape[0], V.shape[1]), dtype=np.float64)
        for r in range(rows.shape[0]):
            items = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
            if len(items) == 0:
                continue
            Vs = V[items]
            out[r] = np.linalg.solve(VtV + self.alpha * Vs.T @ Vs + eye, (1.0 + self.alpha) * Vs.sum(axis=0))
        return out.astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "alpha": np.array([self.alpha])}

    def _restore(self, z: np.lib.npyio.NpzFile) -> None:
        self.alpha = float(z["alpha"][0])


class BPR(FactorModel):
    """Bayesian personalised ranking by SGD (``learning_rate``, ``iterations`` epochs), item biases."""

    kind = "bpr"

    def __init__(self, factors: int = 64, regularization: float = 0.01, iterations: int = 100, seed: int = 7,
                 learning_rate: float = 0.05) -> None:
        super().__init__(factors, regularization, iterations, seed)
        self.learning_rate = learning_rate

    def _library_model(self) -> object:
        return BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                           regularization=self.regularization, iterations=self.iterations,
                                           num_threads=1, random_state=self.seed)

    def _take(self, item_factors: np.ndarray) -> None:
        # implicit keeps the item bias as the last factor column (the user side's is a constant 1)
        self.V, self.bias = item_factors[:, :-1].copy(), item_factors[:, -1].copy()

    def user_factors(self, rows: sparse.csr_matrix) -> np.ndarray:
        V = self.V.astype(np.float64)
        eye = max(self.regularization, 1e-3) * np.eye(V.shape[1])
        out = np.zeros((rows.shape[0], V.shape[1]), dtype=np.float64)
        for r in range(rows.shape[0]):
            items = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
            if len(items) == 0:
                continue
            Vs = V[items]
            out[r] = np.linalg.solve(Vs.T @ Vs + eye, Vs.sum(axis=0))
        return out.astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "learning_rate": np.array([self.learning_rate])}

    def _restore(self, z: np.lib.npyio.NpzFile) -> None:
        self.learning_rate = float(z["learning_rate"][0])
