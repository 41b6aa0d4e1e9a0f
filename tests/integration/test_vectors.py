"""The vector index on real embedded Qdrant Edge, and the vector service on the SQLite bus."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fogmap.bus.sqlite import SqliteBus
from fogmap.core.events import (
    BatchProposed,
    Envelope,
    EventData,
    LabelRetracted,
    LabelSubmitted,
    PoolScored,
    PredictionScored,
    ProposalReason,
    ProposedItem,
    TaskAssigned,
    wrap,
)
from fogmap.vectors.edge import EdgeVectorIndex
from fogmap.vectors.port import VectorPoint
from fogmap.vectors.service import VectorService

DIM = 16
N = 200


def blobs(n: int = N, seed: int = 0) -> np.ndarray:
    """(n, DIM) embeddings in four well-separated clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, DIM)) * 5
    return centres[np.arange(n) % 4] + rng.standard_normal((n, DIM))


def item(i: int) -> str:
    return f"digits-{i:06d}"


# --- the adapter ------------------------------------------------------------------------


def test_edge_round_trip_and_reopen_keeps_points(tmp_path: Path) -> None:
    vectors = blobs(50)
    index = EdgeVectorIndex(tmp_path / "idx", DIM)
    index.upsert([VectorPoint(item(i), vectors[i], {"status": "unlabeled", "model_seq": 1})
                  for i in range(50)])
    assert index.count() == 50
    got = index.get([item(3), "digits-missing"])
    assert list(got) == [item(3)]
    vector, payload = got[item(3)]
    assert payload == {"status": "unlabeled", "model_seq": 1, "item_id": item(3)}
    unit = vectors[3] / np.linalg.norm(vectors[3])  # cosine: Qdrant stores unit vectors
    np.testing.assert_allclose(vector, unit, atol=1e-5)
    index.set_payload([item(3), item(4), "digits-missing"], {"status": "labeled"})
    index.close()

    reopened = EdgeVectorIndex(tmp_path / "idx", DIM)
    assert reopened.count() == 50
    assert reopened.count({"status": "labeled"}) == 2
    assert reopened.get([item(3)])[item(3)][1]["status"] == "labeled"
    assert reopened.get([item(5)])[item(5)][1]["model_seq"] == 1
    reopened.close()


def test_reopening_with_another_dimension_is_refused(tmp_path: Path) -> None:
    EdgeVectorIndex(tmp_path / "idx", DIM).close()
    with pytest.raises(Exception, match="(?i)dim|size|vector"):
        EdgeVectorIndex(tmp_path / "idx", DIM + 1)


def test_similar_excludes_the_query_and_honours_the_status_filter(tmp_path: Path) -> None:
    vectors = blobs(40)
    index = EdgeVectorIndex(tmp_path / "idx", DIM)
    index.upsert([VectorPoint(item(i), vectors[i],
                              {"status": "labeled" if i % 5 == 0 else "unlabeled"})
                  for i in range(40)])
    hits = index.similar(item(1), k=5)
    assert len(hits) == 5
    assert item(1) not in [h[0] for h in hits]
    assert all(int(h[0][-6:]) % 4 == 1 for h in hits)  # same cluster
    assert [h[1] for h in hits] == sorted((h[1] for h in hits), reverse=True)

    labeled = index.similar(item(1), k=5, filter={"status": "labeled"})
    assert labeled and all(h[2]["status"] == "labeled" for h in labeled)
    either = index.similar(vectors[1], k=40, filter={"status": ["labeled", "unlabeled"]})
    assert len(either) == 40 and either[0][0] == item(1)
    assert index.similar("digits-missing", k=3) == []
    index.close()


# --- the service on the SQLite bus ------------------------------------------------------


