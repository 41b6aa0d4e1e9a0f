"""The dashboard: its read model, one session's sync, and the live server end to end.

The live tests use the real embedded bus, a real Bokeh server and a websocket client. The
Bokeh client API is blocking (it runs its own tornado loop), so the client lives on
one dedicated thread while the server, the bus and the read model run in the test's loop.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from bokeh.models import (
    AllIndices,
    GroupFilter,
    IndexFilter,
    IntersectionFilter,
    UnionFilter,
)
from bokeh.server.server import Server
from PIL import Image
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

from fogmap.bus.sqlite import SqliteBus
from fogmap.catalog.imagestore import ImageStore
from fogmap.core import events as ev
from fogmap.core.events import Envelope, wrap
from fogmap.dashboard.panels import ALL_CLASSES, Panels, build, map_filter
from fogmap.dashboard.server import start_dashboard, stop_dashboard
from fogmap.dashboard.status import STATUSES
from fogmap.dashboard.sync import SessionSync
from fogmap.dashboard.view import DashboardView

N = 50
CLASSES = ["cat", "dog", "<b>bird</b>"]
REGISTERED = ev.DatasetRegistered(dataset="toy", classes=CLASSES, image_shape=(8, 8, 1),
                                  pool_size=N, test_size=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


def label(item: str, cls: int, who: str, label_id: str | None = None) -> ev.LabelSubmitted:
    return ev.LabelSubmitted(label_id=label_id or uuid.uuid4().hex, item_id=item,
                             task_id=None, label=cls, class_name=CLASSES[cls], annotator=who,
                             role="annotator", shown_model_version="v0001")


def scored(item: str, version: str, entropy: float, predicted: int = 0) -> ev.PredictionScored:
    return ev.PredictionScored(item_id=item, model_version=version, predicted_class=predicted,
                               probabilities=[0.5, 0.3, 0.2], entropy=entropy, margin=0.2,
                               least_confidence=0.5, bald=0.1, eig=0.05, embedding=[0.0, 1.0])


def published(version: str) -> ev.ModelPublished:
    bins = [ev.CalibrationBin(lower=i / 5, upper=(i + 1) / 5, confidence=(i + 0.5) / 5,
                              accuracy=min(1.0, (i + 0.3) / 5), count=10) for i in range(5)]
    metrics = ev.ModelMetrics(accuracy=0.8, ece=0.07, nll=0.6, test_items=50,
                              calibration=bins)
    return ev.ModelPublished(model_version=version, labels=3, metrics=metrics,
                             weights_uri="file:///w.pt", train_seconds=1.5)


class Clock:
    """Envelopes with strictly increasing times, so cross-topic order is explicit."""

    def __init__(self) -> None:
        self.t = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self, data: ev.EventData) -> Envelope:
        self.t += timedelta(seconds=1)
        return wrap(data, "/fogmap/test").model_copy(update={"time": self.t})


# --- the read model on its own ------------------------------------------------------------


def apply(view: DashboardView, clock: Clock, *items: ev.EventData) -> None:
    for data in items:
        view.apply(clock(data))
    view.commit()


def test_two_annotators_who_disagree_dispute_an_item_and_a_retraction_settles_it() -> None:
    view, clock = DashboardView(), Clock()
    apply(view, clock, label("a", 0, "alice", "l1"), label("a", 1, "bob", "l2"))
    assert view.status_of("a") == "disputed"
    assert view.class_balance() == {"cat": 1, "dog": 1}  # names from the labels

    apply(view, clock, ev.LabelRetracted(label_id="l2", item_id="a", retracted_by="bob"))
    assert view.status_of("a") == "labeled"
    assert view.columns()["annotator"] == ["alice"]
    assert view.class_balance() == {"cat": 1, "dog": 0}

    apply(view, clock, ev.LabelRetracted(label_id="l1", item_id="a", retracted_by="alice"))
    assert view.status_of("a") == "unlabeled"
    # A redelivered label that was retracted stays retracted.
    apply(view, clock, label("a", 0, "alice", "l1"))
    assert view.status_of("a") == "unlabeled"


def test_one_annotator_changing_their_mind_is_not_a_dispute() -> None:
    view, clock = DashboardView(), Clock()
    apply(view, clock, label("a", 0, "alice"), label("a", 1, "alice"), label("a", 1, "bob"))
    assert view.status_of("a") == "labeled"
    assert view.columns()["label"].tolist() == [1]


def test_a_stale_prediction_is_ignored() -> None:
    view, clock = DashboardView(), Clock()
    apply(view, clock, scored("a", "v0002", 0.9, predicted=2), scored("a", "v0001", 0.1))
    cols = view.columns()
    assert cols["uncertainty"].tolist() == [0.9]
    assert cols["predicted"].tolist() == [2]


def test_task_lifecycle_and_out_of_order_topics() -> None:
    view, clock = DashboardView(), Clock()
    proposal = ev.BatchProposed(batch_id="b1", model_version=None, strategy="random", items=[
        ev.ProposedItem(item_id="a", group=0, reason=ev.ProposalReason(strategy="random",
                                                                       score=0.0))])
    assigned = ev.TaskAssigned(task_id="t1", item_id="a", annotator="alice",
                               lease_expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    apply(view, clock, proposal)
    assert view.status_of("a") == "proposed"
    apply(view, clock, assigned)
    assert view.status_of("a") == "assigned"
    apply(view, clock, ev.TaskExpired(task_id="t1", item_id="a", annotator="alice"))
    assert view.status_of("a") == "unlabeled"
    # The proposal replayed late (topics are read independently) does not resurrect it.
    view.apply(wrap(proposal, "/t").model_copy(update={"time": datetime(2024, 1, 1,
                                                                        tzinfo=UTC)}))
    view.apply(clock(assigned))  # a replayed assignment of a closed task
    view.commit()
    assert view.status_of("a") == "unlabeled"
    apply(view, clock, ev.ReviewRequested(item_id="a", task_id=None, kind="mark_review",
                                          annotator="alice"))
    assert view.status_of("a") == "needs_review"
    apply(view, clock, label("a", 1, "expert"))
    assert view.status_of("a") == "labeled"
    apply(view, clock, ev.ItemDismissed(item_id="b", task_id=None, annotator="alice"))
    assert view.status_of("b") == "dismissed"


def test_revisions_name_exactly_the_rows_that_changed() -> None:
    view, clock = DashboardView(capacity=2), Clock()
    apply(view, clock, REGISTERED, *[scored(f"i{k}", "v0001", 0.5) for k in range(5)])  # > 2
    seen = view.revision
    apply(view, clock, label("i3", 0, "alice"))
    assert view.changed_since(seen).tolist() == [3]
    apply(view, clock, published("v0001"))
    assert view.revisions["models"] == view.revision > view.revisions["alerts"]
    assert view.changed_since(view.revision).tolist() == []


async def test_a_malformed_payload_is_skipped_not_raised() -> None:
    view = DashboardView()
    good = wrap(label("a", 0, "alice"), "/t")
    bad = good.model_copy(update={"data": {**good.data, "label": -3}})
    await view.handle([bad, good])
    assert view.skipped == 1
    assert view.status_of("a") == "labeled"




# --- one session's sync ---------------------------------------------------------------------


def synced(view: DashboardView, panels: Panels) -> bool:
    expected, actual = view.columns(), panels.map_source.data
    return all(list(np.asarray(actual[k]).tolist()) == list(np.asarray(v).tolist())
               for k, v in expected.items() if k not in ("x", "y")) and np.allclose(
        np.asarray(actual["x"], float), expected["x"], equal_nan=True)


def test_a_session_patches_changed_rows_streams_new_ones_and_coalesces() -> None:
    view, clock = DashboardView(), Clock()
    apply(view, clock, REGISTERED, *[scored(f"i{k}", "v0001", 0.5) for k in range(100)])
    panels = build(view)
    sync = SessionSync(view, panels)
    source = panels.map_source
    doc = Document()
    doc.add_root(panels.layout)
    calls: list[str] = []  # what a browser would receive about the map's rows

    def record(event: Any) -> None:
        if getattr(event, "model", None) is source:
            calls.append(type(event).__name__)

    doc.on_change(record)

    sync.update()
    assert calls == [] and sync.pushes == 0  # nothing changed, nothing pushed
    apply(view, clock, label("i3", 0, "alice"))
    apply(view, clock, label("i4", 1, "bob"), scored("new", "v0001", 0.2))
    sync.update()  # two revisions, one push
    assert calls == ["ColumnsPatchedEvent", "ColumnsStreamedEvent"] and sync.pushes == 1
    assert synced(view, panels)
    assert source.data["status"][3] == "labeled"

    apply(view, clock, *[scored(f"i{k}", "v0002", 0.1) for k in range(100)])
    calls.clear()
    sync.update()  # most rows changed: one whole replacement, no row-by-row patch
    assert calls == ["ColumnDataChangedEvent"] and synced(view, panels)

    apply(view, clock, published("v0001"))
    sync.update()
    assert list(panels.models_source.data["version"]) == ["v0001"]
    assert panels.calibration_title.text.startswith("v0001")


def test_filters_combine_status_and_class() -> None:
    assert isinstance(map_filter(list(STATUSES), ALL_CLASSES), AllIndices)
    assert isinstance(map_filter([], ALL_CLASSES), IndexFilter)
    chosen = map_filter(["labeled", "disputed"], "2")
    assert isinstance(chosen, IntersectionFilter)
    by_status, by_class = chosen.operands
    assert isinstance(by_status, UnionFilter)
    assert [(f.column_name, f.group) for f in by_status.operands  # type: ignore[attr-defined]
            ] == [("status", "labeled"), ("status", "disputed")]
    assert isinstance(by_class, GroupFilter)
    assert (by_class.column_name, by_class.group) == ("klass", "2")


# --- the live dashboard -------------------------------------------------------------------


@dataclass
class Live:
    bus: SqliteBus
    view: DashboardView
    server: Server
    port: int
    clock: Clock

    async def emit(self, *items: ev.EventData) -> None:
        await self.bus.publish([self.clock(d) for d in items])


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    bus = SqliteBus(tmp_path / "bus.db", poll_seconds=0.05)
    view = DashboardView()
    bus.subscribe(view.subscription())
    await bus.start()
    images = ImageStore(tmp_path / "images")
    rng = np.random.default_rng(0)
    uris = images.append("toy", rng.integers(0, 255, (N, 8, 8, 1), dtype=np.uint8))
    port = free_port()
    server = start_dashboard(view, images, port, allow_origins=["http://example.test:1"])
    clock = Clock()
    ctx = Live(bus, view, server, port, clock)
    await ctx.emit(REGISTERED)
    await ctx.emit(*[ev.ImageIngested(item_id=f"toy-{i}", dataset="toy", split="pool",
                                      uri=uris[i], height=8, width=8, channels=1)
                     for i in range(N)])
    try:
        yield ctx
    finally:
        stop_dashboard(server)
        await bus.stop()
        bus.close()


@pytest.fixture
def client_thread() -> Any:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def rows(doc: Document) -> dict[str, dict[str, Any]]:
    data = doc.get_model_by_name("map_source").data  # type: ignore[union-attr]
    return {item: {name: data[name][i] for name in data}
            for i, item in enumerate(data["item_id"])}


class Client:
    """A real websocket client session, driven on its own thread."""

    def __init__(self, url: str) -> None:
        self.loop = IOLoop()
        self.session = pull_session(url=url, io_loop=self.loop)

    def watch(self, predicate: Callable[[Document], bool], timeout: float = 10.0) -> bool:
        """Apply the server's pushes until ``predicate`` holds; this closes the session.

        (A ``ClientSession`` applies pushes only inside its blocking loop, which Bokeh
        offers to test suites as ``_loop_until_closed``; so the check runs on the
        client's loop and closes the session to end the wait.)
        """
        deadline = time.monotonic() + timeout
        met: list[bool] = []

        def check() -> None:
            if predicate(self.session.document):
                met.append(True)
                self.session.close()
            elif time.monotonic() > deadline:
                self.session.close()
            else:
                self.loop.call_later(0.05, check)

        self.loop.add_callback(check)
        self.session._loop_until_closed()
        return bool(met)


async def test_the_map_shows_statuses_and_uncertainty_and_updates_live(
        live: Live, client_thread: ThreadPoolExecutor) -> None:
    await live.emit(*[scored(f"toy-{i}", "v0001", entropy=i / N, predicted=i % 3)
                      for i in range(N)])
    await live.emit(*[ev.ProjectionUpdated(item_id=f"toy-{i}", model_version="v0001",
                                           method="pca", x=float(i), y=float(-i))
                      for i in range(N)])
    await live.emit(label("toy-0", 2, "<script>alice</script>"),
                    label("toy-1", 0, "alice"), label("toy-1", 1, "bob"),
                    published("v0001"))
    view = live.view
    await until(lambda: view.status_of("toy-1") == "disputed" and view.placed() == N
                and view.latest_model() is not None and view.status_of("toy-0") == "labeled")

    loop = asyncio.get_running_loop()
    url = f"http://127.0.0.1:{live.port}/"
    client = await loop.run_in_executor(client_thread, Client, url)
    doc = client.session.document
    table = rows(doc)
    assert len(table) == N
    assert table["toy-0"]["status"] == "labeled"
    assert table["toy-0"]["annotator"] == "<script>alice</script>"  # data, not markup
    assert table["toy-1"]["status"] == "disputed"
    assert table["toy-7"]["status"] == "unlabeled"
    assert table["toy-7"]["uncertainty"] == pytest.approx(7 / N)
    assert table["toy-2"]["predicted_name"] == "?b?bird?/b?"  # safe in the tooltip
    assert (table["toy-4"]["x"], table["toy-4"]["y"]) == (4.0, -4.0)
    models = doc.get_model_by_name("models_source").data  # type: ignore[union-attr]
    assert list(models["version"]) == ["v0001"]
    assert list(models["ece"]) == [pytest.approx(0.07)]
    calibration = doc.get_model_by_name("calibration_source")
    assert len(calibration.data["accuracy"]) == 5  # type: ignore[union-attr]
    balance = doc.get_model_by_name("balance_source").data  # type: ignore[union-attr]
    assert dict(zip(balance["name"], balance["count"], strict=True)) == {
        "cat": 1, "dog": 1, "<b>bird</b>": 1}
    mapper = doc.get_model_by_name("uncertainty_mapper")
    assert mapper.high == pytest.approx(np.log(3))  # type: ignore[union-attr]

    # Live: a label, a newer prediction, an alert and a new item reach the open session.
    await live.emit(label("toy-7", 1, "carol"), scored("toy-9", "v0002", entropy=0.01),
                    ev.DriftAlert(kind="class_balance", severity="warning",
                                  message="<img src=x onerror=alert(1)>", value=0.9,
                                  threshold=0.5),
                    ev.ImageIngested(item_id="toy-new", dataset="toy", split="pool",
                                     uri="img:toy/0", height=8, width=8, channels=1))

    def updated(doc: Document) -> bool:
        table = rows(doc)
        alerts = doc.get_model_by_name("alerts_source").data  # type: ignore[union-attr]
        return (table["toy-7"]["status"] == "labeled"
                and table["toy-9"]["uncertainty"] == pytest.approx(0.01)
                and "toy-new" in table
                and list(alerts["message"]) == ["<img src=x onerror=alert(1)>"])

    assert await loop.run_in_executor(client_thread, client.watch, updated)
    assert rows(doc)["toy-new"]["status"] == "unlabeled"


async def test_thumbnails_are_pngs_and_unknown_items_are_404(live: Live) -> None:
    await until(lambda: live.view.uri_of("toy-3") is not None)
    base = f"http://127.0.0.1:{live.port}"
    async with httpx.AsyncClient(base_url=base) as http:
        ok = await http.get("/thumb/toy-3.png")
        missing = await http.get("/thumb/nope.png")
        odd = await http.get("/thumb/..%2Fetc%2Fpasswd.png")
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "image/png"
    assert ok.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(ok.content)) as img:
        assert img.size == (32, 32)  # 8x8 scaled 4x
    assert missing.status_code == 404
    assert odd.status_code == 404


async def test_a_websocket_from_another_origin_is_refused(live: Live) -> None:
    url = f"ws://127.0.0.1:{live.port}/ws"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(url, headers={"Origin": "http://evil.test"}))
    assert refused.value.code == 403
