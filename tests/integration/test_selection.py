"""The selection service on a real SQLite store: every strategy proposes a valid batch,
and the cold start runs on embeddings when there are any (random only without them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from fogmap.core.events import (
    BatchProposed,
    DatasetRegistered,
    Envelope,
    EventData,
    ImageIngested,
    LabelSubmitted,
    PoolScored,
    PredictionScored,
    wrap,
)
from fogmap.core.settings import SelectionSettings
from fogmap.scoring import uncertainty as U
from fogmap.selection import strategies as S
from fogmap.selection.service import SelectionService

CLASSES, DIM, BLOBS = 3, 8, 4


class RecordingBus:
    """Publishes into a list: the service only ever publishes."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish(self, events: Sequence[Envelope]) -> None:
        self.published.extend(events)


def envs(*data: EventData) -> list[Envelope]:
    return [wrap(d, "/test") for d in data]


def item(i: int) -> str:
    return f"digits-{i:06d}"


def pool(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings (n, DIM) in BLOBS well-separated blobs, blob ids (n,), probs (n, C)."""
    rng = np.random.default_rng(seed)
    blob = np.arange(n) % BLOBS
    emb = np.eye(BLOBS, DIM)[blob] * 30 + rng.normal(size=(n, DIM))
    logits = rng.normal(size=(n, CLASSES)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return emb, blob, probs


def scored(emb: np.ndarray, probs: np.ndarray, version: str) -> list[Envelope]:
    mc = probs[None] * np.random.default_rng(1).uniform(0.8, 1.2, (4, *probs.shape))
    mc /= mc.sum(-1, keepdims=True)
    bald, ent, mar, lc = U.bald(mc), U.entropy(probs), U.margin(probs), U.least_confidence(
        probs)
    return envs(*[PredictionScored(
        item_id=item(i), model_version=version, predicted_class=int(probs[i].argmax()),
        probabilities=probs[i].tolist(), entropy=float(ent[i]), margin=float(mar[i]),
        least_confidence=float(lc[i]), bald=float(bald[i]), eig=0.1 * float(bald[i]),
        embedding=emb[i].tolist()) for i in range(len(emb))])


def service(tmp_path: Path, strategy: str, **cfg: int) -> SelectionService:
    settings = SelectionSettings(strategy=strategy, **{
        "batch_size": 8, "initial": 4, "cold_start_wait_seconds": 0, **cfg})
    return SelectionService(RecordingBus(),  # type: ignore[arg-type]
                            SelectionService.open_store(tmp_path / "selection.db"), settings)


async def ingest(svc: SelectionService, n: int) -> None:
    await svc.on_images(envs(*[ImageIngested(item_id=item(i), dataset="digits", split="pool",
                                             uri=f"mem://{i}", height=8, width=8,
                                             channels=1) for i in range(n)]))


async def register(svc: SelectionService, n: int) -> None:
    await svc.on_images(envs(DatasetRegistered(
        dataset="digits", classes=[str(c) for c in range(CLASSES)], image_shape=(8, 8, 1),
        pool_size=n, test_size=0)))


async def label(svc: SelectionService, ids: list[int]) -> None:
    await svc.on_labels(envs(*[LabelSubmitted(
        label_id=f"l{i}", item_id=item(i), task_id=None, label=i % CLASSES, class_name="x",
        annotator="ann", role="annotator", shown_model_version=None) for i in ids]))


def proposals(svc: SelectionService) -> list[BatchProposed]:
    bus = svc.pub.bus
    assert isinstance(bus, RecordingBus)
    return [p for p in (e.payload() for e in bus.published) if isinstance(p, BatchProposed)]


async def test_cold_start_without_embeddings_is_random(tmp_path: Path) -> None:
    svc = service(tmp_path, "auto")
    await ingest(svc, 40)
    await register(svc, 40)
    [batch] = proposals(svc)
    assert batch.strategy == "random" and batch.model_version is None
    assert len({i.item_id for i in batch.items}) == 4
    assert all(i.reason.strategy == "random" for i in batch.items)


@pytest.mark.parametrize("strategy", sorted(S.MODEL_FREE - {"random"}))
async def test_cold_start_with_embeddings_but_no_model_runs_the_strategy(
        tmp_path: Path, strategy: str) -> None:
    """Embeddings from a label-free representation arrive before any model is trained."""
    emb, blob, probs = pool(80)
    svc = service(tmp_path, strategy)
    await ingest(svc, 80)
    await svc.on_predictions(scored(emb, probs, "v0001"))  # no pool.scored: no proposal
    assert proposals(svc) == []
    await register(svc, 80)
    [batch] = proposals(svc)
    assert batch.strategy == strategy and batch.model_version is None
    picked = [int(i.item_id.rsplit("-", 1)[1]) for i in batch.items]
    assert sorted(blob[picked].tolist()) == [0, 1, 2, 3]  # one per blob: diverse
    if strategy == "typiclust-margin":
        assert {i.reason.strategy for i in batch.items} == {"typiclust-margin:typiclust"}


async def test_a_strategy_that_needs_a_model_starts_at_random(tmp_path: Path) -> None:
    emb, _, probs = pool(40)
    svc = service(tmp_path, "margin")
    await ingest(svc, 40)
    await svc.on_predictions(scored(emb, probs, "v0001"))
    await register(svc, 40)
    assert [b.strategy for b in proposals(svc)] == ["random"]


@pytest.mark.parametrize("strategy", sorted(S.STRATEGIES))
async def test_every_strategy_proposes_a_valid_batch_after_a_model(tmp_path: Path,
                                                                   strategy: str) -> None:
    n = 120
    emb, _, probs = pool(n)
    svc = service(tmp_path, strategy)
    await ingest(svc, n)
    await register(svc, n)
    cold = {i.item_id for i in proposals(svc)[0].items}
    await label(svc, list(range(0, 40, 3)))
    await svc.on_predictions([*scored(emb, probs, "v0001"),
                              *envs(PoolScored(model_version="v0001", items=n, seconds=1.0))])
    batch = proposals(svc)[-1]
    assert batch.model_version == "v0001" and batch.strategy == strategy
    ids = [i.item_id for i in batch.items]
    assert len(set(ids)) == 8 and not set(ids) & cold
    assert not {item(i) for i in range(0, 40, 3)} & set(ids)  # never a labeled item
    for it in batch.items:
        k = int(it.item_id.rsplit("-", 1)[1])
        by = it.reason.strategy.split(":")[-1]
        measure = {"entropy": U.entropy, "margin": U.margin,
                   "least_confidence": U.least_confidence}.get(S.SCORE_FIELD[by])
        if measure is not None:
            assert it.reason.score == pytest.approx(measure(probs[k:k + 1])[0], abs=1e-5)
        assert len(it.reason.neighbours) == 3  # the nearest labeled items, for context


async def test_typiclust_margin_turns_to_uncertainty_once_labels_accumulate(tmp_path: Path) -> None:
    n = 200
    emb, _, probs = pool(n)
    svc = service(tmp_path, "typiclust-margin")
    await ingest(svc, n)
    await register(svc, n)
    await label(svc, list(range(S.UNCERTAIN_FROM * CLASSES)))
    await svc.on_predictions([*scored(emb, probs, "v0002"),
                              *envs(PoolScored(model_version="v0002", items=n, seconds=1.0))])
    batch = proposals(svc)[-1]
    assert {i.reason.strategy for i in batch.items} == {"typiclust-margin:margin-diverse"}
