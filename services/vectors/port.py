"""The vector index port: item embeddings with a payload, nearest-neighbour queries.

One adapter per technology: :class:`fogmap.vectors.edge.EdgeVectorIndex` (embedded
Qdrant Edge) in the embedded default, a Qdrant server through ``qdrant-client`` when
distributed. Handlers depend on :class:`VectorIndex` alone.

Semantics every adapter keeps:

* Points are keyed by the fogmap item id (``"digits-000123"``). Qdrant accepts only
  integers or UUIDs as point ids, so adapters map an item id to :func:`point_id`
  (a deterministic UUID5) and keep the item id in the payload under ``item_id``.
* ``upsert`` replaces a point's vector *and* whole payload; ``set_payload`` merges the
  given keys into the payload of points that exist and silently skips unknown ids (a
  status may be known before the item has an embedding).
* Scores are cosine similarities in [-1, 1], highest first. Stored vectors may come back
  L2-normalized (Qdrant normalizes on insert for cosine distance).
* Every method is blocking; async callers run them in ``asyncio.to_thread``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Payload = dict[str, Any]
Filter = Mapping[str, Any]
"""Equality filter on payload fields: ``{"status": "labeled"}``; a list or tuple value
matches any of its members (``{"status": ["labeled", "needs_review"]}``); all keys must
match."""

ID_NAMESPACE = uuid.UUID("6f1c3b8e-2d4a-5b7c-9e0f-1a2b3c4d5e6f")


def point_id(item_id: str) -> str:
    """The deterministic UUID under which ``item_id`` is stored."""
    return str(uuid.uuid5(ID_NAMESPACE, item_id))


@dataclass(frozen=True)
class VectorPoint:
    """One item's embedding and payload, as written by :meth:`VectorIndex.upsert`."""

    item_id: str
    vector: np.ndarray | Sequence[float]
    payload: Payload = field(default_factory=dict)


Neighbour = tuple[str, float, Payload]
"""``(item_id, cosine similarity, payload)``."""


class VectorIndex(Protocol):
    """Embeddings of pool items, their payload (status, uncertainty, map position)."""

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points (vector and whole payload). Durable on return."""
        ...

    def set_payload(self, item_ids: Sequence[str], payload: Payload) -> None:
        """Merge ``payload`` into the payload of each existing item; unknown ids are skipped."""
        ...

    def set_payloads(self, updates: Mapping[str, Payload]) -> None:
        """Per-item :meth:`set_payload` in one call (``{item_id: partial payload}``)."""
        ...

    def similar(
        self, query: str | np.ndarray | Sequence[float], k: int = 10,
        filter: Filter | None = None,
    ) -> list[Neighbour]:
        """The ``k`` items most similar to an item id (itself excluded) or a raw vector,
        restricted to points whose payload matches ``filter``. An unknown item id gives []."""
        ...

    def get(self, item_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Payload]]:
        """Vector (float32, 1-D) and payload of each known item; unknown ids are absent."""
        ...

    def count(self, filter: Filter | None = None) -> int:
        """Number of points (matching ``filter`` when given)."""
        ...

    def close(self) -> None:
        """Flush and release the index; the instance is unusable afterwards."""
        ...
