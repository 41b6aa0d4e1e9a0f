"""The classifier's training loop: how an epoch is cut into batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fogmap.core.settings import TrainingSettings
from fogmap.training import trainer


@given(n=st.integers(1, 3000), batch_size=st.integers(1, 256))
def test_an_epoch_is_every_index_once_in_batches_of_near_equal_size(n: int,
                                                                   batch_size: int) -> None:
    order = torch.randperm(n)
    count = -(-n // batch_size)
    batches = trainer.epoch_batches(order, count)
    sizes = [len(b) for b in batches]
    assert len(batches) == count
    assert torch.equal(torch.cat(batches), order)
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) <= batch_size
    if n >= batch_size:
        assert min(sizes) >= batch_size // 2


def test_training_never_steps_on_a_remainder_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """68 labels in batches of 16 used to end every epoch on a batch of 4: at 260 labels in
    batches of 64 that last step cost up to 8 points of held-out accuracy (batch norm)."""
    sizes: list[int] = []
    augment = trainer._augment

    def spy(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sizes.append(len(x))
        return augment(x, generator)

    monkeypatch.setattr(trainer, "_augment", spy)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (68, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 68)
    cfg = TrainingSettings(epochs=2, min_steps=1, max_steps=100, batch_size=16)
    trainer.train(images, labels, 3, cfg, seed=0)
    assert len(sizes) == 2 * 5  # epochs x ceil(68 / 16)
    assert set(sizes) == {13, 14}


def test_label_smoothing_reaches_the_loss() -> None:
    """TrainingSettings.label_smoothing is the loss's: with 0.5 of each target spread over
    the other classes the fitted model cannot be as sure of its training labels as with 0."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    images = np.zeros((90, 8, 8, 1), np.uint8)
    for c in range(3):  # each class a bright band in its own rows: easy to fit
        images[labels == c, 2 * c:2 * c + 2] = 255
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)

    def confidence(smoothing: float) -> float:
        cfg = TrainingSettings(epochs=40, min_steps=100, max_steps=200, batch_size=30,
                               label_smoothing=smoothing)
        probs = trainer.predict(trainer.train(images, labels, 3, cfg, seed=0), images)
        assert (probs.argmax(1) == labels).mean() == 1.0
        return float(probs.max(1).mean())

    sharp, smooth = confidence(0.0), confidence(0.5)
    assert sharp > 0.9
    assert smooth < 0.8  # the smoothed target is 1 - 0.5 + 0.5 / 3 = 0.67
    with pytest.raises(ValueError):
        TrainingSettings(label_smoothing=1.0)
