"""Label-free pretraining of the encoder, and the classifier starting from it (digits, 8x8)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fogmap.core.settings import TrainingSettings
from fogmap.scoring.model import EMBED_DIM, FogNet, load_weights, save_weights
from fogmap.training import trainer
from fogmap.training.pretrain import (
    augment,
    embed,
    encoder_model,
    load_encoder,
    pretrain,
)

CFG = TrainingSettings(epochs=1, min_steps=4, max_steps=4, batch_size=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> object:
    """Tiny tensors: a second thread only adds synchronisation (badly, on a busy host)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    images = (d.images * (255 / 16)).round().astype(np.uint8)[..., None][:160]
    return images, d.target[:160].astype(np.int64)


@pytest.fixture(scope="module")
def encoder(digits: tuple[np.ndarray, np.ndarray]) -> bytes:
    return pretrain(digits[0], classes_hint=10, seed=0, steps=3, batch_size=32)


def encoder_state(raw: bytes) -> dict[str, torch.Tensor]:
    return load_encoder(raw)["state"]


def test_pretrain_returns_loadable_encoder_weights(encoder: bytes) -> None:
    blob = load_encoder(encoder)
    assert blob["steps"] == 3 and blob["channels"] == 1 and blob["width"] == 32
    assert blob["classes_hint"] == 10
    assert set(blob["state"]) == {k for k in FogNet(1, 1).state_dict()
                                  if k.startswith(("features.", "embed."))}
    model = encoder_model(encoder)
    for key, value in blob["state"].items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError):
        load_encoder(save_weights(FogNet(1, 10)))  # classifier weights are not an encoder


def test_embed_gives_finite_32_d_vectors(digits: tuple[np.ndarray, np.ndarray],
                                         encoder: bytes) -> None:
    out = embed(digits[0][:50], encoder)
    assert out.shape == (50, EMBED_DIM) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert embed(digits[0][:0], encoder).shape == (0, EMBED_DIM)
    np.testing.assert_array_equal(embed(digits[0][:50], encoder_model(encoder)), out)


def test_pretraining_is_deterministic_for_a_seed(digits: tuple[np.ndarray, np.ndarray],
                                                 encoder: bytes) -> None:
    again = pretrain(digits[0], classes_hint=10, seed=0, steps=3, batch_size=32)
    other = pretrain(digits[0], classes_hint=10, seed=1, steps=3, batch_size=32)
    a, b, c = encoder_state(encoder), encoder_state(again), encoder_state(other)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_a_time_budget_is_kept(digits: tuple[np.ndarray, np.ndarray]) -> None:
    seen: list[tuple[int, int]] = []
    t = time.perf_counter()
    raw = pretrain(digits[0], seconds_budget=0.5, seed=0, batch_size=16,
                   progress=lambda s, n: seen.append((s, n)))
    assert time.perf_counter() - t < 10.0  # 0.5 s, plus slack for a busy machine
    steps = load_encoder(raw)["steps"]
    assert steps >= 1
    assert seen and seen[-1] == (steps, steps)


def test_augment_keeps_shape_and_range_and_follows_the_generator() -> None:
    x = torch.rand(6, 3, 12, 12)
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(4)))


def test_training_starts_from_the_encoder(digits: tuple[np.ndarray, np.ndarray],
                                          encoder: bytes) -> None:
    x, y = digits
    state = encoder_state(encoder)
    # With no learning rate on the pretrained layers, their weights stay the initial ones.
    model = trainer.train(x, y, 10, CFG, seed=0, init=encoder, encoder_lr_scale=0.0)
    for key in ("features.0.weight", "features.4.weight", "embed.0.weight", "embed.0.bias"):
        torch.testing.assert_close(model.state_dict()[key], state[key], rtol=0, atol=0)
    scratch = trainer.train(x, y, 10, CFG, seed=0)
    assert not torch.equal(scratch.state_dict()["features.0.weight"], state["features.0.weight"])
    # the result is an ordinary classifier: it saves, loads and predicts
    probs = trainer.predict(load_weights(save_weights(model)), x[:20])
    assert probs.shape == (20, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_frozen_encoder_is_left_unchanged(digits: tuple[np.ndarray, np.ndarray],
                                            encoder: bytes) -> None:
    x, y = digits
    state = encoder_state(encoder)
    model = trainer.train(x, y, 10, CFG, seed=0, init=encoder, freeze="encoder")
    for key, value in state.items():  # weights and batch-norm statistics
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    np.testing.assert_array_equal(embed(x[:30], model), embed(x[:30], encoder))
    head = FogNet(1, 10)
    assert not torch.equal(model.head.weight, head.head.weight)

    mlp = trainer.train(x, y, 10, CFG, seed=0, init=encoder, freeze="features")
    for key, value in state.items():
        if key.startswith("features."):
            torch.testing.assert_close(mlp.state_dict()[key], value, rtol=0, atol=0)
    assert not torch.equal(mlp.state_dict()["embed.0.weight"], state["embed.0.weight"])


def test_bad_arguments_are_refused(digits: tuple[np.ndarray, np.ndarray],
                                   encoder: bytes) -> None:
    x, y = digits
    with pytest.raises(ValueError):
        trainer.train(x, y, 10, CFG, freeze="encoder")  # freezing needs an init
    with pytest.raises(ValueError):
        trainer.train(x, y, 10, CFG, init=encoder, freeze="head")
    with pytest.raises(ValueError):  # a 1-channel encoder cannot start a 3-channel net
        trainer.train(np.repeat(x, 3, axis=-1), y, 10, CFG, init=encoder)
    with pytest.raises(ValueError):
        pretrain(x[:1], steps=1)
