"""The scorer port: a model version in, per-image probabilities and embeddings out.

Adapters: :class:`fogmap.scoring.torch_scorer.TorchScorer` (in-process, the embedded
default) and a Triton Inference Server client (distributed). Handlers never know which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RawScores:
    """What one scoring pass yields for N images (K MC-dropout samples, C classes)."""

    probs: np.ndarray  # (N, C) predictive distribution, dropout off
    mc: np.ndarray  # (K, N, C) MC-dropout samples, masks shared across items
    embedding: np.ndarray  # (N, D)


class Scorer(Protocol):
    def load(self, version: str, weights: bytes) -> None:
        """Make ``version`` the model that :meth:`score` uses."""
        ...

    @property
    def version(self) -> str | None: ...

    def score(self, images: np.ndarray) -> RawScores:
        """Score (N, H, W, C) uint8 images with the loaded version (blocking; CPU bound)."""
        ...
