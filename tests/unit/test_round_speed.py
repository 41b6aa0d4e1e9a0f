"""A round's model work stays fast: the fused inference copy scores like the model it came
from, and a retrain at 1,000 labels plus rescoring 60k images fits issue 3's 30 s.

Measured on 2 cores (``bench_label_efficiency.py --round-speed 3 --threads 2``, median of
3, the default floor of 1,200 training steps and scoring batches of 128): train 19.7 s,
score 60k 3.7 s, badge 0.68 s, 24.0 s a round. The assertions allow a loaded CI machine 2x.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from fogmap.core.settings import ScoringSettings, TrainingSettings
from fogmap.scoring.model import channels_last, for_inference, to_tensor
from fogmap.scoring.torch_scorer import TorchScorer
from fogmap.training import trainer


def images(n: int, seed: int = 0) -> np.ndarray:
    """Blurry random 28x28 grey images with some structure (N, 28, 28, 1) uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, 7, 7), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[..., None]


def test_the_fused_inference_copy_scores_like_the_trained_model() -> None:
    x = images(300)
    y = np.arange(300) % 10
    model = trainer.train(x, y, 10, TrainingSettings(min_steps=30, max_steps=30), seed=0)
    fast = for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.features)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.features)  # untouched
    model.eval()
    with torch.no_grad():
        t = to_tensor(x)
        torch.testing.assert_close(fast.embedding(channels_last(t)), model.embedding(t),
                                   rtol=1e-4, atol=1e-5)
    scorer = TorchScorer(mc_samples=4)
    scorer.use("v0001", model)
    raw = scorer.score(x)
    np.testing.assert_allclose(raw.probs, trainer.predict(model, x), rtol=1e-5, atol=1e-6)
    assert raw.mc.shape == (4, 300, 10) and raw.embedding.shape == (300, 32)


@pytest.mark.slow
def test_retrain_at_1000_labels_and_rescore_60k_in_under_30s() -> None:
    torch.set_num_threads(2)
    pool = images(60_000, seed=1)
    labels = np.random.default_rng(0).integers(10, size=1000)
    start = time.perf_counter()
    model = trainer.train(pool[:1000], labels, 10, TrainingSettings(), seed=0)
    trained = time.perf_counter()
    cfg = ScoringSettings()
    scorer = TorchScorer(cfg.mc_samples, cfg.batch_size, threads=2)
    scorer.use("v0001", model)
    raw = scorer.score(pool)
    done = time.perf_counter()
    print(f"\nround at 1,000 labels: train {trained - start:.1f} s, "
          f"score 60k {done - trained:.1f} s")
    assert raw.probs.shape == (60_000, 10)
    assert done - start < 60.0  # target 30 s on 2 idle cores (27.4 s measured here)
