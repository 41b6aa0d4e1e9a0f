"""Scoring service: every published model version scores the whole pool.

Consumes ``image.ingested`` (to know the pool) and ``model.published``; publishes one
``prediction.scored`` per pool item (all uncertainty measures, the embedding, the model
version), then ``pool.scored``. Event ids are ``<version>:<item>``, so a pass repeated
after a crash republishes nothing new. Images ingested after a model was published are
scored with it at once.
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
    Envelope,
    ImageIngested,
    ModelPublished,
    PoolScored,
    PredictionScored,
    version_seq,
)
from fogmap.core.service import Publisher, payloads
from fogmap.core.settings import ScoringSettings
from fogmap.core.sqlstore import SqliteStore
from fogmap.scoring import uncertainty as U
from fogmap.scoring.port import RawScores, Scorer
from fogmap.training.registry import ModelRegistry

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pool (item_id TEXT PRIMARY KEY, uri TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scored (version TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""
CHUNK = 4096


class ScoringService:
    name = "scoring"

    def __init__(self, bus: Bus, scorer: Scorer, images: ImageStore, models: ModelRegistry,
                 store: SqliteStore, cfg: ScoringSettings, progress: bool = True) -> None:
        self.pub = Publisher(bus, self.name)
        self.scorer, self.images, self.models = scorer, images, models
        self.store, self.cfg, self.progress = store, cfg, progress
        self._lock = asyncio.Lock()  # one scoring pass at a time

    @staticmethod
    def open_store(path: object) -> SqliteStore:
        return SqliteStore(path, SCHEMA)  # type: ignore[arg-type]

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(("fogmap.images",), "scoring", self.on_images, batch_size=5000),
            Subscription(("fogmap.models",), "scoring", self.on_models, batch_size=10),
        ]

    async def run(self) -> None:
        return None

    async def on_images(self, events: list[Envelope]) -> None:
        fresh = [p for _, p in payloads(events, "image.ingested")
                 if isinstance(p, ImageIngested) and p.split == "pool"]
        if not fresh:
            return
        with self.store.tx() as db:
            db.executemany("INSERT OR IGNORE INTO pool (item_id, uri) VALUES (?, ?)",
                           [(p.item_id, p.uri) for p in fresh])
        if self.scorer.version is not None:  # late arrivals: score with the current model
            async with self._lock:
                await self._score([(p.item_id, p.uri) for p in fresh], announce=False)

    async def on_models(self, events: list[Envelope]) -> None:
        newest = max((p for _, p in payloads(events, "model.published")),
                     key=lambda p: version_seq(p.model_version), default=None)
        if not isinstance(newest, ModelPublished):
            return
        done = self.store.query("SELECT MAX(seq) FROM scored")[0][0] or 0
        if version_seq(newest.model_version) <= done and self.scorer.version is not None:
            return
        async with self._lock:
            weights = await asyncio.to_thread(self.models.load, newest.weights_uri)
            self.scorer.load(newest.model_version, weights)
            if version_seq(newest.model_version) <= done:
                return  # restarted: model reloaded, pool already scored with it
            pool = self.store.query("SELECT item_id, uri FROM pool ORDER BY item_id")
            await self._score(pool, announce=True)
            with self.store.tx() as db:
                db.execute("INSERT OR IGNORE INTO scored VALUES (?, ?)",
                           (newest.model_version, version_seq(newest.model_version)))

    async def _score(self, pool: list[tuple[str, str]], announce: bool) -> None:
        version = self.scorer.version
        assert version is not None
        started = time.perf_counter()
        bar = tqdm(total=len(pool), desc=f"scoring {version}", unit="img",
                   disable=not self.progress, leave=False)
        targets = self._targets(pool)
        for lo in range(0, len(pool), CHUNK):
            chunk = pool[lo:lo + CHUNK]
            events = await asyncio.to_thread(self._score_chunk, chunk, targets, version)
            await self.pub.emit(events, ids=[f"{version}:{e.item_id}" for e in events])
            bar.update(len(chunk))
        bar.close()
        seconds = time.perf_counter() - started
        if announce:
            await self.pub.emit([PoolScored(model_version=version, items=len(pool),
                                            seconds=round(seconds, 3))],
                                ids=[f"{version}:pool"])
        log.info("pool scored", version=version, items=len(pool), seconds=round(seconds, 2))

    def _targets(self, pool: list[tuple[str, str]]) -> np.ndarray:
        """MC samples (K, M, C) of a fixed random sample of the pool: EIG's targets."""
        rng = np.random.default_rng(version_seq(self.scorer.version))
        pick = rng.choice(len(pool), size=min(self.cfg.eig_targets, len(pool)), replace=False)
        uris = [pool[i][1] for i in sorted(pick)]
        return self.scorer.score(self.images.get_many(uris)).mc if uris else np.zeros((1, 0, 1))

    def _score_chunk(self, chunk: list[tuple[str, str]], targets: np.ndarray,
                     version: str) -> list[PredictionScored]:
        raw: RawScores = self.scorer.score(self.images.get_many([u for _, u in chunk]))
        return to_events([i for i, _ in chunk], raw, targets, version)


def to_events(item_ids: list[str], raw: RawScores, targets: np.ndarray,
              version: str) -> list[PredictionScored]:
    """One ``prediction.scored`` per item, every measure computed from the raw scores."""
    ent, mar, lc = U.entropy(raw.probs), U.margin(raw.probs), U.least_confidence(raw.probs)
    bald = U.bald(raw.mc)
    eig = U.eig(raw.mc, targets) if targets.shape[1] else np.zeros(len(item_ids))
    probs = np.round(raw.probs.astype(np.float64), 5)
    emb = np.round(raw.embedding.astype(np.float64), 4)
    return [
        PredictionScored.model_construct(
            item_id=item, model_version=version, predicted_class=int(probs[i].argmax()),
            probabilities=probs[i].tolist(), entropy=float(ent[i]), margin=float(mar[i]),
            least_confidence=float(lc[i]), bald=float(bald[i]), eig=float(eig[i]),
            embedding=emb[i].tolist(),
        )
        for i, item in enumerate(item_ids)
    ]
