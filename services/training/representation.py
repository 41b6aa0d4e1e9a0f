"""The first label-free representation: PCA of the pixels, available seconds after ingest.

Before any label and before the encoder is pretrained, distances between raw pixel
vectors projected onto their top principal components already separate much of a pool
(on digits, 32 components keep ~95% of the variance), so the cold start, the map and the
diversity strategies have something to work with at once. Pure: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

DIMS = 32  # FogNet's embedding width: one vector index serves both


def pca_vectors(images: np.ndarray, fit_items: int = 10_000, seed: int = 0,
                dims: int = DIMS) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, min(dims, H*W*C, N)) float32, PCA fitted on at most
    ``fit_items`` images drawn with ``seed`` and applied to all of them."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(len(x), fit_items, replace=False)] if len(x) > fit_items else x
    pca = PCA(min(dims, *fit.shape), svd_solver="randomized", random_state=seed)
    pca.fit(fit)
    out = [pca.transform(x[lo:lo + 8192]) for lo in range(0, len(x), 8192)]
    return np.concatenate(out).astype(np.float32)
