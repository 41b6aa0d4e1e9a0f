"""Bad input gets a clear 4xx and changes nothing.

Unknown item, unknown class, missing or wrong token, another annotator's task, an
oversized or non-image upload, a malformed event; the label count and every bus event a
request can cause are checked unchanged after them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from fogmap.core.events import DriftAlert, LabelSubmitted, wrap
from fogmap.core.settings import Settings
from tests.conftest import until
from tests.stack import running_stack

REACHABLE = ("fogmap.labels", "fogmap.images", "fogmap.tasks", "fogmap.alerts")


def reachable_events(bus: Any) -> list[str]:
    """Ids of the events a request could cause: labels, uploads, task changes and alerts,
    less lease expiry. The pipeline's own output (predictions, projections, models,
    proposals) goes on meanwhile: on a loaded machine one such step published an event per
    pool item (1,438) in the middle of the refusals, which is no request's doing."""
    bodies = [json.loads(body) for topic in REACHABLE for _, body in bus.read(topic, 0, 10**6)]
    return [e["id"] for e in bodies if e["type"] != "fogmap.task.expired"]


def png(size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("L", (size, size), 128).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.slow
async def test_bad_input_is_refused_and_changes_nothing(settings: Settings) -> None:
    async with running_stack(settings, dashboard=False) as stack:
        rt = stack.runtime
        await until(lambda: rt.labeling.stats().get("tasks_open", 0) > 0, 60, what="tasks")
        alice = {"Authorization": f"Bearer {rt.labeling.create_user('alice', 'annotator')}"}
        bob = {"Authorization": f"Bearer {rt.labeling.create_user('bob', 'annotator')}"}
        ops = {"Authorization": f"Bearer {rt.labeling.create_user('olga', 'ops')}"}
        admin = {"Authorization": f"Bearer {settings.admin_token}"}
        async with httpx.AsyncClient(base_url=stack.api, timeout=30) as http:
            [task] = (await http.post("/api/tasks/next", json={"n": 1}, headers=alice)).json()
            await until(lambda: rt.labeling.stats()["outbox_pending"] == 0, 10)
            before_labels = rt.labeling.stats()["labels"]
            before_bus = reachable_events(rt.bus)

            async def refused(method: str, url: str, status: int, **kw) -> dict:  # type: ignore[no-untyped-def]
                r = await http.request(method, url, **kw)
                assert r.status_code == status, (method, url, r.status_code, r.text)
                body = r.json()
                assert body.get("detail"), "a refusal says why"
                return body

            label = {"label": 1, "rationale": "x"}
            # missing, malformed and wrong tokens
            await refused("POST", "/api/tasks/next", 401, json={"n": 1})
            await refused("POST", "/api/tasks/next", 401, json={"n": 1},
                          headers={"Authorization": "Bearer nope"})
            await refused("POST", "/api/tasks/next", 401, json={"n": 1},
                          headers={"Authorization": "Basic abc"})
            # another annotator's task looks like no task at all
            await refused("POST", f"/api/tasks/{task['task_id']}/label", 404, json=label,
                          headers=bob)
            await refused("POST", f"/api/tasks/{task['task_id']}/action", 404,
                          json={"action": "dismiss"}, headers=bob)
            await refused("POST", f"/api/tasks/{task['task_id']}/release", 404, headers=bob)
            # unknown task, unknown class, bad bodies
            await refused("POST", "/api/tasks/nope/label", 404, json=label, headers=alice)
            await refused("POST", f"/api/tasks/{task['task_id']}/label", 422,
                          json={"label": 99}, headers=alice)
            await refused("POST", f"/api/tasks/{task['task_id']}/label", 422,
                          json={"label": -1}, headers=alice)
            await refused("POST", f"/api/tasks/{task['task_id']}/label", 422,
                          json={"label": 1, "surprise": True}, headers=alice)
            await refused("POST", f"/api/tasks/{task['task_id']}/label", 422,
                          content=b"{not json", headers={**alice,
                                                         "Content-Type": "application/json"})
            await refused("POST", f"/api/tasks/{task['task_id']}/action", 422,
                          json={"action": "explode"}, headers=alice)
            # unknown items: 404 for images, labels and direct labeling
            await refused("GET", "/api/items/nope-1/image", 404, headers=alice)
            await refused("GET", "/api/items/digits-000000/image", 404, headers=bob)
            await refused("POST", "/api/items/nope-1/label", 404, json=label, headers=admin)
            # roles
            await refused("POST", "/api/items/digits-000001/label", 403, json=label,
                          headers=alice)
            await refused("POST", "/api/users", 403, json={"name": "x", "role": "admin"},
                          headers=alice)
            await refused("POST", "/api/tasks/next", 403, json={"n": 1}, headers=ops)
            # uploads: not an image, too large, too many pixels, wrong role
            await refused("POST", "/api/images", 415, headers=admin,
                          files={"file": ("x.png", b"<script>alert(1)</script>", "image/png")})
            big = settings.labeling.max_upload_bytes + 10
            await refused("POST", "/api/images", 413, headers=admin,
                          files={"file": ("x.png", b"\0" * big, "image/png")})
            await refused("POST", "/api/images", 403, headers=alice,
                          files={"file": ("x.png", png(), "image/png")})
            # events: malformed, wrong type, wrong role
            await refused("POST", "/api/events", 422, content=b'{"type": "fogmap.drift.alert"}',
                          headers=ops)
            await refused("POST", "/api/events", 422, content=b"\xff\xfe", headers=ops)
            forged = wrap(LabelSubmitted(label_id="forged", item_id="digits-000001",
                                         task_id=None, label=1, class_name="1",
                                         annotator="x", role="annotator",
                                         shown_model_version=None), "/evil")
            await refused("POST", "/api/events", 403, content=forged.model_dump_json(),
                          headers=ops)
            alert = wrap(DriftAlert(kind="label_drift", severity="info", message="m",
                                    value=1, threshold=0.5), "/ext")
            await refused("POST", "/api/events", 403, content=alert.model_dump_json(),
                          headers=alice)

            assert rt.labeling.stats()["labels"] == before_labels
            assert reachable_events(rt.bus) == before_bus, "a refused request published"

            # and the legitimate paths still work
            r = await http.post(f"/api/tasks/{task['task_id']}/label", json=label,
                                headers=alice)
            assert r.status_code == 201
            r = await http.post("/api/events", content=alert.model_dump_json(), headers=ops)
            assert r.status_code == 202
            r = await http.post("/api/images", headers=admin,
                                files={"file": ("ok.png", png(40), "image/png")})
            assert r.status_code == 201, r.text
            assert json.loads(r.text)["item_id"].startswith("digits-u")
