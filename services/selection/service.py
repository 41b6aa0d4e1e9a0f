"""Selection service: proposes what to label next, grouped by similarity.

Consumes the pool (``image.ingested``, ``dataset.registered``), every model's scores
(``prediction.scored``, version-guarded: an older version never overwrites a newer one),
and human decisions (labels, retractions, dismissals), and the newest label-free
representation (``encoder.published``; vectors loaded from the registry). Publishes
``batch.proposed``: once before any model exists (the cold start) and once per fully
scored model version (``pool.scored``), each item with the reason it was chosen.

The diversity strategies measure distances in the representation when there is one
(stable across models, meaningful before any label). The cold start waits up to
``cold_start_wait_seconds`` after ingest for the first representation and then picks
typical items of it; without one it picks at random.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import numpy as np
import structlog

from fogmap.bus.port import Bus, Subscription
from fogmap.core.events import (
    BatchProposed,
    DatasetRegistered,
    Envelope,
    ImageIngested,
    ItemDismissed,
    LabelRetracted,
    LabelSubmitted,
    Neighbour,
    PoolScored,
    PredictionScored,
    ProposalReason,
    ProposedItem,
    version_seq,
)
from fogmap.core.representation import NewestRepresentation, VectorsSource, newest_encoder
from fogmap.core.service import Publisher, payloads
from fogmap.core.settings import SelectionSettings
from fogmap.core.sqlstore import SqliteStore
from fogmap.selection import strategies as S

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'unlabeled',   -- unlabeled | proposed | labeled | dismissed
    label INTEGER, label_id TEXT);
CREATE TABLE IF NOT EXISTS scores (
    item_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, predicted INTEGER NOT NULL,
    entropy REAL, margin REAL, lc REAL, bald REAL, eig REAL,
    probs BLOB NOT NULL, emb BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SelectionService:
    name = "selection"

    def __init__(self, bus: Bus, store: SqliteStore, cfg: SelectionSettings,
                 vectors: VectorsSource | None = None, poll_seconds: float = 0.5) -> None:
        self.pub = Publisher(bus, self.name)
        self.store, self.cfg, self.poll = store, cfg, poll_seconds
        self.representation = NewestRepresentation(vectors, store)
        self._lock = asyncio.Lock()

    @staticmethod
    def open_store(path: object) -> SqliteStore:
        return SqliteStore(path, SCHEMA)  # type: ignore[arg-type]

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(("fogmap.images",), "selection", self.on_images, batch_size=5000),
            Subscription(("fogmap.predictions",), "selection", self.on_predictions,
                         batch_size=5000),
            Subscription(("fogmap.labels",), "selection", self.on_labels, batch_size=500),
            Subscription(("fogmap.models",), "selection", self.on_models, batch_size=100),
        ]

    async def run(self) -> None:
        """The cold start's fallback: random once the wait for a representation is over."""
        while True:
            await asyncio.sleep(self.poll)
            if self.store.query("SELECT 1 FROM batches LIMIT 1"):
                continue
            at = self.store.query("SELECT value FROM meta WHERE key = 'registered_at'")
            if at and time.time() - float(at[0][0]) >= self.cfg.cold_start_wait_seconds:
                try:
                    await self.propose(None)
                except Exception:  # noqa: BLE001 - keep the loop alive, retry next tick
                    log.exception("cold start failed")

    # --- handlers -----------------------------------------------------------------------

    async def on_images(self, events: list[Envelope]) -> None:
        ids = [(p.item_id,) for _, p in payloads(events, "image.ingested")
               if isinstance(p, ImageIngested) and p.split == "pool"]
        registered = [p for _, p in payloads(events, "dataset.registered")]
        with self.store.tx() as db:
            db.executemany("INSERT OR IGNORE INTO items (item_id) VALUES (?)", ids)
            for p in registered:
                assert isinstance(p, DatasetRegistered)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)",
                           (str(len(p.classes)),))
        if not registered:
            return
        if (self.cfg.strategy != "random" and self.cfg.cold_start_wait_seconds > 0
                and self.representation.get() is None):
            with self.store.tx() as db:  # run() proposes when the wait is over
                db.execute("INSERT OR IGNORE INTO meta VALUES ('registered_at', ?)",
                           (str(time.time()),))
            return
        await self.propose(None)

    async def on_models(self, events: list[Envelope]) -> None:
        event = newest_encoder(events)
        if event is None:
            return
        held = await asyncio.to_thread(self.representation.offer, event)
        if held is None:
            log.info("older or known representation ignored",
                     version=event.representation_version)
            return
        log.info("representation loaded", version=held.version, kind=held.kind,
                 items=len(held.row))
        if self.store.query("SELECT 1 FROM meta WHERE key = 'classes'"):
            await self.propose(None)  # the cold start, if it was waiting for this

    async def on_predictions(self, events: list[Envelope]) -> None:
        rows = [
            (p.item_id, version_seq(p.model_version), p.predicted_class, p.entropy, p.margin,
             p.least_confidence, p.bald, p.eig,
             np.asarray(p.probabilities, np.float32).tobytes(),
             np.asarray(p.embedding, np.float32).tobytes())
            for _, p in payloads(events, "prediction.scored")
            if isinstance(p, PredictionScored)
        ]
        if rows:
            await asyncio.to_thread(self._upsert_scores, rows)
        for _, p in payloads(events, "pool.scored"):
            assert isinstance(p, PoolScored)
            await self.propose(p.model_version)

    def _upsert_scores(self, rows: list[tuple]) -> None:
        with self.store.tx() as db:
            db.executemany(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (item_id) DO UPDATE SET seq = excluded.seq, "
                "predicted = excluded.predicted, entropy = excluded.entropy, "
                "margin = excluded.margin, lc = excluded.lc, bald = excluded.bald, "
                "eig = excluded.eig, probs = excluded.probs, emb = excluded.emb "
                "WHERE excluded.seq >= scores.seq",
                rows,
            )

    async def on_labels(self, events: list[Envelope]) -> None:
        with self.store.tx() as db:
            for env, p in payloads(events, "label.submitted", "label.retracted",
                                   "item.dismissed"):
                if not self.store.fresh(db, env.id):
                    continue
                if isinstance(p, LabelSubmitted):
                    db.execute("UPDATE items SET state = 'labeled', label = ?, label_id = ? "
                               "WHERE item_id = ?", (p.label, p.label_id, p.item_id))
                elif isinstance(p, LabelRetracted):
                    db.execute("UPDATE items SET state = 'unlabeled', label = NULL, "
                               "label_id = NULL WHERE item_id = ? AND label_id = ?",
                               (p.item_id, p.label_id))
                elif isinstance(p, ItemDismissed):
                    db.execute("UPDATE items SET state = 'dismissed' WHERE item_id = ?",
                               (p.item_id,))

    # --- proposing ----------------------------------------------------------------------

    async def propose(self, version: str | None) -> BatchProposed | None:
        batch_id = version or "cold-start"
        async with self._lock:
            if self.store.query("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,)):
                return None
            if version is None and self.store.query("SELECT 1 FROM batches"):
                return None  # a model already exists: no cold start after a restart
            event = await asyncio.to_thread(self._build, version, batch_id)
            if event is not None:
                await self.pub.emit([event], ids=[f"batch:{batch_id}"])
            with self.store.tx() as db:
                db.execute("INSERT OR IGNORE INTO batches VALUES (?)", (batch_id,))
                if event is not None:
                    db.executemany("UPDATE items SET state = 'proposed' WHERE item_id = ? "
                                   "AND state = 'unlabeled'",
                                   [(i.item_id,) for i in event.items])
        if event is not None:
            log.info("batch proposed", batch=batch_id, strategy=event.strategy,
                     items=len(event.items))
        return event

    def _build(self, version: str | None, batch_id: str) -> BatchProposed | None:
        seed = self.cfg.seed + version_seq(version)
        name, k = self.cfg.strategy, self.cfg.batch_size
        if version is None:  # the cold start: only strategies that need no model
            if name not in S.MODEL_FREE and self.representation.get() is None:
                name = "random"  # no representation yet for typical items
            name = S.cold_start_name(name)
            k = self.cfg.initial
            if name == "random":
                return self._random_start(batch_id, seed)
        ids, cand, extra = self._candidates()
        if cand is None:  # no embeddings at all
            return self._random_start(batch_id, seed) if version is None else None
        pick = S.select(name, cand, k, seed)
        chosen_by = S.phases(name, cand, k)
        # Look-alikes and neighbours where diversity is measured: the representation.
        groups = S.group(cand.space[pick], self.cfg.group_size, seed)
        order = np.lexsort((np.arange(len(pick)), groups))
        nb_idx, nb_sim = S.nearest(cand.space[pick], cand.labeled_space, 3)
        items = []
        for j in order:
            i = int(pick[j])
            neighbours = [Neighbour(item_id=extra["labeled_ids"][int(n)],
                                    label=int(extra["labeled_labels"][int(n)]),
                                    similarity=round(float(s), 4))
                          for n, s in zip(nb_idx[j], nb_sim[j], strict=True)]
            by = chosen_by[j]
            measures = dict(
                entropy=float(cand.entropy[i]), margin=float(cand.margin[i]),
                least_confidence=float(cand.least_confidence[i]), bald=float(cand.bald[i]),
                eig=float(cand.eig[i]), predicted_class=int(cand.probs[i].argmax()),
            ) if extra["scored"] else {}
            reason = ProposalReason(
                strategy=name if by == name else f"{name}:{by}",
                score=float(getattr(cand, S.SCORE_FIELD[by])[i]), neighbours=neighbours,
                **measures)
            items.append(ProposedItem(item_id=ids[i], group=int(groups[j]), reason=reason))
        return BatchProposed(batch_id=batch_id, model_version=version, strategy=name,
                             items=items)

    def _random_start(self, batch_id: str, seed: int) -> BatchProposed | None:
        """The cold start with no embeddings at all: ``initial`` items at random."""
        ids = [r[0] for r in self.store.query(
            "SELECT item_id FROM items WHERE state = 'unlabeled' ORDER BY item_id")]
        rng = np.random.default_rng(seed)
        chosen = [ids[i] for i in rng.permutation(len(ids))[: self.cfg.initial]]
        if not chosen:
            return None
        items = [ProposedItem(item_id=i, group=0,
                              reason=ProposalReason(strategy="random", score=0.0))
                 for i in chosen]
        return BatchProposed(batch_id=batch_id, model_version=None, strategy="random",
                             items=items)

    def _candidates(self) -> tuple[list[str], S.Candidates | None, dict]:
        """The unlabeled items that have embeddings, as strategy input (sorted by id).

        Embeddings normally come with a model's scores; whatever wrote them, a strategy
        can run on them. The representation, when there is one, rides along (and stands
        in for the embedding before any scores); ``([], None, {})`` means neither exists.
        ``extra["labeled_ids"]`` lines up with ``Candidates.labeled_space``.
        """
        rows = self.store.query(
            "SELECT i.item_id, s.entropy, s.margin, s.lc, s.bald, s.eig, s.probs, s.emb "
            "FROM items i JOIN scores s USING (item_id) WHERE i.state = 'unlabeled' "
            "ORDER BY i.item_id")
        labeled = self.store.query(
            "SELECT i.item_id, i.label, s.emb FROM items i JOIN scores s USING (item_id) "
            "WHERE i.state = 'labeled' ORDER BY i.item_id")
        rep = self.representation.get()
        if not rows:
            return self._representation_only() if rep is not None else ([], None, {})
        col = list(zip(*rows, strict=True))
        emb = _stack(col[7], len(rows))  # (N, D)
        lab_emb = _stack([r[2] for r in labeled], len(labeled), emb.shape[1])  # (L, D)
        cand = S.Candidates(
            probs=_stack(col[6], len(rows)), embedding=emb,
            entropy=np.array(col[1]), margin=np.array(col[2]),
            least_confidence=np.array(col[3]), bald=np.array(col[4]), eig=np.array(col[5]),
            labeled_embedding=lab_emb)
        extra = {"labeled_ids": [r[0] for r in labeled],
                 "labeled_labels": [r[1] for r in labeled], "scored": True}
        vectors = None if rep is None else rep.take(col[0])
        if rep is not None and vectors is None:
            log.warning("representation lacks scored items; diversity uses the embedding",
                        representation=rep.version)
        if vectors is not None:
            lab_ids, lab_labels, lab_vectors = self._labeled_representation()
            cand = replace(cand, representation=vectors, labeled_representation=lab_vectors)
            extra.update(labeled_ids=lab_ids, labeled_labels=lab_labels)
        return list(col[0]), cand, extra

    def _labeled_representation(self) -> tuple[list[str], list[int], np.ndarray]:
        """Labeled items that have a representation vector: ids, labels, (L, R)."""
        rep = self.representation.get()
        assert rep is not None
        labeled = [(i, y) for i, y in self.store.query(
            "SELECT item_id, label FROM items WHERE state = 'labeled' ORDER BY item_id")
            if rep.has(i)]
        ids = [i for i, _ in labeled]
        return ids, [y for _, y in labeled], rep.take(ids)  # type: ignore[return-value]

    def _representation_only(self) -> tuple[list[str], S.Candidates | None, dict]:
        """Before any scores: the representation stands in for the embedding, and every
        measure is flat (uniform probabilities, zero uncertainty)."""
        rep = self.representation.get()
        assert rep is not None
        ids = [r[0] for r in self.store.query(
            "SELECT item_id FROM items WHERE state = 'unlabeled' ORDER BY item_id")
            if rep.has(r[0])]
        if not ids:
            return [], None, {}
        vectors = rep.take(ids)
        assert vectors is not None
        lab_ids, lab_labels, lab_vectors = self._labeled_representation()
        classes = self.store.query("SELECT value FROM meta WHERE key = 'classes'")
        cand = S.Candidates.unscored(vectors, lab_vectors,
                                     int(classes[0][0]) if classes else 2)
        return ids, cand, {"labeled_ids": lab_ids, "labeled_labels": lab_labels,
                           "scored": False}


def _stack(blobs: list[bytes] | tuple[bytes, ...], n: int, width: int = 0) -> np.ndarray:
    """n float32 vectors stored as bytes -> (n, width) in one copy."""
    flat = np.frombuffer(b"".join(blobs), np.float32)
    return flat.reshape(n, -1) if n else flat.reshape(0, width)
