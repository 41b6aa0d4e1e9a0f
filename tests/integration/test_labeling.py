"""The labeling service on its real SQLite store and bus: leases, overlap, expiry, outbox."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from fogmap.bus.sqlite import SqliteBus
from fogmap.core.events import (
    BatchProposed,
    DatasetRegistered,
    ImageIngested,
    ProposalReason,
    ProposedItem,
    wrap,
)
from fogmap.core.settings import LabelingSettings
from fogmap.labeling.service import Conflict, LabelingService, User

ITEMS = [f"d-{i:04d}" for i in range(30)]


async def service(tmp_path: Path, **cfg: object) -> tuple[LabelingService, SqliteBus]:
    bus = SqliteBus(tmp_path / "bus.db")
    svc = LabelingService(bus, LabelingService.open_store(tmp_path / "labeling.db"),
                          LabelingSettings(**cfg))  # type: ignore[arg-type]
    images = [wrap(ImageIngested(item_id=i, dataset="d", split="pool", uri=f"img:d/{n}",
                                 height=8, width=8, channels=1), "/t")
              for n, i in enumerate(ITEMS)]
    images.append(wrap(DatasetRegistered(dataset="d", classes=["a", "b", "c"],
                                         image_shape=(8, 8, 1), pool_size=30, test_size=0),
                       "/t"))
    await svc.on_images(images)
    proposal = BatchProposed(batch_id="b1", model_version="v0001", strategy="margin", items=[
        ProposedItem(item_id=i, group=n // 5, reason=ProposalReason(strategy="margin",
                                                                   score=0.5))
        for n, i in enumerate(ITEMS)])
    env = wrap(proposal, "/t")
    await svc.on_proposals([env])
    await svc.on_proposals([env])  # redelivered: no duplicate tasks
    return svc, bus


async def test_no_item_is_leased_twice_under_concurrent_threads(tmp_path: Path) -> None:
    svc, _ = await service(tmp_path)
    users = [User(f"u{i}", "annotator") for i in range(12)]
    got: dict[str, list[str]] = {}

    def grab(user: User) -> None:
        got[user.name] = [t["item_id"] for t in svc.lease_next(user, 3)]

    threads = [threading.Thread(target=grab, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    leased = [i for items in got.values() for i in items]
    assert len(leased) == len(set(leased)) == 30  # 12 x 3 asked, 30 exist
    assert svc.stats()["tasks_leased"] == 30


async def test_look_alikes_are_leased_together(tmp_path: Path) -> None:
    svc, _ = await service(tmp_path)
    tasks = svc.lease_next(User("a", "annotator"), 5)
    assert len({t["group"] for t in tasks}) == 1


async def test_expired_lease_returns_the_item_and_a_late_submit_hears_why(tmp_path: Path
                                                                          ) -> None:
    svc, bus = await service(tmp_path, lease_seconds=5)
    alice, bob = User("alice", "annotator"), User("bob", "annotator")
    [task] = svc.lease_next(alice, 1)
    assert svc.expire_leases(now=1e12) == 1
    with pytest.raises(Conflict, match="expired"):
        svc.submit_label(alice, task["task_id"], 1)
    assert task["item_id"] in {t["item_id"] for t in svc.lease_next(bob, 30)}
    await svc.flush_outbox()
    types = [json.loads(b)["type"] for _, b in bus.read("fogmap.tasks", 0, 1000)]
    assert "fogmap.task.expired" in types


async def test_overlap_hands_an_item_to_two_different_annotators(tmp_path: Path) -> None:
    svc, _ = await service(tmp_path, overlap=2)
    a = {t["item_id"] for t in svc.lease_next(User("a", "annotator"), 30)}
    b = {t["item_id"] for t in svc.lease_next(User("b", "annotator"), 30)}
    c = svc.lease_next(User("c", "annotator"), 30)
    assert a == b == set(ITEMS) and c == []


async def test_label_retries_are_idempotent_and_each_label_is_published_once(
        tmp_path: Path) -> None:
    svc, bus = await service(tmp_path)
    user = User("a", "annotator")
    [task] = svc.lease_next(user, 1)
    first = svc.submit_label(user, task["task_id"], 2, "why", label_id="fixedid123")
    again = svc.submit_label(user, task["task_id"], 2, "why", label_id="fixedid123")
    assert not first["duplicate"] and again["duplicate"]
    with pytest.raises(Conflict):
        svc.submit_label(user, task["task_id"], 1, "other", label_id="fixedid123")
    await svc.flush_outbox()
    await svc.flush_outbox()
    labels = [json.loads(b) for _, b in bus.read("fogmap.labels", 0, 100)]
    assert [e["data"]["label_id"] for e in labels] == ["fixedid123"]
    assert labels[0]["data"]["shown_model_version"] == "v0001"


async def test_review_requests_become_tasks_for_the_right_role(tmp_path: Path) -> None:
    svc, _ = await service(tmp_path)
    ann = User("a", "annotator")
    [task] = svc.lease_next(ann, 1)
    svc.quick_action(ann, task["task_id"], "request_expert", "not sure")
    others = {t["item_id"] for t in svc.lease_next(User("b", "annotator"), 30)}
    assert task["item_id"] not in others
    expert = {t["item_id"] for t in svc.lease_next(User("e", "expert"), 50)}
    assert task["item_id"] in expert


async def test_relay_publishes_the_outbox_in_the_background(tmp_path: Path) -> None:
    svc, bus = await service(tmp_path)
    runner = asyncio.create_task(svc.run())
    try:
        user = User("a", "annotator")
        [task] = svc.lease_next(user, 1)
        svc.submit_label(user, task["task_id"], 0)
        for _ in range(100):
            if bus.count("fogmap.labels") == 1:
                break
            await asyncio.sleep(0.02)
        assert bus.count("fogmap.labels") == 1
        assert svc.stats()["outbox_pending"] == 0
    finally:
        runner.cancel()
