"""A label-free representation as its consumers hold it: one vector per pool item.

The training service publishes ``encoder.published`` with a URI; the selection and vector
services load the vectors behind it (through any :class:`VectorsSource`, the model
registry in practice) and keep only the newest version: an older event that arrives late
is ignored, so redelivery and reordering never roll the representation back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog

from fogmap.core.events import EncoderPublished, Envelope, version_seq
from fogmap.core.service import payloads
from fogmap.core.sqlstore import SqliteStore

log = structlog.get_logger(__name__)


class VectorsSource(Protocol):
    def load_vectors(self, uri: str) -> tuple[list[str], np.ndarray]:
        """(N,) item ids and (N, R) float32 vectors stored under ``uri``."""
        ...


@dataclass(frozen=True)
class Representation:
    version: str  # r0001, r0002...
    kind: str
    vectors: np.ndarray  # (N, R) float32
    row: dict[str, int]  # item id -> row of ``vectors``

    @classmethod
    def load(cls, source: VectorsSource, version: str, kind: str,
             uri: str) -> Representation:
        ids, vectors = source.load_vectors(uri)
        return cls(version, kind, vectors, {item: n for n, item in enumerate(ids)})

    @property
    def seq(self) -> int:
        return version_seq(self.version)

    def has(self, item_id: str) -> bool:
        return item_id in self.row

    def take(self, ids: Sequence[str]) -> np.ndarray | None:
        """Vectors (len(ids), R) of ``ids`` in that order; None when one has none."""
        try:
            rows = [self.row[i] for i in ids]
        except KeyError:
            return None
        return self.vectors[rows] if rows else np.zeros((0, self.vectors.shape[1]),
                                                        np.float32)


def newest_encoder(events: Sequence[Envelope]) -> EncoderPublished | None:
    """The highest-versioned ``encoder.published`` among ``events``, if any."""
    found = [p for _, p in payloads(events, EncoderPublished.name)
             if isinstance(p, EncoderPublished)]
    return max(found, key=lambda p: version_seq(p.representation_version), default=None)


class NewestRepresentation:
    """The newest representation one service has seen, remembered in its own store.

    :meth:`offer` loads an event's vectors only when its version is newer than the one
    held (blocking: call it in a thread); :meth:`get` reloads the held one after a
    restart. Without a source (no shared registry) nothing is ever held.
    """

    TABLE = ("CREATE TABLE IF NOT EXISTS representation (one INTEGER PRIMARY KEY CHECK "
             "(one = 0), version TEXT NOT NULL, kind TEXT NOT NULL, uri TEXT NOT NULL)")

    def __init__(self, source: VectorsSource | None, store: SqliteStore) -> None:
        self.source, self.store = source, store
        self._held: Representation | None = None
        with store.tx() as db:
            db.execute(self.TABLE)

    def get(self) -> Representation | None:
        if self._held is None and self.source is not None:
            row = self.store.query("SELECT version, kind, uri FROM representation")
            if row:
                try:
                    self._held = Representation.load(self.source, *row[0])
                except (OSError, ValueError, KeyError):
                    # The artifact is gone or unreadable: work as if there were none.
                    log.exception("representation unreadable", version=row[0][0])
        return self._held

    def seq(self) -> int:
        row = self.store.query("SELECT version FROM representation")
        return version_seq(row[0][0]) if row else 0

    def offer(self, event: EncoderPublished) -> Representation | None:
        """Hold ``event``'s representation if it is newer; returns it, else None."""
        if self.source is None or version_seq(event.representation_version) <= self.seq():
            return None
        rep = Representation.load(self.source, event.representation_version, event.kind,
                                  event.vectors_uri)
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO representation VALUES (0, ?, ?, ?)",
                       (rep.version, rep.kind, event.vectors_uri))
        self._held = rep
        return rep
