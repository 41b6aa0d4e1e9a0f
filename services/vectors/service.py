"""The vector service: embeddings into the index, the 2-D map, each item's status.

Consumes (group ``vectors``):

* ``fogmap.predictions``: ``prediction.scored`` upserts the item's embedding with its
  uncertainty as payload, unless the index already holds a newer model version's
  (``model_seq`` is compared, so a late or redelivered older event is ignored);
  ``pool.scored`` (published after all of that version's predictions on the same topic)
  projects every item of that version to 2-D, aligned to the previous map
  (:mod:`fogmap.vectors.projection`), stores ``x``/``y`` and publishes one
  ``projection.updated`` per item.
* ``fogmap.models``: ``encoder.published`` (the newest version wins; an older one that
  arrives late is ignored) places every item of the label-free representation on the
  map once (aligned to the map so far) and publishes ``projection.updated`` with its
  ``representation_version``. From then on the map stays put: ``pool.scored`` no longer
  re-projects, model versions only update the per-item payload (uncertainty, predicted
  class), and when the representation has the index's width its vectors replace the
  model embeddings in the index, so similar-items queries are stable too.
* ``fogmap.proposals``, ``fogmap.tasks``, ``fogmap.labels``: the ``status`` payload field
  (see :data:`STATUS`). These topics are consumed independently, so the event time
  decides: an event older than the one that set the current status changes nothing.

Effectively once: status events are deduplicated through the inbox; predictions are
idempotent by ``(item, model_seq)``; a projection is recorded as done only after its events
are published, with deterministic event ids, so a redelivered ``pool.scored`` republishes
the same ids (ignored by the log) or nothing. Index writes happen inside the store's
transaction, so a failure rolls the bookkeeping back and the bus redelivers.

Own state (SQLite at ``store_path``): each item's indexed ``model_seq``, status and map
position, the live labels per item, the positions of the last projections.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import structlog

from fogmap.bus.port import Bus, Subscription
from fogmap.core.events import (
    Envelope,
    EventData,
    PoolScored,
    PredictionScored,
    ProjectionUpdated,
    format_version,
    version_seq,
)
from fogmap.core.representation import (
    NewestRepresentation,
    Representation,
    VectorsSource,
    newest_encoder,
)
from fogmap.core.service import Publisher
from fogmap.core.sqlstore import SqliteStore
from fogmap.vectors.port import Neighbour, VectorIndex, VectorPoint
from fogmap.vectors.projection import project

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    model_seq INTEGER,                       -- version of the indexed embedding; NULL: none
    status TEXT NOT NULL DEFAULT 'unlabeled',
    status_at REAL NOT NULL DEFAULT 0,       -- event time of the last status change
    x REAL, y REAL
);
CREATE INDEX IF NOT EXISTS items_seq ON items (model_seq);
CREATE TABLE IF NOT EXISTS labels (label_id TEXT PRIMARY KEY, item_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS labels_item ON labels (item_id);
CREATE TABLE IF NOT EXISTS positions (
    item_id TEXT NOT NULL, model_seq INTEGER NOT NULL, x REAL NOT NULL, y REAL NOT NULL,
    PRIMARY KEY (item_id, model_seq)
);
CREATE TABLE IF NOT EXISTS projections (model_seq INTEGER PRIMARY KEY, items INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rep_projections (seq INTEGER PRIMARY KEY, items INTEGER NOT NULL);
"""

STATUS: dict[str, Callable[[EventData], list[str]]] = {
    "batch.proposed": lambda e: ["proposed"] * len(e.items),  # type: ignore[attr-defined]
    "task.assigned": lambda e: ["assigned"],
    "task.released": lambda e: ["unlabeled"],
    "task.expired": lambda e: ["unlabeled"],
    "label.submitted": lambda e: ["labeled"],
    "label.retracted": lambda e: ["unlabeled"],  # or still labeled: see _retract
    "review.requested": lambda e: ["needs_review"],
    "item.dismissed": lambda e: ["dismissed"],
}
"""Event name -> the status it gives each item it names."""

