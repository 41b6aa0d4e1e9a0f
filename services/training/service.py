"""Training service: retrains in the background after N new labels or T seconds.

Consumes ``image.ingested`` (held-out images and where pool pixels live) and the label
topic (``label.submitted`` / ``label.retracted``); publishes ``training.progressed`` while
it trains and ``model.published`` with held-out accuracy, ECE and the reliability diagram.
Training runs in a child process (:mod:`fogmap.training.worker`), so annotators are
never blocked by it.

Label-free representations (``encoder.published``, vectors in the registry): once the
pool is registered, a PCA of the pixels (seconds), then, when ``pretrain_seconds`` > 0, the
pool embedded by an encoder pretrained without labels in the same child. Pretraining
starts only when no retrain is due, but a retrain that falls due while it runs waits for
it (at most ``pretrain_seconds`` plus one embedding pass): the child trains one thing at
a time, and the representation that results serves every later round.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import structlog
from tqdm import tqdm

from fogmap.bus.port import Bus, Subscription
from fogmap.catalog.imagestore import ImageStore
from fogmap.core.events import (
    DatasetRegistered,
    EncoderPublished,
    Envelope,
    ImageIngested,
    LabelRetracted,
    LabelSubmitted,
    ModelPublished,
    TrainingProgressed,
    format_version,
)
from fogmap.core.service import Publisher, payloads
from fogmap.core.settings import TrainingSettings
from fogmap.core.sqlstore import SqliteStore
from fogmap.training.registry import ModelRegistry
from fogmap.training.representation import pca_vectors
from fogmap.training.worker import TrainerPool

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    item_id TEXT PRIMARY KEY, uri TEXT NOT NULL, split TEXT NOT NULL, label INTEGER);
CREATE TABLE IF NOT EXISTS labels (
    label_id TEXT PRIMARY KEY, item_id TEXT NOT NULL, label INTEGER NOT NULL,
    seq INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (seq INTEGER PRIMARY KEY, labels_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS representations (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, uri TEXT NOT NULL);
"""


