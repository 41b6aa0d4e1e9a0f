"""Uncertainty measures: small pure functions over probability arrays.

Shapes: ``probs`` is (N, C) (mean predictive distribution); ``mc`` is (K, N, C), K
MC-dropout samples. All results are (N,) and non-negative; ``margin`` and
``least_confidence`` lie in [0, 1]. Natural logarithms (nats) throughout.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy H[y|x]: (N, C) -> (N,)."""
    p = np.clip(probs, EPS, 1.0)
    return np.maximum(-(p * np.log(p)).sum(axis=-1), 0.0)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): (N, C) -> (N,), high when the top two classes are close."""
    top2 = np.sort(probs, axis=-1)[:, -2:]
    return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max_c p(c|x): (N, C) -> (N,)."""
    return np.clip(1.0 - probs.max(axis=-1), 0.0, 1.0)


def bald(mc: np.ndarray) -> np.ndarray:
    """Mutual information I[y; theta | x] = H[E p] - E H[p]: (K, N, C) -> (N,)."""
    mean_entropy = entropy(mc.reshape(-1, mc.shape[-1])).reshape(mc.shape[:2]).mean(axis=0)
    return np.maximum(entropy(mc.mean(axis=0)) - mean_entropy, 0.0)


def eig(mc: np.ndarray, targets: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Expected information gain about predictions on the pool (EPIG, Bickford Smith 2023).

    ``eig[i] = mean_j I[y_i; y*_j]`` over target points x*_j drawn from the pool: how many
    nats, on average, labeling x_i is expected to tell us about the labels of the rest.
    ``mc`` (K, N, C) for the candidates, ``targets`` (K, M, C) for the targets, both from
    the same K parameter samples. Returns (N,).
    """
    k, n, c = mc.shape
    m = targets.shape[1]
    t = targets.reshape(k, m * c)  # (K, M*C)
    p_t = targets.mean(axis=0)  # (M, C)
    h_t = entropy(p_t)  # (M,)
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, chunk):
        x = mc[:, lo:lo + chunk]  # (K, n', C)
        nn_ = x.shape[1]
        joint = (x.reshape(k, nn_ * c).T @ t / k).reshape(nn_, c, m, c)  # p(y, y*)
        joint = np.clip(joint, EPS, 1.0)
        h_joint = -(joint * np.log(joint)).sum(axis=(1, 3))  # (n', M)
        h_x = entropy(x.mean(axis=0))  # (n',)
        out[lo:lo + chunk] = np.maximum(h_x[:, None] + h_t[None, :] - h_joint, 0.0).mean(1)
    return out