PROPOSABLE = {"unlabeled", "proposed"}  # a proposal never demotes a labeled item
EMIT_CHUNK = 5000
POSITION_CHUNK = 2000
SQL_CHUNK = 900  # stay under SQLite's bound-parameter limit
ID_NAMESPACE = uuid.UUID("0b9d1c5e-7a43-5f0e-8c21-6d3e4f5a6b7c")


class VectorService:
    """Keeps the vector index and the map in step with predictions and decisions."""

    name = "vectors"

    def __init__(self, bus: Bus, index: VectorIndex, store_path: Path,
                 vectors: VectorsSource | None = None, index_dim: int | None = None) -> None:
        self.index, self.index_dim = index, index_dim
        self.publisher = Publisher(bus, self.name)
        self.store = SqliteStore(store_path, SCHEMA)
        self.representation = NewestRepresentation(vectors, self.store)
        self._projecting = asyncio.Lock()  # one map at a time: model or representation

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(("fogmap.predictions",), "vectors", self._on_predictions),
            Subscription(("fogmap.proposals", "fogmap.tasks", "fogmap.labels"), "vectors",
                         self._on_decisions),
            Subscription(("fogmap.models",), "vectors", self._on_models, batch_size=100),
        ]

    async def run(self) -> None:
        return None

    def close(self) -> None:
        self.store.close()

    # --- queries (for the API) ----------------------------------------------------------

    async def similar(self, item_id: str, k: int = 10,
                      labeled_only: bool = False) -> list[Neighbour]:
        """The ``k`` items most like ``item_id`` as ``(item_id, cosine, payload)``."""
        flt = {"status": "labeled"} if labeled_only else None
        return await asyncio.to_thread(self.index.similar, item_id, k, flt)

    def status(self, item_id: str) -> str | None:
        rows = self.store.query("SELECT status FROM items WHERE item_id = ?", (item_id,))
        return str(rows[0][0]) if rows else None

    # --- predictions --------------------------------------------------------------------

    async def _on_predictions(self, events: list[Envelope]) -> None:
        pending: list[Envelope] = []
        for env in events:
            if env.name == PredictionScored.name:
                pending.append(env)
            elif env.name == PoolScored.name:
                await asyncio.to_thread(self._index_predictions, pending)
                pending = []
                await self._project(env)
        await asyncio.to_thread(self._index_predictions, pending)

    def _index_predictions(self, envs: Sequence[Envelope]) -> None:
        """Upsert embeddings unless the index holds a newer version (runs in a thread)."""
        latest: dict[str, PredictionScored] = {}
        for env in envs:
            p = env.payload()
            assert isinstance(p, PredictionScored)
            old = latest.get(p.item_id)
            if old is None or version_seq(p.model_version) >= version_seq(old.model_version):
                latest[p.item_id] = p
        if not latest:
            return
        rep = self._indexed_representation()
        with self.store.tx() as db:
            current = _rows(db, "SELECT item_id, model_seq, status, x, y FROM items "
                            "WHERE item_id IN ({})", list(latest))
            points, seqs = [], []
            for item_id, p in latest.items():
                seq = version_seq(p.model_version)
                known_seq, status, x, y = current.get(item_id, (None, "unlabeled", None, None))
                if known_seq is not None and seq < known_seq:
                    continue  # stale: a newer model already placed this item
                payload = _prediction_payload(p, seq, status)
                if x is not None:
                    payload.update(x=x, y=y)  # keep the last map position until re-projected
                vector = (rep.vectors[rep.row[item_id]] if rep is not None and rep.has(item_id)
                          else p.embedding)
                points.append(VectorPoint(item_id, vector, payload))
                seqs.append((item_id, seq))
            self.index.upsert(points)
            db.executemany(
                "INSERT INTO items (item_id, model_seq) VALUES (?, ?) ON CONFLICT (item_id) "
                "DO UPDATE SET model_seq = excluded.model_seq", seqs)
        if len(points) < len(latest):
            log.info("stale predictions ignored", count=len(latest) - len(points))

    # --- projection ---------------------------------------------------------------------

    async def _project(self, env: Envelope) -> None:
        pool = env.payload()
        assert isinstance(pool, PoolScored)
        seq = version_seq(pool.model_version)
        async with self._projecting:
            if self.representation.get() is not None:
                return  # the map follows the representation, not each model
            placed = await asyncio.to_thread(self._compute_projection, seq, pool.items)
            if placed is None:
                return
            ids, xy = placed
            await asyncio.to_thread(self._store_positions, seq, ids, xy)
            await self._emit_positions(pool.model_version, None, ids, xy)
            await asyncio.to_thread(self._mark_projected, seq, len(ids))
        log.info("projection published", model_version=pool.model_version, items=len(ids))

    async def _emit_positions(self, version: str, representation: str | None,
                              ids: list[str], xy: np.ndarray) -> None:
        for lo in range(0, len(ids), EMIT_CHUNK):
            # Building 5k envelopes takes ~80 ms of CPU: off the event loop.
            envs = await asyncio.to_thread(
                self._projection_envelopes, version, representation, ids[lo:lo + EMIT_CHUNK],
                xy[lo:lo + EMIT_CHUNK])
            await self.publisher.bus.publish(envs)

    def _compute_projection(self, seq: int, expected: int) -> tuple[list[str], np.ndarray] | None:
        done = self.store.query("SELECT MAX(model_seq) FROM projections")[0][0]
        if done is not None and done >= seq:
            return None  # already projected, or a newer version's map is out
        ids = [r[0] for r in self.store.query(
            "SELECT item_id FROM items WHERE model_seq = ? ORDER BY item_id", (seq,))]
        got = self.index.get(ids)
        ids = [i for i in ids if i in got]
        if not ids:
            return None
        if len(ids) < expected:
            log.warning("projecting fewer items than were scored", model_seq=seq,
                        indexed=len(ids), scored=expected)
        embeddings = np.stack([got[i][0] for i in ids])
        previous = np.full((len(ids), 2), np.nan)
        row = {item_id: n for n, item_id in enumerate(ids)}
        for item_id, x, y in self.store.query(
            "SELECT p.item_id, p.x, p.y FROM positions p JOIN (SELECT item_id, MAX(model_seq) "
            "AS m FROM positions WHERE model_seq < ? GROUP BY item_id) q "
            "ON p.item_id = q.item_id AND p.model_seq = q.m", (seq,),
        ):
            if item_id in row:
                previous[row[item_id]] = (x, y)
        aligned = bool(np.isfinite(previous).any())
        return ids, project(embeddings, previous if aligned else None)

    def _store_positions(self, seq: int, ids: list[str], xy: np.ndarray) -> None:
        rows = [(i, seq, float(x), float(y)) for i, (x, y) in zip(ids, xy, strict=True)]
        # Short transactions: status updates wait for the store lock between chunks.
        for lo in range(0, len(rows), POSITION_CHUNK):
            chunk = rows[lo:lo + POSITION_CHUNK]
            with self.store.tx() as db:
                db.executemany("INSERT OR REPLACE INTO positions (item_id, model_seq, x, y) "
                               "VALUES (?, ?, ?, ?)", chunk)
                db.executemany("UPDATE items SET x = ?, y = ? WHERE item_id = ?",
                               [(x, y, i) for i, _, x, y in chunk])
                self.index.set_payloads({i: {"x": x, "y": y} for i, _, x, y in chunk})

    def _projection_envelopes(self, version: str, representation: str | None,
                              ids: list[str], xy: np.ndarray) -> list[Envelope]:
        key = representation or version
        return [
            self.publisher.envelope(
                ProjectionUpdated(item_id=i, model_version=version, method="pca",
                                  x=float(x), y=float(y),
                                  representation_version=representation),
                uuid.uuid5(ID_NAMESPACE, f"projection:{key}:{i}").hex,
            )
            for i, (x, y) in zip(ids, xy, strict=True)
        ]

    def _mark_projected(self, seq: int, items: int) -> None:
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO projections (model_seq, items) VALUES (?, ?)",
                       (seq, items))
            # Only the latest position per item anchors the next map.
            db.execute("DELETE FROM positions WHERE model_seq < ? AND item_id IN "
                       "(SELECT item_id FROM positions WHERE model_seq = ?)", (seq, seq))

    # --- the label-free representation ---------------------------------------------------

    async def _on_models(self, events: list[Envelope]) -> None:
        event = newest_encoder(events)
        if event is None:
            return
        await asyncio.to_thread(self.representation.offer, event)
        rep = self.representation.get()
        done = self.store.query("SELECT COALESCE(MAX(seq), 0) FROM rep_projections")[0][0]
        if rep is not None and rep.seq > done:
            await self._project_representation(rep)

    def _indexed_representation(self) -> Representation | None:
        """The representation, when its vectors fit the index (else the index keeps the
        model embeddings and only the map follows the representation)."""
        rep = self.representation.get()
        return rep if rep is not None and rep.vectors.shape[1] == self.index_dim else None

    async def _project_representation(self, rep: Representation) -> None:
        async with self._projecting:
            ids = sorted(rep.row)
            xy, newest_model = await asyncio.to_thread(self._place_representation, rep, ids)
            await asyncio.to_thread(self._store_representation, rep, ids, xy)
            # Tagged with the newest model so far, so readers that keep the latest
            # model version's position take this one (v0000: before any model).
            await self._emit_positions(format_version(newest_model), rep.version, ids, xy)
            with self.store.tx() as db:
                db.execute("INSERT OR REPLACE INTO rep_projections VALUES (?, ?)",
                           (rep.seq, len(ids)))
        log.info("representation projected", representation=rep.version, items=len(ids))

    def _place_representation(self, rep: Representation,
                              ids: list[str]) -> tuple[np.ndarray, int]:
        """Map positions (N, 2) of ``ids``, aligned to where they are now; the newest model."""
        with self.store.lock:
            now = _rows(self.store.db, "SELECT item_id, x, y FROM items WHERE item_id IN "
                        "({}) AND x IS NOT NULL", ids)
        previous = np.array([now.get(i, (np.nan, np.nan)) for i in ids], dtype=np.float64)
        vectors = rep.take(ids)
        assert vectors is not None
        xy = project(vectors, previous if np.isfinite(previous).any() else None)
        newest = self.store.query("SELECT COALESCE(MAX(model_seq), 0) FROM items")[0][0]
        return xy, int(newest)

    def _store_representation(self, rep: Representation, ids: list[str],
                              xy: np.ndarray) -> None:
        indexed = self._indexed_representation() is rep
        for lo in range(0, len(ids), POSITION_CHUNK):
            chunk, pos = ids[lo:lo + POSITION_CHUNK], xy[lo:lo + POSITION_CHUNK]
            with self.store.tx() as db:
                db.executemany(
                    "INSERT INTO items (item_id, x, y) VALUES (?, ?, ?) ON CONFLICT (item_id) "
                    "DO UPDATE SET x = excluded.x, y = excluded.y",
                    [(i, float(x), float(y)) for i, (x, y) in zip(chunk, pos, strict=True)])
                if not indexed:
                    self.index.set_payloads({i: {"x": float(x), "y": float(y)}
                                             for i, (x, y) in zip(chunk, pos, strict=True)})
                    continue
                # The index's vectors become the representation's; payloads stay.
                got = self.index.get(chunk)
                status = _rows(db, "SELECT item_id, status FROM items WHERE item_id IN ({})",
                               chunk)
                points = []
                for i, (x, y) in zip(chunk, pos, strict=True):
                    payload = dict(got[i][1]) if i in got else {"status": status[i][0]}
                    payload.update(x=float(x), y=float(y))
                    points.append(VectorPoint(i, rep.vectors[rep.row[i]], payload))
                self.index.upsert(points)

    # --- status -------------------------------------------------------------------------

    async def _on_decisions(self, events: list[Envelope]) -> None:
        await asyncio.to_thread(self._apply_statuses, events)

    def _apply_statuses(self, events: Sequence[Envelope]) -> None:
        """Inbox-deduplicated, last-event-time-wins status updates (runs in a thread)."""
        changed: dict[str, str] = {}
        with self.store.tx() as db:
            for env in events:
                if env.name not in STATUS or not self.store.fresh(db, env.id):
                    continue
                data = env.payload()
                for item_id, status in zip(_items(data), STATUS[env.name](data), strict=True):
                    if env.name == "label.submitted":
                        db.execute("INSERT OR IGNORE INTO labels (label_id, item_id) "
                                   "VALUES (?, ?)", (data.label_id, item_id))  # type: ignore[attr-defined]
                    elif env.name == "label.retracted":
                        status = _retract(db, data.label_id, item_id)  # type: ignore[attr-defined]
                    if _set_status(db, item_id, status, env.time.timestamp()):
                        changed[item_id] = status
            by_status: dict[str, list[str]] = {}
            for item_id, status in changed.items():
                by_status.setdefault(status, []).append(item_id)
            for status, ids in by_status.items():
                self.index.set_payload(ids, {"status": status})


