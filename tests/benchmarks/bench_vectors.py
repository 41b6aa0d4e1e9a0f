"""Embedded vector stores at map scale: qdrant-edge-py vs qdrant-client local mode.

Run from the repository root::

    .venv/bin/python tests/benchmarks/bench_vectors.py            # 60k points, ~2-4 min
    .venv/bin/python tests/benchmarks/bench_vectors.py --points 5000 --client-points 5000

Each engine gets the same N x 32-d float32 vectors and payloads {uncertainty float, status
keyword (10% "labeled"), predicted_class int, model_seq int, x float, y float}, upserted in
batches of 1000 into a fresh temporary directory. Then 50 top-10 cosine queries (payload
returned), unfiltered and filtered on ``status == "labeled"``; the median latency is
reported. qdrant-client local mode is slow to fill, so it runs on ``--client-points``
(default 20,000; pass 60000 to wait for the whole set). fogmap's own adapter
(:class:`fogmap.vectors.edge.EdgeVectorIndex`) is measured too. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 1000
STATUSES = ["unlabeled"] * 8 + ["proposed", "labeled"]


def dataset(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    payloads = [
        {"uncertainty": float(rng.random()), "status": "labeled" if i % 10 == 0 else
         STATUSES[i % 9], "predicted_class": int(i % 10), "model_seq": 1,
         "x": float(rng.uniform(-1, 1)), "y": float(rng.uniform(-1, 1))}
        for i in range(n)
    ]
    return vectors, payloads


def median_ms(fn: Callable[[np.ndarray], list[Any]], queries: np.ndarray) -> float:
    fn(queries[0])  # warm-up
    times = []
    for q in queries:
        t = time.perf_counter()
        hits = fn(q)
        times.append(time.perf_counter() - t)
        assert hits, "a query returned nothing"
    return 1000 * statistics.median(times)


def bench_edge(root: Path, vectors: np.ndarray, payloads: list[dict[str, Any]],
               queries: np.ndarray) -> dict[str, Any]:
    import qdrant_edge as qe

    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=vectors.shape[1],
                                                       distance=qe.Distance.Cosine))
    shard = qe.EdgeShard.create(str(root / "edge"), config)
    shard.update(qe.UpdateOperation.create_field_index("status", qe.PayloadSchemaType.Keyword))
    t = time.perf_counter()
    for lo in range(0, len(vectors), BATCH):
        pts = [qe.Point(i, vectors[i].tolist(), payloads[i])
               for i in range(lo, min(lo + BATCH, len(vectors)))]
        shard.update(qe.UpdateOperation.upsert_points(pts))
    upsert = time.perf_counter() - t
    t = time.perf_counter()
    shard.optimize()
    optimize = time.perf_counter() - t
    labeled = qe.Filter(must=[qe.FieldCondition(key="status", match=qe.MatchValue("labeled"))])

    def plain(q: np.ndarray) -> list[Any]:
        return shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()),
                                           with_payload=True))

    def filtered(q: np.ndarray) -> list[Any]:
        return shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()),
                                           filter=labeled, with_payload=True))

    row = {"engine": "qdrant-edge-py 0.9 (raw)", "points": len(vectors), "upsert": upsert,
           "optimize": optimize, "query": median_ms(plain, queries),
           "filtered": median_ms(filtered, queries)}
    shard.close()
    return row


def bench_adapter(root: Path, vectors: np.ndarray, payloads: list[dict[str, Any]],
                  queries: np.ndarray) -> dict[str, Any]:
    from fogmap.vectors.edge import EdgeVectorIndex
    from fogmap.vectors.port import VectorPoint

    index = EdgeVectorIndex(root / "adapter", vectors.shape[1])
    points = [VectorPoint(f"bench-{i:06d}", vectors[i], payloads[i]) for i in range(len(vectors))]
    t = time.perf_counter()
    index.upsert(points)
    upsert = time.perf_counter() - t
    row = {"engine": "fogmap EdgeVectorIndex", "points": len(vectors), "upsert": upsert,
           "optimize": None,
           "query": median_ms(lambda q: index.similar(q, 10), queries),
           "filtered": median_ms(lambda q: index.similar(q, 10, {"status": "labeled"}), queries)}
    index.close()
    return row


def bench_client(root: Path, vectors: np.ndarray, payloads: list[dict[str, Any]],
                 queries: np.ndarray) -> dict[str, Any]:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(root / "client"))
    client.create_collection("bench", vectors_config=models.VectorParams(
        size=vectors.shape[1], distance=models.Distance.COSINE))
    t = time.perf_counter()
    for lo in range(0, len(vectors), BATCH):
        hi = min(lo + BATCH, len(vectors))
        client.upsert("bench", points=models.Batch(
            ids=list(range(lo, hi)), vectors=vectors[lo:hi].tolist(), payloads=payloads[lo:hi]))
    upsert = time.perf_counter() - t
    labeled = models.Filter(must=[models.FieldCondition(
        key="status", match=models.MatchValue(value="labeled"))])

    def plain(q: np.ndarray) -> list[Any]:
        return client.query_points("bench", query=q.tolist(), limit=10, with_payload=True).points

    def filtered(q: np.ndarray) -> list[Any]:
        return client.query_points("bench", query=q.tolist(), limit=10, with_payload=True,
                                   query_filter=labeled).points

    row = {"engine": "qdrant-client local mode", "points": len(vectors), "upsert": upsert,
           "optimize": None, "query": median_ms(plain, queries),
           "filtered": median_ms(filtered, queries)}
    client.close()
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| engine | points | upsert (s) | points/s | index build (s) | top-10 query p50 (ms) "
             "| filtered query p50 (ms) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        build = "-" if r["optimize"] is None else f"{r['optimize']:.2f}"
        lines.append(f"| {r['engine']} | {r['points']:,} | {r['upsert']:.2f} | "
                     f"{r['points'] / r['upsert']:,.0f} | {build} | {r['query']:.2f} | "
                     f"{r['filtered']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=60_000)
    parser.add_argument("--client-points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    vectors, payloads = dataset(args.points, args.dim)
    queries = np.random.default_rng(1).standard_normal((args.queries, args.dim)).astype(
        np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows.append(bench_edge(root, vectors, payloads, queries))
        rows.append(bench_adapter(root, vectors, payloads, queries))
        n = min(args.client_points, args.points)
        rows.append(bench_client(root, vectors[:n], payloads[:n], queries))
    print(table(rows))


if __name__ == "__main__":
    main()
