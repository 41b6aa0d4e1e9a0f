"""The label-free representation end to end on real adapters: the training service
publishes PCA right after ingest and a pretrained encoder's embedding after it; selection
and the vector service take the newest one (never an older one arriving late), the cold
start picks typical items of it, and the map stops moving with each model version."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from fogmap.bus.sqlite import SqliteBus
from fogmap.catalog import datasets
from fogmap.catalog.imagestore import ImageStore
from fogmap.catalog.ingest import ingest, item_id
from fogmap.core.events import EncoderPublished, Envelope, ImageIngested, PoolScored, wrap
from fogmap.core.settings import SelectionSettings, Settings
from fogmap.selection.service import SelectionService
from fogmap.training.registry import ModelRegistry
from fogmap.training.representation import pca_vectors
from fogmap.training.service import TrainingService
from fogmap.vectors.edge import EdgeVectorIndex
from fogmap.vectors.service import VectorService
from tests.conftest import until
from tests.integration import test_selection as sel
from tests.integration import test_vectors as vec


def encoder_event(registry: ModelRegistry, version: str, ids: list[str],
                  vectors: np.ndarray, kind: str = "pca") -> Envelope:
    uri = registry.save_vectors(version, ids, vectors)
    return wrap(EncoderPublished(representation_version=version, kind=kind,  # type: ignore[arg-type]
                                 dims=vectors.shape[1], items=len(ids), pretrain_steps=0,
                                 pretrain_seconds=0.0, vectors_uri=uri), "/fogmap/test")


def encoders(bus: SqliteBus) -> list[EncoderPublished]:
    bodies = [json.loads(b) for _, b in bus.read("fogmap.models", 0, 10_000)]
    return [EncoderPublished.model_validate(b["data"]) for b in bodies
            if b["type"] == "fogmap.encoder.published"]


@pytest.fixture(scope="module")
def digits() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pool item ids, pool images and their (hidden) classes."""
    ds = datasets.load("digits", 0)
    assert ds.labels is not None
    pool = np.flatnonzero(~ds.is_test)
    return [item_id(ds.name, int(i)) for i in pool], ds.images[pool], ds.labels[pool]


# --- the training service publishes them ------------------------------------------------


async def test_pca_right_after_ingest_then_a_pretrained_encoder(tmp_path: Path,
                                                                settings: Settings) -> None:
    bus = SqliteBus(tmp_path / "bus.db", poll_seconds=0.05)
    images, registry = ImageStore(tmp_path / "img"), ModelRegistry(tmp_path / "models")
    cfg = settings.training.model_copy(update={"pretrain_seconds": 3.0})
    svc = TrainingService(bus, images, registry,
                          TrainingService.open_store(tmp_path / "training.db"), cfg,
                          poll_seconds=0.05, progress=False)
    for sub in svc.subscriptions():
        bus.subscribe(sub)
    await bus.start()
    task = asyncio.create_task(svc.run())
    try:
        ds = datasets.load("digits", 0)
        await ingest(bus, images, ds, progress=False)
        ingested = time.monotonic()
        await until(lambda: encoders(bus), 30, what="the PCA representation")
        pca_after = time.monotonic() - ingested
        await until(lambda: len(encoders(bus)) == 2, 60, what="the pretrained one")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bus.stop()
        svc.close()
    pca, simclr = encoders(bus)
    pool = [item_id(ds.name, int(i)) for i in np.flatnonzero(~ds.is_test)]
    assert (pca.representation_version, pca.kind, pca.dims) == ("r0001", "pca", 32)
    assert pca.items == len(pool) and pca.pretrain_steps == 0 and pca.pretrain_seconds == 0
    assert pca_after < 15, f"PCA took {pca_after:.1f}s after ingest"
    assert (simclr.representation_version, simclr.kind, simclr.dims) == ("r0002", "simclr", 32)
    # The budget binds after the first few (timed) steps; a busy CI machine makes those slow.
    assert simclr.pretrain_steps > 0 and 0 < simclr.pretrain_seconds < 30
    ids, first = registry.load_vectors(pca.vectors_uri)
    ids2, second = registry.load_vectors(simclr.vectors_uri)
    assert ids == ids2 == sorted(pool)
    assert first.shape == second.shape == (len(pool), 32) and np.isfinite(second).all()
    assert not svc.wants("pca") and not svc.wants("simclr")  # once each, also after restart


