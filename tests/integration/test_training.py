"""The training service: retrains after N new labels or T seconds, publishes metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from fogmap.bus.sqlite import SqliteBus
from fogmap.catalog.imagestore import ImageStore
from fogmap.core.events import (
    DatasetRegistered,
    ImageIngested,
    LabelRetracted,
    LabelSubmitted,
    wrap,
)
from fogmap.core.settings import TrainingSettings
from fogmap.training.registry import ModelRegistry
from fogmap.training.service import TrainingService


async def rig(tmp_path: Path, **cfg: object) -> tuple[TrainingService, SqliteBus]:
    bus = SqliteBus(tmp_path / "bus.db")
    images = ImageStore(tmp_path / "img")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (60, 8, 8, 1), dtype=np.uint8)
    uris = images.append("d", pixels)
    svc = TrainingService(bus, images, ModelRegistry(tmp_path / "models"),
                          TrainingService.open_store(tmp_path / "training.db"),
                          TrainingSettings(**cfg), progress=False)  # type: ignore[arg-type]
    events = [wrap(ImageIngested(item_id=f"d-{i}", dataset="d",
                                 split="test" if i >= 40 else "pool", uri=u, height=8,
                                 width=8, channels=1, label=i % 3 if i >= 40 else None), "/t")
              for i, u in enumerate(uris)]
    events.append(wrap(DatasetRegistered(dataset="d", classes=["a", "b", "c"],
                                         image_shape=(8, 8, 1), pool_size=40, test_size=20),
                       "/t"))
    await svc.on_images(events)
    return svc, bus


def label(i: int, lid: str | None = None) -> object:
    return wrap(LabelSubmitted(label_id=lid or f"l{i}", item_id=f"d-{i}", task_id=None,
                               label=i % 3, class_name="a", annotator="x", role="expert",
                               shown_model_version=None), "/t")


async def test_first_model_after_min_labels_then_every_n(tmp_path: Path) -> None:
    svc, bus = await rig(tmp_path, every_n_labels=5, every_seconds=0, min_labels=4,
                         min_steps=5, max_steps=5)
    await svc.on_labels([label(i) for i in range(3)])
    assert await svc.retrain() is None  # below min_labels: nothing
    await svc.on_labels([label(3)])
    assert svc.due()
    first = await svc.retrain()
    assert first is not None and first.model_version == "v0001" and first.labels == 4
    assert first.metrics.test_items == 20 and 0 <= first.metrics.ece <= 1
    assert len(first.metrics.calibration) == 10
    await svc.on_labels([label(i) for i in range(4, 8)])
    assert not svc.due()  # 4 new < 5
    await svc.on_labels([label(8)])
    assert svc.due()
    published = [json.loads(b)["type"] for _, b in bus.read("fogmap.models", 0, 100)]
    assert "fogmap.model.published" in published
    assert "fogmap.training.progressed" in published


async def test_time_trigger_and_retractions(tmp_path: Path) -> None:
    svc, _ = await rig(tmp_path, every_n_labels=100, every_seconds=0.3, min_labels=2,
                       min_steps=5, max_steps=5)
    await svc.on_labels([label(i) for i in range(4)])
    await svc.retrain()
    await svc.on_labels([label(9)])
    assert not svc.due()
    await asyncio.sleep(0.4)
    assert svc.due()
    uris, _, _ = svc.training_set()
    await svc.on_labels([wrap(LabelRetracted(label_id="l9", item_id="d-9", retracted_by="x"),
                              "/t")])
    assert len(svc.training_set()[0]) == len(uris) - 1


async def test_redelivered_labels_count_once(tmp_path: Path) -> None:
    svc, _ = await rig(tmp_path)
    batch = [label(i) for i in range(5)]
    await svc.on_labels(batch)
    await svc.on_labels(batch)
    assert len(svc.training_set()[0]) == 5
    assert svc.store.query("SELECT COUNT(*) FROM labels")[0][0] == 5