def _items(data: EventData) -> list[str]:
    items = getattr(data, "items", None)
    if isinstance(items, list):  # batch.proposed
        return [it.item_id for it in items]
    return [data.subject()]


def _retract(db: sqlite3.Connection, label_id: str, item_id: str) -> str:
    """Forget the label; the item stays labeled while another annotator's label stands."""
    db.execute("DELETE FROM labels WHERE label_id = ?", (label_id,))
    left = db.execute("SELECT COUNT(*) FROM labels WHERE item_id = ?", (item_id,)).fetchone()[0]
    return "labeled" if left else "unlabeled"


def _set_status(db: sqlite3.Connection, item_id: str, status: str, at: float) -> bool:
    row = db.execute("SELECT status, status_at FROM items WHERE item_id = ?",
                     (item_id,)).fetchone()
    if row is not None:
        current, current_at = row
        if at < current_at or (status == "proposed" and current not in PROPOSABLE):
            return False
    db.execute("INSERT INTO items (item_id, status, status_at) VALUES (?, ?, ?) "
               "ON CONFLICT (item_id) DO UPDATE SET status = excluded.status, "
               "status_at = excluded.status_at", (item_id, status, at))
    return True


def _prediction_payload(p: PredictionScored, seq: int, status: str) -> dict[str, object]:
    return {
        "uncertainty": p.entropy, "margin": p.margin, "least_confidence": p.least_confidence,
        "bald": p.bald, "eig": p.eig, "predicted_class": p.predicted_class,
        "model_version": p.model_version, "model_seq": seq,
        "status": status,
    }


def _rows(db: sqlite3.Connection, sql: str, keys: Iterable[str]) -> dict[str, tuple]:
    """``SELECT key, ... WHERE key IN (...)`` in chunks -> {key: rest of the row}."""
    keys = list(keys)
    out: dict[str, tuple] = {}
    for lo in range(0, len(keys), SQL_CHUNK):
        chunk = keys[lo:lo + SQL_CHUNK]
        cur = db.execute(sql.format(",".join("?" * len(chunk))), chunk)
        out.update({r[0]: tuple(r[1:]) for r in cur})
    return out
