"""Query strategies: pure functions over per-item measures and embeddings.

A strategy sees a :class:`Candidates` view of the unlabeled pool and returns the indices
(into that view) of the ``k`` items to label next, best first. Shapes: N candidates,
C classes, D embedding dimensions, L labeled items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans


@dataclass(frozen=True)
class Candidates:
    probs: np.ndarray  # (N, C) predictive distribution
    embedding: np.ndarray  # (N, D)
    entropy: np.ndarray  # (N,)
    margin: np.ndarray  # (N,) 1 - (p1 - p2)
    least_confidence: np.ndarray  # (N,)
    bald: np.ndarray  # (N,)
    eig: np.ndarray  # (N,)
    labeled_embedding: np.ndarray  # (L, D)

    def __len__(self) -> int:
        return len(self.entropy)


Strategy = Callable[[Candidates, int, np.random.Generator], np.ndarray]


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k highest scores; ties broken at random (permutation equivariant)."""
    jitter = rng.random(len(scores)) * 1e-9
    return np.argsort(-(scores + jitter), kind="stable")[:k]


def by_measure(field: str) -> Strategy:
    def pick(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
        return top_k(getattr(c, field), k, rng)

    pick.__name__ = field
    return pick


def random(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """The baseline: k items uniformly at random."""
    return rng.permutation(len(c))[:k]


STRATEGIES: dict[str, Strategy] = {
    "random": random,
    "least-confidence": by_measure("least_confidence"),
    "margin": by_measure("margin"),
    "entropy": by_measure("entropy"),
    "bald": by_measure("bald"),
    "eig": by_measure("eig"),
}

# Measures a strategy's score is reported as (the number shown to annotators).
SCORE_FIELD = {"least-confidence": "least_confidence", "margin": "margin",
               "entropy": "entropy", "bald": "bald", "eig": "eig", "random": "entropy"}


def select(name: str, c: Candidates, k: int, seed: int) -> np.ndarray:
    """Run strategy ``name``; raise ``KeyError`` listing the known names otherwise."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    k = min(k, len(c))
    return STRATEGIES[name](c, k, np.random.default_rng(seed)) if k else np.array([], int)


def group(embedding: np.ndarray, group_size: int, seed: int) -> np.ndarray:
    """Group ids (N,) so look-alikes are labeled together: k-means with ~group_size each.

    Groups are numbered by size, largest first, so a queue ordered by group hands an
    annotator one cluster of similar images at a time.
    """
    n = len(embedding)
    groups = max(1, int(np.ceil(n / group_size)))
    if n <= 1 or groups == 1:
        return np.zeros(n, dtype=int)
    raw = KMeans(groups, n_init=4, random_state=seed).fit_predict(embedding)
    order = np.argsort(-np.bincount(raw, minlength=groups), kind="stable")
    rank = np.empty(groups, dtype=int)
    rank[order] = np.arange(groups)
    return rank[raw]


def nearest(query: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine nearest neighbours: (Q, D) x (L, D) -> indices (Q, k'), similarity (Q, k')."""
    if len(pool) == 0 or len(query) == 0:
        return np.zeros((len(query), 0), int), np.zeros((len(query), 0))
    qn = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    pn = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    sim = qn @ pn.T
    idx = np.argsort(-sim, axis=1)[:, :k]
    return idx, np.take_along_axis(sim, idx, axis=1)
