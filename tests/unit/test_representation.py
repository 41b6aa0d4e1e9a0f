"""The label-free representation's contract: its event, its artifact, the PCA that comes first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from fogmap.core.events import EncoderPublished, parse, wrap
from fogmap.core.representation import Representation, newest_encoder
from fogmap.training.registry import ModelRegistry
from fogmap.training.representation import pca_vectors


def encoder(version: str = "r0002", **over: object) -> EncoderPublished:
    fields = {"representation_version": version, "kind": "simclr", "dims": 32, "items": 1438,
              "pretrain_steps": 120, "pretrain_seconds": 4.5,
              "vectors_uri": f"representation:{version}", **over}
    return EncoderPublished(**fields)  # type: ignore[arg-type]


def test_encoder_published_round_trips_through_its_envelope() -> None:
    env = wrap(encoder(), "/fogmap/training", "representation:r0002")
    back = parse(env.model_dump_json())
    assert back.type == "fogmap.encoder.published" and back.topic == "fogmap.models"
    assert back.subject == "representation:r0002"
    assert back.dataschema == "urn:fogmap:schema:encoder.published:v1"
    assert back.payload() == encoder()


@pytest.mark.parametrize("bad", [
    {"representation_version": "v0002"}, {"kind": "umap"}, {"dims": 0}, {"items": -1},
    {"pretrain_seconds": -1.0}, {"vectors": [[0.0] * 32]},
])
def test_encoder_published_refuses_what_the_schema_refuses(bad: dict) -> None:
    with pytest.raises(ValidationError):
        encoder(**bad)


def test_the_newest_of_a_batch_wins_whatever_the_order() -> None:
    envs = [wrap(encoder(v), "/t") for v in ("r0003", "r0001", "r0002")]
    newest = newest_encoder(envs)
    assert newest is not None and newest.representation_version == "r0003"
    assert newest_encoder([]) is None


def test_vectors_artifact_round_trips_and_refuses_bad_uris(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    vectors = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    ids = [f"digits-{i:06d}" for i in range(5)]
    uri = registry.save_vectors("r0001", ids, vectors)
    assert uri == "representation:r0001"
    got_ids, got = registry.load_vectors(uri)
    assert got_ids == ids and got.dtype == np.float32
    np.testing.assert_array_equal(got, vectors)
    rep = Representation.load(registry, "r0001", "pca", uri)
    np.testing.assert_array_equal(rep.take([ids[3], ids[1]]), vectors[[3, 1]])
    assert rep.take([ids[0], "digits-missing"]) is None and rep.seq == 1
    for bad in ("model:r0001", "representation:../x", "representation:/0001"):
        with pytest.raises(ValueError):
            registry.load_vectors(bad)
    with pytest.raises(ValueError):
        registry.save_vectors("r0002", ids[:4], vectors)


def test_pca_vectors_are_deterministic_and_fit_on_a_sample() -> None:
    images = np.random.default_rng(0).integers(0, 255, (300, 8, 8, 1), dtype=np.uint8)
    a = pca_vectors(images, fit_items=100, seed=3)
    assert a.shape == (300, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, pca_vectors(images, fit_items=100, seed=3))
    assert pca_vectors(images[:10]).shape == (10, 10)  # no more components than images
