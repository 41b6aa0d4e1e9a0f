"""The whole loop over HTTP with 24 concurrent annotators.

Asserts: no item leased to two annotators at once; every acknowledged label is in the
store and on the bus exactly once; the dashboard document shows the new statuses; a new
model version is published and the pool is rescored with it; every event on the bus
validates against its published schema.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest
from bokeh.client import pull_session
from bokeh.models import ColumnDataSource

from fogmap.core.contract import validate_wire
from fogmap.core.events import TOPICS
from fogmap.core.settings import Settings
from tests.conftest import until
from tests.stack import running_stack

ANNOTATORS = 24
LABELS = 80


def bus_events(runtime, topic: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(body) for _, body in runtime.bus.read(topic, 0, 10**7)]


def dashboard_statuses(url: str) -> dict[str, str]:
    with pull_session(url=f"{url}/") as session:
        for model in session.document.select({"type": ColumnDataSource}):
            data = model.data
            if "item_id" in data and "status" in data:
                return dict(zip(data["item_id"], data["status"], strict=True))
    raise AssertionError("no map data source with item_id and status in the dashboard")


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_concurrent_annotators_over_http(settings: Settings) -> None:
    async with running_stack(settings) as stack:
        rt = stack.runtime
        tokens = {f"ann{i}": rt.labeling.create_user(f"ann{i}", "annotator")
                  for i in range(ANNOTATORS)}
        await until(lambda: rt.labeling.stats().get("tasks_open", 0) >= 40, 60,
                    what="the cold-start batch")
        holders: dict[str, str] = {}  # item -> annotator currently holding its lease
        violations: list[str] = []
        acked: list[dict] = []
        truth = {}
        from fogmap.catalog.datasets import load
        from fogmap.catalog.ingest import item_id
        ds = load("digits")
        truth = {item_id("digits", i): int(y) for i, y in enumerate(ds.labels)}

        async def annotate(name: str, token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=stack.api, headers=headers,
                                         timeout=30) as http:
                deadline = asyncio.get_running_loop().time() + 150
                while asyncio.get_running_loop().time() < deadline:
                    if len(acked) >= LABELS:
                        return
                    r = await http.post("/api/tasks/next", json={"n": 2})
                    assert r.status_code == 200, r.text
                    tasks = r.json()
                    for t in tasks:
                        other = holders.get(t["item_id"])
                        if other not in (None, name):
                            violations.append(f"{t['item_id']} leased to {other} and {name}")
                        holders[t["item_id"]] = name
                    if not tasks:
                        await asyncio.sleep(0.1)
                        continue
                    for t in tasks:
                        r = await http.post(f"/api/tasks/{t['task_id']}/label", json={
                            "label": truth[t["item_id"]], "rationale": f"by {name}"})
                        assert r.status_code == 201, r.text
                        holders.pop(t["item_id"], None)
                        acked.append(r.json())

        await asyncio.gather(*(annotate(n, t) for n, t in tokens.items()))
        assert not violations, violations[:5]
        assert len(acked) >= LABELS
        ids = [a["label_id"] for a in acked]
        assert len(set(ids)) == len(ids)

        stored = Counter(row["label_id"] for row in rt.labeling.labels_of(
            rt.labeling.authenticate(settings.admin_token)))
        assert all(stored[i] == 1 for i in ids)

        def on_bus() -> Counter[str]:
            return Counter(e["data"]["label_id"] for e in bus_events(rt, "fogmap.labels")
                           if e["type"] == "fogmap.label.submitted")

        await until(lambda: all(on_bus()[i] == 1 for i in ids), 20, what="labels on the bus")
        assert all(n == 1 for n in on_bus().values())

        # A model trained on the new labels is published and the pool rescored with it.
        def rescored() -> str | None:
            models = [e["data"] for e in bus_events(rt, "fogmap.models")
                      if e["type"] == "fogmap.model.published" and e["data"]["labels"] >= 40]
            done = {e["data"]["model_version"] for e in bus_events(rt, "fogmap.predictions")
                    if e["type"] == "fogmap.pool.scored"}
            return next((m["model_version"] for m in models if m["model_version"] in done),
                        None)

        version = await until(rescored, 120, what="a new model and a rescored pool")
        scored = [e for e in bus_events(rt, "fogmap.predictions")
                  if e["type"] == "fogmap.prediction.scored"
                  and e["data"]["model_version"] == version]
        pool = sum(1 for e in bus_events(rt, "fogmap.images")
                   if e["type"] == "fogmap.image.ingested" and e["data"]["split"] == "pool")
        assert len({e["subject"] for e in scored}) == pool

        # The vector service answers similar-items queries through the API.
        some = acked[0]["item_id"]
        async with httpx.AsyncClient(base_url=stack.api, timeout=30) as http:
            r = await http.get(f"/api/items/{some}/similar", params={"k": 5},
                               headers={"Authorization": f"Bearer {settings.admin_token}"})
        assert r.status_code == 200, r.text
        hits = r.json()
        assert len(hits) == 5 and all(h["item_id"] != some for h in hits)
        assert all(-1.0 <= h["similarity"] <= 1.0 for h in hits)

        # The dashboard document (over its websocket) shows the labeled items.
        labeled = {a["item_id"] for a in acked}

        def shown() -> bool:
            statuses = dashboard_statuses(stack.dashboard)
            return all(statuses.get(i) in ("labeled", "disputed") for i in labeled)

        deadline = asyncio.get_running_loop().time() + 30
        while not await asyncio.to_thread(shown):
            assert asyncio.get_running_loop().time() < deadline, "dashboard never caught up"
            await asyncio.sleep(0.5)

        # Every event the test saw conforms to its published schema.
        for topic in TOPICS:
            for event in bus_events(rt, topic):
                validate_wire(event)
