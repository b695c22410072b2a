"""The content model: TF-IDF over an item's title, categories, tags and text; cosine similar items.

Rebuilt by the catalog agent (streams/catalog.py) from the whole catalog after changes, which writes
each item's top-K similar items; stored by the registry like every model (``to_bytes``/``from_bytes``).
Sublinear term frequency, smoothed idf, L2-normalised rows.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from typing import Any

import numpy as np
from scipy import sparse

from aura.models.base import NeighbourModel

TOKEN = re.compile(r"[a-z0-9]+")
STOP = frozenset("a an and the of in on for to with by at from is are was it its this that or as be".split())
FIELD_WEIGHTS = {"title": 1.0, "category": 2.0, "tag": 1.5, "text": 0.5}


def tokens(item: dict[str, Any]) -> Counter[str]:
    """Weighted terms of one item: title and text words, ``cat:`` and ``tag:`` terms."""
    terms: Counter[str] = Counter()
    for w in TOKEN.findall((item.get("title") or "").lower()):
        if w not in STOP:
            terms[w] += FIELD_WEIGHTS["title"]
    for c in item.get("categories") or []:
        terms[f"cat:{c.lower()}"] += FIELD_WEIGHTS["category"]
    for t in item.get("tags") or []:
        terms[f"tag:{t.lower()}"] += FIELD_WEIGHTS["tag"]
    for w in TOKEN.findall((item.get("text") or "").lower()):
        if w not in STOP:
            terms[w] += FIELD_WEIGHTS["text"]
    return terms


class ContentModel:
    """TF-IDF (sublinear tf, smoothed idf, L2-normalised rows); cosine similarity between items."""

    kind = "content_tfidf"

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.X = sparse.csr_matrix((0, 0))

    def fit(self, items: dict[str, dict[str, Any]]) -> ContentModel:
        self.ids = sorted(items)
        docs = [tokens(items[i]) for i in self.ids]
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.keys())
        self.vocab = {t: k for k, t in enumerate(sorted(df))}
        n = len(docs)
        self.idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in sorted(df)])
        rows, cols, vals = [], [], []
        for r, d in enumerate(docs):
            for t, tf in d.items():
                rows.append(r)
                cols.append(self.vocab[t])
                vals.append((1.0 + math.log(tf)) if tf >= 1 else tf)
        X = sparse.csr_matrix((vals, (rows, cols)), shape=(n, len(self.vocab)))
        X = X.multiply(self.idf).tocsr()
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.X = sparse.diags(1.0 / norms) @ X
        self.X = self.X.tocsr()
        return self

    def similar_all(self, k: int, block: int = 512) -> dict[str, list[tuple[str, float]]]:
        """Top-``k`` cosine neighbours of every item (blockwise, never the full N x N at once)."""
        out: dict[str, list[tuple[str, float]]] = {}
        n = len(self.ids)
        XT = self.X.T.tocsc()
        for start in range(0, n, block):
            S = (self.X[start:start + block] @ XT).toarray()
            for r in range(S.shape[0]):
                S[r, start + r] = -1.0
            kk = min(k, n - 1)
            if kk <= 0:
                for r in range(S.shape[0]):
                    out[self.ids[start + r]] = []
                continue
            idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
            for r in range(S.shape[0]):
                cand = idx[r][np.argsort(-S[r, idx[r]])]
                out[self.ids[start + r]] = [(self.ids[c], float(S[r, c])) for c in cand if S[r, c] > 0]
        return out

    def similar(self, item: str, k: int) -> list[tuple[str, float]]:
        row = self.ids.index(item)
        s = (self.X[row] @ self.X.T).toarray().ravel()
        s[row] = -1
        order = np.argsort(-s)[:k]
        return [(self.ids[c], float(s[c])) for c in order if s[c] > 0]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        X = self.X.tocsr()
        vocab = np.array(sorted(self.vocab, key=self.vocab.__getitem__), dtype=object)
        np.savez_compressed(buf, ids=np.array(self.ids, dtype=object), vocab=vocab, idf=self.idf, data=X.data,
                            indices=X.indices, indptr=X.indptr, shape=np.array(X.shape))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ContentModel:
        z = np.load(io.BytesIO(data), allow_pickle=True)
        m = cls()
        m.ids = [str(x) for x in z["ids"]]
        m.vocab = {str(t): k for k, t in enumerate(z["vocab"])}
        m.idf = z["idf"]
        m.X = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return m


class ContentSimilarity(NeighbourModel):
    """Content similarity as a batch recommender over the interaction matrix's items: the TF-IDF cosine
    between the items' texts (``ContentModel``), top-``neighbours`` kept per item; a user's scores are
    ``x @ S`` (items like the ones they took). Items without catalog text have no neighbours."""

    kind = "content_similarity"

    def fit_items(self, ids: list[str], items: dict[str, dict[str, Any]]) -> ContentSimilarity:
        """``ids``: the matrix's item order; ``items``: catalog records (title, categories, tags, text)."""
        n = len(ids)
        known = [i for i in ids if i in items]
        cm = ContentModel().fit({i: items[i] for i in known}) if known else None
        pos = {i: k for k, i in enumerate(ids)}
        rows, cols, vals = [], [], []
        if cm is not None:
            for item, lst in cm.similar_all(self.neighbours).items():
                for j, s in lst:
                    rows.append(pos[item])
                    cols.append(pos[j])
                    vals.append(s)
        self.S = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
        return self