# --- selection uses it ------------------------------------------------------------------


def selection(tmp_path: Path, registry: ModelRegistry, **cfg: object) -> SelectionService:
    settings = SelectionSettings(**{"strategy": "margin", "batch_size": 8, "initial": 10,
                                    "cold_start_wait_seconds": 30, **cfg})  # type: ignore[arg-type]
    return SelectionService(sel.RecordingBus(),  # type: ignore[arg-type]
                            SelectionService.open_store(tmp_path / "selection.db"), settings,
                            vectors=registry, poll_seconds=0.05)


async def add_pool(svc: SelectionService, ids: list[str]) -> None:
    await svc.on_images(sel.envs(*[ImageIngested(item_id=i, dataset="digits", split="pool",
                                                 uri=f"mem://{i}", height=8, width=8,
                                                 channels=1) for i in ids]))


async def test_cold_start_waits_for_the_representation_and_picks_typical_items(
        tmp_path: Path, digits: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    ids, images, classes = digits
    registry = ModelRegistry(tmp_path / "models")
    vectors = pca_vectors(images)
    svc = selection(tmp_path, registry)
    await add_pool(svc, ids)
    await sel.register(svc, len(ids))
    assert sel.proposals(svc) == []  # margin needs a model; it waits for a representation
    await svc.on_models([encoder_event(registry, "r0001", ids, vectors)])
    [batch] = sel.proposals(svc)
    assert batch.strategy == "typiclust" and batch.model_version is None
    row = {i: n for n, i in enumerate(ids)}
    picked = [row[i.item_id] for i in batch.items]
    # 10 random picks cover 9+ of the 10 digits with probability 0.017; typical items of
    # the PCA map do (deterministically: the selection is seeded).
    assert len(set(classes[picked].tolist())) >= 9
    assert all(it.reason.entropy is None for it in batch.items)  # no model: no measures

    # Candidates carry the representation: the unlabeled rows, then the labeled ones.
    labeled = [n for n in range(0, 200, 7) if n not in picked]
    await svc.on_labels(sel.envs(*[sel.LabelSubmitted(
        label_id=f"l{n}", item_id=ids[n], task_id=None, label=int(classes[n]),
        class_name="x", annotator="a", role="annotator", shown_model_version=None)
        for n in labeled]))
    emb = np.random.default_rng(0).standard_normal((len(ids), 8))
    probs = np.full((len(ids), 3), 1 / 3)
    await svc.on_predictions([e for e in sel.scored(emb, probs, "v0001")
                              if e.subject in row])
    cand_ids, cand, extra = svc._candidates()
    assert cand is not None and cand.representation is not None
    assert cand.labeled_representation is not None
    np.testing.assert_array_equal(cand.representation, vectors[[row[i] for i in cand_ids]])
    assert extra["labeled_ids"] == sorted(ids[n] for n in labeled)
    np.testing.assert_array_equal(cand.labeled_representation,
                                  vectors[[row[i] for i in extra["labeled_ids"]]])
    assert cand.embedding.shape[1] == 8  # the model's embedding is kept alongside


async def test_auto_starts_on_the_representation_alone_and_covers_the_classes(
        tmp_path: Path, digits: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    """Before any model every measure is flat at zero: auto (uncertainty herding) then
    weighs every item alike and covers the PCA map, as typiclust does for margin."""
    ids, images, classes = digits
    registry = ModelRegistry(tmp_path / "models")
    svc = selection(tmp_path, registry, strategy="auto")
    await add_pool(svc, ids)
    await sel.register(svc, len(ids))
    assert sel.proposals(svc) == []  # it waits for the representation
    await svc.on_models([encoder_event(registry, "r0001", ids, pca_vectors(images))])
    [batch] = sel.proposals(svc)
    assert batch.strategy == "auto" and batch.model_version is None
    row = {i: n for n, i in enumerate(ids)}
    picked = [row[i.item_id] for i in batch.items]
    assert len(set(picked)) == 10 and len(set(classes[picked].tolist())) >= 9


async def test_without_a_representation_the_cold_start_falls_back_to_random(
        tmp_path: Path) -> None:
    svc = selection(tmp_path, ModelRegistry(tmp_path / "models"), strategy="auto",
                    cold_start_wait_seconds=0.2)
    await sel.ingest(svc, 40)
    await sel.register(svc, 40)
    assert sel.proposals(svc) == []
    task = asyncio.create_task(svc.run())
    try:
        await until(lambda: sel.proposals(svc), 10, what="the random cold start")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [b.strategy for b in sel.proposals(svc)] == ["random"]


async def test_selection_keeps_the_newest_representation(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    ids = [sel.item(i) for i in range(20)]
    rng = np.random.default_rng(0)
    old, new = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    older, newer = (encoder_event(registry, "r0001", ids, old),
                    encoder_event(registry, "r0002", ids, new, kind="simclr"))
    svc = selection(tmp_path, registry)
    await svc.on_models([newer])
    await svc.on_models([older])  # late
    held = svc.representation.get()
    assert held is not None and held.version == "r0002" and held.kind == "simclr"
    restarted = selection(tmp_path, registry)  # the same store: it reloads r0002
    held = restarted.representation.get()
    assert held is not None and held.version == "r0002"
    np.testing.assert_allclose(held.take(ids), new.astype(np.float32))


# --- the vector service places the map by it -------------------------------------------


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[vec.Rig, ModelRegistry]]:
    bus = SqliteBus(tmp_path / "bus.db", poll_seconds=0.05)
    index = EdgeVectorIndex(tmp_path / "vectors", vec.DIM)
    registry = ModelRegistry(tmp_path / "models")
    service = VectorService(bus, index, tmp_path / "vectors.db", vectors=registry,
                            index_dim=vec.DIM)
    for sub in service.subscriptions():
        bus.subscribe(sub)
    await bus.start()
    yield vec.Rig(bus, index, service), registry
    await bus.stop()
    service.close()
    index.close()
    bus.close()


def placed(rig: vec.Rig, representation: str) -> dict[str, tuple[float, float]]:
    out = {}
    for _, body in rig.bus.read("fogmap.projections", limit=100_000):
        data = json.loads(body)["data"]
        if data.get("representation_version") == representation:
            out[data["item_id"]] = (data["x"], data["y"])
    return out


async def test_the_map_follows_the_representation_not_each_model(
        rig: tuple[vec.Rig, ModelRegistry]) -> None:
    r, registry = rig
    ids = [vec.item(i) for i in range(vec.N)]
    lens = vec.blobs()
    await r.publish(encoder_event(registry, "r0001", ids, lens))
    await vec.until(lambda: r.bus.count("fogmap.projections") == vec.N)
    first = placed(r, "r0001")
    assert len(first) == vec.N
    body = json.loads(r.bus.read("fogmap.projections", limit=1)[0][1])["data"]
    assert body["model_version"] == "v0000"  # placed before any model

    # Two model versions that see the pool very differently: the map does not move.
    rng = np.random.default_rng(5)
    for version in ("v0001", "v0002"):
        await r.publish(*vec.scored(version, rng.standard_normal((vec.N, vec.DIM))))
        await r.publish(PoolScored(model_version=version, items=vec.N, seconds=1.0))
    await vec.settled(r)
    assert r.bus.count("fogmap.projections") == vec.N
    p = r.payload(vec.item(7))
    assert p["model_version"] == "v0002" and (p["x"], p["y"]) == pytest.approx(first[vec.item(7)])
    # Similar items are those of the representation (its four blobs), not the noise.
    hits = await r.service.similar(vec.item(8), k=5)
    assert len(hits) == 5 and all(int(h[0][-6:]) % 4 == 0 for h in hits)

    # A newer representation redraws the map once, aligned to the old one; an older one
    # arriving late changes nothing.
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((vec.DIM, vec.DIM)))
    sharper = (lens + 0.05 * rng.standard_normal(lens.shape)) @ q
    await r.publish(encoder_event(registry, "r0002", ids, sharper, kind="simclr"))
    await vec.until(lambda: r.bus.count("fogmap.projections") == 2 * vec.N)
    second = placed(r, "r0002")
    moved = [np.hypot(second[k][0] - first[k][0], second[k][1] - first[k][1]) for k in first]
    assert np.median(moved) < 0.05, "the map jumped between representations"
    await r.publish(encoder_event(registry, "r0001", ids, lens))
    await vec.settled(r)
    assert r.bus.count("fogmap.projections") == 2 * vec.N
    held = r.service.representation.get()
    assert held is not None and held.version == "r0002"
    assert (r.payload(vec.item(7))["x"]) == pytest.approx(second[vec.item(7)][0])
