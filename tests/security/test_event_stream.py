"""The websocket event stream: credentials and origin are checked before accept."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from fogmap.core.settings import Settings
from tests.conftest import until
from tests.stack import running_stack


@pytest.mark.slow
async def test_stream_refuses_bad_credentials_and_streams_to_good_ones(settings: Settings
                                                                      ) -> None:
    async with running_stack(settings, dashboard=False) as stack:
        rt = stack.runtime
        await until(lambda: rt.labeling.stats().get("tasks_open", 0) > 0, 60)
        ws_url = stack.api.replace("http", "ws") + "/api/events/stream"
        ann = rt.labeling.create_user("ann", "annotator")
        ops = rt.labeling.create_user("ops", "ops")
        for bad in (ws_url, f"{ws_url}?token=nope", f"{ws_url}?token={ann}&topics=fogmap.labels"):
            with pytest.raises(websockets.exceptions.InvalidStatus):
                async with websockets.connect(bad):
                    pass
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"{ws_url}?token={ops}",
                                          origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        async with websockets.connect(f"{ws_url}?token={ops}&topics=fogmap.labels") as ws:
            await asyncio.sleep(0.3)  # subscribed from the live head
            user = rt.labeling.authenticate(ann)
            assert user is not None
            [task] = rt.labeling.lease_next(user, 1)
            rt.labeling.submit_label(user, task["task_id"], 4, "<b>x</b>")
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert event["type"] == "fogmap.label.submitted"
        assert event["data"]["label"] == 4 and event["data"]["rationale"] == "<b>x</b>"
