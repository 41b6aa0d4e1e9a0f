"""The composition root: ``bootstrap(settings) -> Runtime`` wires every adapter.

The embedded default picks the in-process adapters (SQLite bus and stores, torch scorer,
embedded Qdrant). The distributed deployment differs only in which adapters are picked
here; no handler knows which it got.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from fogmap.bus.port import Bus
from fogmap.bus.sqlite import SqliteBus
from fogmap.catalog import datasets
from fogmap.catalog.imagestore import ImageStore
from fogmap.catalog.ingest import ingest
from fogmap.core.service import Service
from fogmap.core.settings import Settings
from fogmap.core.sqlstore import SqliteStore
from fogmap.dashboard.view import DashboardView
from fogmap.labeling.service import LabelingService
from fogmap.monitor.service import MonitorService
from fogmap.scoring.model import EMBED_DIM
from fogmap.scoring.service import ScoringService
from fogmap.scoring.torch_scorer import TorchScorer
from fogmap.selection.service import SelectionService
from fogmap.training.registry import ModelRegistry
from fogmap.training.service import TrainingService
from fogmap.vectors.edge import EdgeVectorIndex
from fogmap.vectors.service import VectorService

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    bus: Bus
    images: ImageStore
    models: ModelRegistry
    labeling: LabelingService
    scoring: ScoringService
    selection: SelectionService
    training: TrainingService
    vectors: VectorService
    monitor: MonitorService
    dashboard: DashboardView
    with_dashboard: bool = True
    dataset_name: str | None = None
    stores: list[SqliteStore] = field(default_factory=list)
    closers: list[object] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def services(self) -> list[Service]:
        services = [self.labeling, self.scoring, self.selection, self.training, self.vectors,
                    self.monitor]
        if self.with_dashboard:  # a headless run (simulate) has no browser to feed
            services.append(self.dashboard)  # type: ignore[arg-type]
        return services  # type: ignore[return-value]

    async def ingest(self, spec: str) -> datasets.Dataset:
        ds = await asyncio.to_thread(datasets.load, spec, 0)
        self.monitor.classes = len(ds.classes)
        self.dataset_name = ds.name
        await ingest(self.bus, self.images, ds, progress=self.settings.progress)
        return ds

    async def start(self) -> None:
        for service in self.services:
            for sub in service.subscriptions():
                self.bus.subscribe(sub)
        await self.bus.start()
        for service in self.services:
            self._tasks.append(asyncio.create_task(service.run(), name=f"run:{service.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.bus.stop()
        with contextlib.suppress(Exception):
            await self.labeling.flush_outbox()
        for closer in self.closers:
            with contextlib.suppress(Exception):
                closer.close()  # type: ignore[attr-defined]
        for store in self.stores:
            store.close()


def bootstrap(settings: Settings, dashboard: bool = True) -> Runtime:
    """Wire the embedded default: everything in this process, state under ``data_dir``."""
    root = Path(settings.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    bus = SqliteBus(root / "bus.db")
    images = ImageStore(root / "images")
    models = ModelRegistry(root / "models")
    stores = {name: path for name, path in (
        ("labeling", root / "labeling.db"), ("scoring", root / "scoring.db"),
        ("selection", root / "selection.db"), ("training", root / "training.db"))}
    labeling_store = LabelingService.open_store(stores["labeling"])
    scoring_store = ScoringService.open_store(stores["scoring"])
    selection_store = SelectionService.open_store(stores["selection"])
    training_store = TrainingService.open_store(stores["training"])
    index = EdgeVectorIndex(root / "vectors", EMBED_DIM)
    scorer = TorchScorer(settings.scoring.mc_samples, settings.scoring.batch_size,
                         settings.scoring.threads)
    runtime = Runtime(
        settings=settings, bus=bus, images=images, models=models,
        labeling=LabelingService(bus, labeling_store, settings.labeling),
        scoring=ScoringService(bus, scorer, images, models, scoring_store, settings.scoring,
                               progress=settings.progress),
        selection=SelectionService(bus, selection_store, settings.selection, vectors=models),
        training=TrainingService(bus, images, models, training_store, settings.training,
                                 progress=settings.progress),
        vectors=VectorService(bus, index, root / "vectors.db", vectors=models,
                              index_dim=EMBED_DIM),
        monitor=MonitorService(bus),
        dashboard=DashboardView(),
        with_dashboard=dashboard,
        stores=[labeling_store, scoring_store, selection_store, training_store],
        closers=[index, bus],  # the training pool is added below
    )
    runtime.closers.append(runtime.training)
    runtime.labeling.ensure_user("admin", "admin", settings.admin_token)
    return runtime