@dataclass
class Rig:
    bus: SqliteBus
    index: EdgeVectorIndex
    service: VectorService

    async def publish(self, *events: EventData | Envelope) -> list[Envelope]:
        envs = [e if isinstance(e, Envelope) else wrap(e, "/fogmap/test") for e in events]
        await self.bus.publish(envs)
        return envs

    def positions(self, version: str) -> dict[str, tuple[float, float]]:
        out = {}
        for _, body in self.bus.read("fogmap.projections", limit=100_000):
            data = json.loads(body)["data"]
            if data["model_version"] == version:
                out[data["item_id"]] = (data["x"], data["y"])
        return out

    def payload(self, item_id: str) -> dict:
        return self.index.get([item_id])[item_id][1]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    bus = SqliteBus(tmp_path / "bus.db", poll_seconds=0.05)
    index = EdgeVectorIndex(tmp_path / "vectors", DIM)
    service = VectorService(bus, index, tmp_path / "vectors.db")
    for sub in service.subscriptions():
        bus.subscribe(sub)
    await bus.start()
    yield Rig(bus, index, service)
    await bus.stop()
    service.close()
    index.close()
    bus.close()


async def until(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def settled(rig: Rig) -> None:
    """Every event published so far has been handled and committed by the service."""
    lag = 1
    deadline = time.monotonic() + 10
    while lag:
        assert time.monotonic() < deadline, "the service did not catch up"
        lag = await rig.bus.lag("vectors")
        await asyncio.sleep(0.02)


def prediction(i: int, version: str, embedding: np.ndarray,
               entropy: float = 0.5) -> PredictionScored:
    return PredictionScored(
        item_id=item(i), model_version=version, predicted_class=i % 4,
        probabilities=[0.7, 0.1, 0.1, 0.1], entropy=entropy, margin=0.4,
        least_confidence=0.3, bald=0.05, eig=0.02, embedding=[float(v) for v in embedding],
    )


def scored(version: str, embeddings: np.ndarray) -> list[EventData]:
    preds: list[EventData] = [prediction(i, version, e) for i, e in enumerate(embeddings)]
    return [*preds, PoolScored(model_version=version, items=len(embeddings), seconds=1.0)]


async def test_rounds_are_indexed_projected_and_move_smoothly(rig: Rig) -> None:
    first = blobs()
    await rig.publish(*scored("v0001", first))
    await until(lambda: rig.bus.count("fogmap.projections") == N)
    before = rig.positions("v0001")
    assert len(before) == N
    xy = np.array(list(before.values()))
    assert np.isfinite(xy).all() and np.abs(xy).max() == pytest.approx(1.0)
    assert rig.index.count({"model_seq": 1}) == N
    p = rig.payload(item(7))
    assert p["uncertainty"] == 0.5 and p["model_version"] == "v0001" and p["status"] == "unlabeled"
    assert (p["x"], p["y"]) == pytest.approx(before[item(7)])

    # The next model sees the same pool through a rotated, mirrored, slightly changed lens.
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((DIM, DIM)))
    second = (first + 0.05 * np.random.default_rng(2).standard_normal(first.shape)) @ q
    await rig.publish(*scored("v0002", second))
    await until(lambda: rig.bus.count("fogmap.projections") == 2 * N)
    after = rig.positions("v0002")
    moved = np.array([np.hypot(after[k][0] - before[k][0], after[k][1] - before[k][1])
                      for k in before])
    assert np.median(moved) < 0.05, "the map jumped between versions"
    assert rig.index.count({"model_seq": 2}) == N
    assert rig.payload(item(7))["x"] == pytest.approx(after[item(7)][0])

    # A late v0001 prediction must not overwrite the v0002 embedding and payload.
    await rig.publish(prediction(7, "v0001", first[7], entropy=1.5))
    await settled(rig)
    p = rig.payload(item(7))
    assert p["model_seq"] == 2 and p["model_version"] == "v0002" and p["uncertainty"] == 0.5
    # ...and a late v0001 pool.scored does not redraw the map.
    await rig.publish(PoolScored(model_version="v0001", items=N, seconds=1.0))
    await settled(rig)
    assert rig.bus.count("fogmap.projections") == 2 * N

    hits = await rig.service.similar(item(8), k=5)
    assert len(hits) == 5 and all(int(h[0][-6:]) % 4 == 0 for h in hits)


