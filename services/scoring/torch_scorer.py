"""The in-process torch scorer (the embedded default's adapter of the scorer port)."""

from __future__ import annotations

import numpy as np
import torch

from fogmap.core.events import version_seq
from fogmap.scoring.model import FogNet, channels_last, for_inference, load_weights, to_tensor
from fogmap.scoring.port import RawScores


class TorchScorer:
    def __init__(self, mc_samples: int = 20, batch_size: int = 128, threads: int = 2,
                 device: str = "cpu") -> None:
        self.mc_samples = mc_samples
        self.batch_size = batch_size
        self.device = torch.device(device)
        torch.set_num_threads(threads)
        self._model: FogNet | None = None
        self._masks: torch.Tensor | None = None
        self._version: str | None = None

    @property
    def version(self) -> str | None:
        return self._version

    def load(self, version: str, weights: bytes) -> None:
        self.use(version, load_weights(weights))

    def use(self, version: str, model: FogNet) -> None:
        """Score with ``model`` itself (already in memory) as ``version``."""
        masks = model.dropout_masks(self.mc_samples, seed=version_seq(version))
        self._masks = masks.to(self.device)
        self._model, self._version = for_inference(model).to(self.device), version

    @torch.no_grad()
    def score(self, images: np.ndarray) -> RawScores:
        if self._model is None or self._masks is None:
            raise RuntimeError("no model loaded")
        probs, mc, emb = [], [], []
        for lo in range(0, len(images), self.batch_size):
            x = channels_last(to_tensor(images[lo:lo + self.batch_size]).to(self.device))
            e = self._model.embedding(x)
            probs.append(torch.softmax(self._model.head(e), -1).cpu().numpy())
            mc.append(self._model.mc_head(e, self._masks).cpu().numpy())
            emb.append(e.cpu().numpy())
        return RawScores(np.concatenate(probs), np.concatenate(mc, axis=1),
                         np.concatenate(emb))
