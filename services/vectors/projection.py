"""The 2-D map: PCA of the embeddings, aligned to the previous model version's map.

Each model version embeds the pool differently; a fresh PCA of the new embeddings may come
out rotated, mirrored or rescaled relative to the last one, and the map would jump even
where nothing changed. :func:`project` therefore fits the new PCA coordinates onto the
previous positions with an orthogonal Procrustes transform (rotation or reflection,
uniform scale, translation), using only the items that had a previous position, so an
item moves only as far as its neighbourhood really changed.

Shapes: ``embeddings`` (N, D); ``previous`` (N, 2) with NaN rows for items that had no
position; the result is (N, 2) float64, finite, roughly within [-1, 1]. Pure, deterministic.
"""

from __future__ import annotations

import numpy as np

MIN_ANCHORS = 3


def pca2(embeddings: np.ndarray) -> np.ndarray:
    """The first two principal components: (N, D) -> (N, 2), signs fixed for determinism."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = x.shape[0]
    out = np.zeros((n, 2))
    if n == 0:
        return out
    x = x - x.mean(axis=0)
    # Eigen-decomposition of the D x D covariance: cheap for N = 60k, D <= a few hundred.
    values, vectors = np.linalg.eigh(x.T @ x)
    order = np.argsort(values)[::-1][:2]
    components = vectors[:, order]  # (D, <=2)
    # Sign convention (as sklearn's svd_flip): the largest loading of each axis is positive.
    signs = np.sign(components[np.argmax(np.abs(components), axis=0), range(components.shape[1])])
    components = components * np.where(signs == 0, 1.0, signs)
    out[:, :components.shape[1]] = x @ components
    return out


def normalize(coords: np.ndarray) -> np.ndarray:
    """Centre and scale uniformly so the largest coordinate magnitude is 1: (N, 2) -> (N, 2)."""
    if len(coords) == 0:
        return coords.copy()
    centred = coords - coords.mean(axis=0)
    scale = np.abs(centred).max()
    return centred / scale if scale > 0 else centred


def procrustes(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """``(R, s, t)`` minimising ||s * source @ R + t - target||: (M, 2), (M, 2) -> (2, 2),
    scalar, (2,). ``R`` is orthogonal (rotation or reflection)."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
    norm = float((a**2).sum())
    scale = float(sigma.sum()) / norm if norm > 0 else 1.0
    return rotation, scale, mu_t - scale * mu_s @ rotation


def project(embeddings: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Map positions for ``embeddings`` (N, D), aligned to ``previous`` (N, 2) when given."""
    coords = pca2(embeddings)
    if previous is None:
        return normalize(coords)
    previous = np.asarray(previous, dtype=np.float64)
    if previous.shape != coords.shape:
        raise ValueError(f"previous has shape {previous.shape}, expected {coords.shape}")
    anchors = np.isfinite(previous).all(axis=1)
    source, target = coords[anchors], previous[anchors]
    # Too few anchors, or anchors that all sit on one spot, cannot pin down a transform.
    if anchors.sum() < MIN_ANCHORS or np.ptp(target, axis=0).max() == 0 or np.ptp(
            source, axis=0).max() == 0:
        return normalize(coords)
    rotation, scale, shift = procrustes(source, target)
    return coords @ rotation * scale + shift