async def test_redelivered_events_change_nothing(rig: Rig) -> None:
    predictions, status, _ = rig.service.subscriptions()
    envs = [wrap(e, "/fogmap/test") for e in scored("v0001", blobs(20))]
    await predictions.handler(envs)
    await predictions.handler(envs)  # the bus redelivers an uncommitted batch
    assert rig.index.count() == 20
    assert len(rig.positions("v0001")) == 20
    assert rig.bus.count("fogmap.projections") == 20

    label = wrap(LabelSubmitted(label_id="l1", item_id=item(3), task_id=None, label=1,
                                class_name="one", annotator="ann", role="annotator",
                                shown_model_version="v0001"), "/fogmap/test")
    retract = wrap(LabelRetracted(label_id="l1", item_id=item(3), retracted_by="ann"),
                   "/fogmap/test")
    await status.handler([label])
    await status.handler([retract])
    await status.handler([label, retract])  # redelivered: the inbox skips both
    await status.handler([label])
    assert rig.payload(item(3))["status"] == "unlabeled"
    assert rig.service.status(item(3)) == "unlabeled"
    # The redelivered label left no ghost behind: a later label and its retraction leave
    # the item unlabeled again.
    again = LabelSubmitted(label_id="l2", item_id=item(3), task_id=None, label=1,
                           class_name="one", annotator="ann", role="annotator",
                           shown_model_version="v0001")
    await status.handler([wrap(again, "/fogmap/test")])
    assert rig.payload(item(3))["status"] == "labeled"
    await status.handler([wrap(LabelRetracted(label_id="l2", item_id=item(3),
                                              retracted_by="ann"), "/fogmap/test")])
    assert rig.payload(item(3))["status"] == "unlabeled"


async def test_status_follows_proposals_tasks_and_labels(rig: Rig) -> None:
    # A decision may arrive before the item's first embedding: it is kept for the upsert.
    await rig.publish(LabelSubmitted(label_id="early", item_id=item(0), task_id=None, label=0,
                                     class_name="zero", annotator="a", role="annotator",
                                     shown_model_version=None))
    await settled(rig)
    await rig.publish(*scored("v0001", blobs(12)))
    await until(lambda: rig.bus.count("fogmap.projections") == 12)
    assert rig.payload(item(0))["status"] == "labeled"

    reason = ProposalReason(strategy="margin", score=0.9)
    await rig.publish(BatchProposed(
        batch_id="b1", model_version="v0001", strategy="margin",
        items=[ProposedItem(item_id=item(i), group=0, reason=reason) for i in (0, 1, 2, 3)]))
    await settled(rig)
    statuses = {i: rig.payload(item(i))["status"] for i in range(5)}
    assert statuses == {0: "labeled", 1: "proposed", 2: "proposed", 3: "proposed",
                        4: "unlabeled"}, "a proposal never demotes a labeled item"

    # Topics are consumed independently: a lease granted *before* the label was submitted
    # but handled after it must not win.
    lease = TaskAssigned(task_id="t1", item_id=item(1), annotator="a",
                         lease_expires_at=datetime.now(UTC) + timedelta(minutes=5))
    assigned = wrap(lease, "/fogmap/test")
    await rig.publish(LabelSubmitted(label_id="l1", item_id=item(1), task_id="t1", label=1,
                                     class_name="one", annotator="a", role="annotator",
                                     shown_model_version="v0001"))
    await settled(rig)
    await rig.publish(assigned)
    await settled(rig)
    assert rig.payload(item(1))["status"] == "labeled"

    # Two annotators labeled item 2; one retraction leaves it labeled, the second does not.
    for label_id in ("x1", "x2"):
        await rig.publish(LabelSubmitted(label_id=label_id, item_id=item(2), task_id=None,
                                         label=2, class_name="two", annotator=label_id,
                                         role="annotator", shown_model_version="v0001"))
    await rig.publish(LabelRetracted(label_id="x1", item_id=item(2), retracted_by="x1"))
    await settled(rig)
    assert rig.payload(item(2))["status"] == "labeled"
    await rig.publish(LabelRetracted(label_id="x2", item_id=item(2), retracted_by="x2"))
    await settled(rig)
    assert rig.payload(item(2))["status"] == "unlabeled"

    near = await rig.service.similar(item(4), k=5, labeled_only=True)
    assert {h[0] for h in near} == {item(0), item(1)}