class TrainingService:
    name = "training"

    def __init__(self, bus: Bus, images: ImageStore, models: ModelRegistry,
                 store: SqliteStore, cfg: TrainingSettings, poll_seconds: float = 0.2,
                 progress: bool = True) -> None:
        self.pub = Publisher(bus, self.name)
        self.images, self.models, self.store, self.cfg = images, models, store, cfg
        self.poll, self.progress = poll_seconds, progress
        self.pool = TrainerPool(cfg.isolate)
        self._first_pending: float | None = None
        self._pretrain_failed = False
        self.busy = False

    @staticmethod
    def open_store(path: object) -> SqliteStore:
        return SqliteStore(path, SCHEMA)  # type: ignore[arg-type]

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(("fogmap.images",), "training", self.on_images, batch_size=5000),
            Subscription(("fogmap.labels",), "training", self.on_labels, batch_size=500),
        ]

    # --- handlers -----------------------------------------------------------------------

    async def on_images(self, events: list[Envelope]) -> None:
        rows, classes = [], None
        for _, p in payloads(events, "image.ingested", "dataset.registered"):
            if isinstance(p, ImageIngested):
                rows.append((p.item_id, p.uri, p.split, p.label))
            elif isinstance(p, DatasetRegistered):
                classes = len(p.classes)
        with self.store.tx() as db:
            db.executemany("INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?)", rows)
            if classes is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)", (str(classes),))

    async def on_labels(self, events: list[Envelope]) -> None:
        with self.store.tx() as db:
            for env, p in payloads(events, "label.submitted", "label.retracted"):
                if not self.store.fresh(db, env.id):
                    continue
                if isinstance(p, LabelSubmitted):
                    seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM labels").fetchone()
                    db.execute("INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, 1)",
                               (p.label_id, p.item_id, p.label, seq[0]))
                elif isinstance(p, LabelRetracted):
                    seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM labels").fetchone()
                    db.execute("UPDATE labels SET active = 0, seq = ? WHERE label_id = ?",
                               (seq[0], p.label_id))
        if self._first_pending is None and self._pending() > 0:
            self._first_pending = time.monotonic()

    # --- the retraining loop ------------------------------------------------------------

    def _pending(self) -> int:
        """Label changes since the last published model."""
        done = self.store.query("SELECT COALESCE(MAX(labels_seq), 0) FROM models")[0][0]
        return int(self.store.query("SELECT COUNT(*) FROM labels WHERE seq > ?", (done,))[0][0])

    def due(self) -> bool:
        pending = self._pending()
        if pending == 0:
            return False
        if pending >= self.cfg.every_n_labels:
            return True
        if not self.store.query("SELECT 1 FROM models LIMIT 1"):
            return True  # no model yet: the first one as soon as min_labels allow
        waited = time.monotonic() - (self._first_pending or time.monotonic())
        return self.cfg.every_seconds > 0 and waited >= self.cfg.every_seconds

    async def run(self) -> None:
        while True:
            work = (self.publish_pca if self.wants("pca") else self.retrain if self.due()
                    else self.publish_pretrained if self.wants("simclr") else None)
            if work is not None:
                try:
                    await work()
                except Exception:  # noqa: BLE001 - keep the loop alive, retry next tick
                    log.exception("training work failed", work=work.__name__)
                    self._pretrain_failed |= work == self.publish_pretrained
                    await asyncio.sleep(5)
            await asyncio.sleep(self.poll)

    def training_set(self) -> tuple[list[str], np.ndarray, int]:
        """URIs and labels of every labeled item (its latest active label wins)."""
        rows = self.store.query(
            "SELECT i.uri, l.label, l.seq FROM labels l JOIN images i USING (item_id) "
            "WHERE l.active = 1 AND i.split = 'pool' ORDER BY l.item_id, l.seq")
        latest = {uri: label for uri, label, _ in rows}
        seq = self.store.query("SELECT COALESCE(MAX(seq), 0) FROM labels")[0][0]
        return list(latest), np.array(list(latest.values()), dtype=np.int64), int(seq)

    async def retrain(self) -> ModelPublished | None:
        uris, labels, labels_seq = self.training_set()
        classes_row = self.store.query("SELECT value FROM meta WHERE key = 'classes'")
        if len(uris) < self.cfg.min_labels or not classes_row:
            self._first_pending = None
            return None
        classes = int(classes_row[0][0])
        seq = int(self.store.query("SELECT COALESCE(MAX(seq), 0) + 1 FROM models")[0][0])
        version = format_version(seq)
        self.busy, self._first_pending = True, None
        loop = asyncio.get_running_loop()
        last = [0.0]

        bar = tqdm(total=1, desc=f"training {version}", unit="step", leave=False,
                   disable=not self.progress)

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)
            if step == total or step / total - last[0] >= 0.1:
                last[0] = step / total
                event = TrainingProgressed(model_version=version, labels=len(uris), step=step,
                                           total=total)
                asyncio.run_coroutine_threadsafe(self.pub.emit([event]), loop)

        started = time.perf_counter()
        try:
            images, test_images, test_labels = await asyncio.to_thread(self._inputs, uris)
            weights, metrics = await self.pool.fit(
                images, labels, classes, self.cfg, self.cfg.seed + seq, test_images,
                test_labels, progress=progress)
        finally:
            self.busy = False
            bar.close()
        uri = await asyncio.to_thread(self.models.save, version, weights)
        event = ModelPublished(model_version=version, labels=len(uris), metrics=metrics,
                               weights_uri=uri,
                               train_seconds=round(time.perf_counter() - started, 3))
        # Publish, then record: a crash in between retrains the same version (same seed,
        # same labels) and republishes the same event id, which the bus ignores.
        await self.pub.emit([event], ids=[f"model:{version}"])
        with self.store.tx() as db:
            db.execute("INSERT OR IGNORE INTO models VALUES (?, ?)", (seq, labels_seq))
        log.info("model published", version=version, labels=len(uris),
                 accuracy=round(metrics.accuracy, 4), ece=round(metrics.ece, 4))
        return event

    # --- label-free representations -----------------------------------------------------

    def wants(self, kind: str) -> bool:
        """Is a representation of ``kind`` still to be published for a registered pool?"""
        if kind == "simclr" and (self.cfg.pretrain_seconds <= 0 or self._pretrain_failed):
            return False
        if not self.store.query("SELECT 1 FROM meta WHERE key = 'classes'"):
            return False  # the pool is registered after its last image
        if self.store.query("SELECT COUNT(*) FROM images WHERE split = 'pool'")[0][0] < 2:
            return False
        return not self.store.query("SELECT 1 FROM representations WHERE kind = ?", (kind,))

    def _pool(self) -> tuple[list[str], np.ndarray]:
        rows = self.store.query("SELECT item_id, uri FROM images WHERE split = 'pool' "
                                "ORDER BY item_id")
        return [r[0] for r in rows], self.images.get_many([r[1] for r in rows])

    async def publish_pca(self) -> EncoderPublished:
        """PCA of the pool's pixels: the representation before anything is trained."""
        started = time.perf_counter()
        ids, images = await asyncio.to_thread(self._pool)
        vectors = await asyncio.to_thread(pca_vectors, images,
                                          self.cfg.representation_fit_items, self.cfg.seed)
        event = await self._publish_representation("pca", ids, vectors, 0, 0.0)
        log.info("representation published", kind="pca", items=len(ids),
                 seconds=round(time.perf_counter() - started, 2))
        return event

    async def publish_pretrained(self) -> EncoderPublished:
        """Pretrain the encoder without labels (in the child), embed the pool with it."""
        started = time.perf_counter()
        ids, images = await asyncio.to_thread(self._pool)
        bar = tqdm(total=1, desc="pretraining", unit="step", leave=False,
                   disable=not self.progress)

        def progress(step: int, total: int) -> None:
            bar.total = total
            bar.update(step - bar.n)

        self.busy = True
        try:
            vectors, steps, seconds = await self.pool.pretrain_embed(
                images, self.cfg, self.cfg.seed, progress=progress)
        finally:
            self.busy = False
            bar.close()
        event = await self._publish_representation("simclr", ids, vectors, steps, seconds)
        log.info("representation published", kind="simclr", items=len(ids), steps=steps,
                 pretrain_seconds=round(seconds, 2),
                 seconds=round(time.perf_counter() - started, 2))
        return event

    async def _publish_representation(self, kind: str, ids: list[str], vectors: np.ndarray,
                                      steps: int, seconds: float) -> EncoderPublished:
        seq = int(self.store.query(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM representations")[0][0])
        version = format_version(seq, "r")
        uri = await asyncio.to_thread(self.models.save_vectors, version, ids, vectors)
        event = EncoderPublished(representation_version=version, kind=kind,  # type: ignore[arg-type]
                                 dims=int(vectors.shape[1]), items=len(ids),
                                 pretrain_steps=steps, pretrain_seconds=round(seconds, 3),
                                 vectors_uri=uri)
        # As for models: publish, then record; a rerun republishes the same event id.
        await self.pub.emit([event], ids=[f"representation:{version}"])
        with self.store.tx() as db:
            db.execute("INSERT OR IGNORE INTO representations VALUES (?, ?, ?)",
                       (seq, kind, uri))
        return event

    def _inputs(self, uris: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training pixels, and the held-out pixels and labels."""
        test = self.store.query("SELECT uri, label FROM images WHERE split = 'test' "
                                "AND label IS NOT NULL ORDER BY item_id")
        test_images = (self.images.get_many([u for u, _ in test]) if test
                       else np.zeros((0, 1, 1, 1), np.uint8))
        return (self.images.get_many(uris), test_images,
                np.array([y for _, y in test], dtype=np.int64))

    def close(self) -> None:
        self.pool.close()
