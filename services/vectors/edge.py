"""The embedded vector index: Qdrant Edge (``qdrant-edge-py``), in process, on disk.

Why Edge and not ``qdrant-client``'s local mode: local mode is a pure-Python brute-force
store meant for prototypes, and it falls apart at the pool sizes fogmap must map. Edge is
Qdrant's own engine (segments, WAL, payload indexes, HNSW) linked into the process.
Measured with ``tests/benchmarks/bench_vectors.py`` on the 2-core development machine,
32-d float vectors with a six-field payload, 10% of points ``status == "labeled"``:

| engine (60k x 32-d unless noted)   | upsert (s) | points/s | top-10 p50 (ms) | filtered p50 (ms) |
|------------------------------------|-----------:|---------:|----------------:|------------------:|
| qdrant-edge-py 0.9, raw shard      |       1.35 |   44,388 |            1.37 |              0.39 |
| fogmap EdgeVectorIndex (this file) |       2.92 |   20,537 |            1.51 |              0.46 |
| qdrant-client 1.20 local mode      |      69.63 |      862 |            5.95 |            576.23 |

(one run, 2026-11-26, qdrant-client run at the full 60k; it warns past 20k points.) The
filtered query is where local mode breaks: it scans every payload in Python, 0.6 s per
query, against 0.4 ms for Edge's keyword index. At 60k x 32-d Edge keeps one plain
(brute-force, exact) segment: the vectors are under its HNSW indexing threshold, so there
is no index build. Wider embeddings cross it; this adapter never calls ``optimize()``
(an HNSW build, ~17 s at 60k x 64-d), so they stay exact brute force, a few ms a query.

Edge keeps its points across restarts (write-ahead log, no explicit flush needed) and
filters on an indexed ``status`` keyword field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from fogmap.vectors.port import Filter, Neighbour, Payload, VectorPoint, point_id

# Edge holds the GIL while it works: small batches keep event-loop stalls near 10 ms.
BATCH = 500
INDEXED_FIELDS = {
    "status": qe.PayloadSchemaType.Keyword,
    "model_seq": qe.PayloadSchemaType.Integer,
    "predicted_class": qe.PayloadSchemaType.Integer,
}


class EdgeVectorIndex:
    """:class:`fogmap.vectors.port.VectorIndex` on a Qdrant Edge shard at ``path``."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        if (self.path / "edge_config.json").exists():
            # Passing the config checks the stored vectors are still `dim`-d cosine.
            self._shard = qe.EdgeShard.load(str(self.path), config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self.path), config)
        present = self._shard.info().payload_schema
        for name, schema in INDEXED_FIELDS.items():
            if name not in present:
                self._shard.update(qe.UpdateOperation.create_field_index(name, schema))

    def upsert(self, points: Sequence[VectorPoint]) -> None:
        for lo in range(0, len(points), BATCH):
            batch = [qe.Point(point_id(p.item_id), _as_list(p.vector),
                              {**p.payload, "item_id": p.item_id})
                     for p in points[lo:lo + BATCH]]
            self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def set_payload(self, item_ids: Sequence[str], payload: Payload) -> None:
        if not item_ids:
            return
        # Edge refuses the whole operation when one id is missing: keep the known ones.
        known = [r.id for r in self._shard.retrieve([point_id(i) for i in item_ids], False, False)]
        if known:
            self._shard.update(qe.UpdateOperation.set_payload(known, dict(payload)))

    def set_payloads(self, updates: Mapping[str, Payload]) -> None:
        ids = list(updates)
        for lo in range(0, len(ids), BATCH):
            chunk = {point_id(i): updates[i] for i in ids[lo:lo + BATCH]}
            for rec in self._shard.retrieve(list(chunk), False, False):
                payload = dict(chunk[str(rec.id)])
                self._shard.update(qe.UpdateOperation.set_payload([rec.id], payload))

    def similar(
        self, query: str | np.ndarray | Sequence[float], k: int = 10,
        filter: Filter | None = None,
    ) -> list[Neighbour]:
        must_not: list[Any] = []
        if isinstance(query, str):
            found = self._shard.retrieve([point_id(query)], False, True)
            if not found or found[0].vector is None:
                return []
            vector: list[float] = _as_list(found[0].vector)  # type: ignore[arg-type]
            must_not = [qe.HasIdCondition({point_id(query)})]
        else:
            vector = _as_list(query)
        must = _conditions(filter)
        flt = qe.Filter(must=must or None, must_not=must_not or None) if must or must_not else None
        hits = self._shard.query(qe.QueryRequest(
            limit=k, query=qe.Query.Nearest(vector), filter=flt, with_payload=True,
        ))
        return [(str((h.payload or {}).get("item_id")), float(h.score), dict(h.payload or {}))
                for h in hits]

    def get(self, item_ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Payload]]:
        out: dict[str, tuple[np.ndarray, Payload]] = {}
        for lo in range(0, len(item_ids), 2 * BATCH):
            ids = [point_id(i) for i in item_ids[lo:lo + 2 * BATCH]]
            for rec in self._shard.retrieve(ids, True, True):
                payload = dict(rec.payload or {})
                out[str(payload["item_id"])] = (np.asarray(rec.vector, dtype=np.float32), payload)
        return out

    def count(self, filter: Filter | None = None) -> int:
        must = _conditions(filter)
        return int(self._shard.count(qe.CountRequest(
            exact=True, filter=qe.Filter(must=must) if must else None)))

    def close(self) -> None:
        self._shard.flush()
        self._shard.close()


def _as_list(vector: np.ndarray | Sequence[float]) -> list[float]:
    if isinstance(vector, list):
        return vector
    return np.asarray(vector, dtype=np.float32).ravel().tolist()


def _conditions(filter: Filter | None) -> list[Any]:
    """Equality filter dict -> Qdrant field conditions (lists match any member)."""
    out: list[Any] = []
    for key, value in (filter or {}).items():
        if isinstance(value, list | tuple | set | frozenset):
            match: Any = qe.MatchAny(list(value))
            out.append(qe.FieldCondition(key=key, match=match))
        elif isinstance(value, float):
            out.append(qe.FieldCondition(key=key, range=qe.RangeFloat(gte=value, lte=value)))
        else:
            out.append(qe.FieldCondition(key=key, match=qe.MatchValue(value)))
    return out
