"""The dashboard's read model: every item's position, uncertainty and status, in memory.

It is fed only from the bus (``subscriptions``), reading the whole retained log on every
start, and is shared by every browser session of the Bokeh server in this process.

Sessions sync by revision: each handled batch that changes anything bumps ``revision``
and stamps the rows it touched (``item_rev``), so a session that last saw revision ``r``
pushes exactly ``changed_since(r)`` — the per-session set of dirty rows — and streams the
rows appended since. Class names, class balance, models and alerts each keep their own
revision in ``revisions`` so a session redraws only the panel that changed.

Events of different topics are consumed independently (and re-read from the beginning on
start), so the status of an item never depends on the order in which topics arrive:
flags are compared by envelope time, labels and tasks are keyed by their ids.

Items the projection service has not placed yet have NaN coordinates: Bokeh does not draw
them, and they appear as soon as a ``projection.updated`` event places them (a fallback
layout would mix meaningless positions into the similarity map).
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from pydantic import ValidationError

from fogmap.bus.port import Subscription
from fogmap.core import events as ev
from fogmap.core.events import Envelope, version_seq
from fogmap.dashboard.status import STATUS, STATUSES, ItemFacts, derive

log = structlog.get_logger(__name__)

TOPICS = ("fogmap.images", "fogmap.predictions", "fogmap.projections", "fogmap.proposals",
          "fogmap.tasks", "fogmap.labels", "fogmap.models", "fogmap.alerts")
_FLOATS = ("x", "y", "uncertainty", "margin", "eig")
PANELS = ("classes", "balance", "models", "alerts")
_INTS = ("predicted", "label", "pred_seq", "proj_seq", "status")


@dataclass(frozen=True)
class ModelRow:
    version: str
    labels: int
    accuracy: float
    ece: float
    nll: float
    train_seconds: float
    calibration: tuple[ev.CalibrationBin, ...]


@dataclass(frozen=True)
class AlertRow:
    time: str
    kind: str
    severity: str
    message: str
    value: float
    threshold: float


class DashboardView:
    """Server-wide in-memory read model of the pool, models and governance signals."""

    name = "dashboard"

    def __init__(self, capacity: int = 1024, max_alerts: int = 50) -> None:
        self.group = f"dashboard-{uuid.uuid4().hex}"
        self.revision = 0
        self.revisions = dict.fromkeys(PANELS, 0)
        self.size = 0
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.uris: dict[str, str] = {}  # every ingested image, test split included
        self.classes: list[str] = []
        self.models: dict[str, ModelRow] = {}
        self.alerts: deque[AlertRow] = deque(maxlen=max_alerts)
        self.balance = np.zeros(0, dtype=np.int64)  # active labels per class
        self.skipped = 0  # malformed payloads ignored
        self._items: list[ItemFacts] = []
        self._annotator: list[str] = []
        self._closed_tasks: set[str] = set()
        self._retracted: set[str] = set()
        self._alert_ids: set[str] = set()
        self._label_names: dict[int, str] = {}
        self._cap = 0
        self._f: dict[str, np.ndarray] = {}
        self._i: dict[str, np.ndarray] = {}
        self.item_rev = np.zeros(0, dtype=np.int64)
        self._grow(capacity)
        self._touched: set[int] = set()
        self._changed: set[str] = set()  # panels changed since the last commit

    # --- bus wiring ---------------------------------------------------------------------

    def subscription(self) -> Subscription:
        return Subscription(topics=TOPICS, group=self.group, handler=self.handle,
                            from_beginning=True, commit=False)

    def subscriptions(self) -> list[Subscription]:
        return [self.subscription()]

    async def run(self) -> None:
        return None

    async def handle(self, events: Sequence[Envelope]) -> None:
        """Apply a batch; never raises on a bad payload (a read model must not DLQ)."""
        for env in events:
            self.apply(env)
        self.commit()

    def apply(self, env: Envelope) -> None:
        """Apply one event; call :meth:`commit` to publish the changes to sessions."""
        handler = _HANDLERS.get(env.name)
        if handler is None:
            return
        try:
            data = env.payload()
        except (ValidationError, KeyError) as exc:
            self.skipped += 1
            log.warning("dashboard skipped a malformed event", id=env.id, error=str(exc))
            return
        handler(self, env, data)

    def commit(self) -> None:
        if not self._touched and not self._changed:
            return
        self.revision += 1
        if self._touched:
            self.item_rev[np.fromiter(self._touched, dtype=np.int64)] = self.revision
            self._touched.clear()
        for panel in self._changed:
            self.revisions[panel] = self.revision
        self._changed.clear()

    # --- reads for sessions -------------------------------------------------------------

    def changed_since(self, revision: int) -> np.ndarray:
        """Rows changed after ``revision`` (rows appended since are included)."""
        return np.flatnonzero(self.item_rev[: self.size] > revision)

    def columns(self, rows: slice | np.ndarray | None = None) -> dict[str, Any]:
        """Map columns for ``rows`` (all rows by default), ready for a ColumnDataSource."""
        sel = np.arange(self.size)[rows if rows is not None else slice(None)]
        idx = sel.tolist()
        pred = self._i["predicted"][sel].astype(np.int32)
        label = self._i["label"][sel].astype(np.int32)
        status = self._i["status"][sel]
        shown = np.where(label >= 0, label, pred)
        return {
            "item_id": [self.ids[k] for k in idx],
            **{name: self._f[name][sel].copy() for name in _FLOATS},
            "predicted": pred,
            "predicted_name": [safe_text(self.class_name(int(c))) for c in pred],
            "label": label,
            "label_name": [self.class_name(int(c)) for c in label],
            "klass": [str(int(c)) if c >= 0 else "" for c in shown],
            "status": [STATUSES[int(s)] for s in status],
            "annotator": [self._annotator[k] for k in idx],
        }

    def class_name(self, cls: int) -> str:
        if cls < 0:
            return ""
        if cls < len(self.classes):
            return self.classes[cls]
        return self._label_names.get(cls, str(cls))

    def status_of(self, item_id: str) -> str | None:
        k = self.index.get(item_id)
        return None if k is None else STATUSES[int(self._i["status"][k])]

    def uri_of(self, item_id: str) -> str | None:
        return self.uris.get(item_id)

    def latest_model(self) -> ModelRow | None:
        if not self.models:
            return None
        return self.models[max(self.models, key=version_seq)]

    def model_rows(self) -> list[ModelRow]:
        return [self.models[v] for v in sorted(self.models, key=version_seq)]

    def class_balance(self) -> dict[str, int]:
        n = max(len(self.classes), len(self.balance))
        return {self.class_name(c): int(self.balance[c]) if c < len(self.balance) else 0
                for c in range(n)}

    def status_counts(self) -> dict[str, int]:
        counts = np.bincount(self._i["status"][: self.size], minlength=len(STATUSES))
        return {name: int(counts[code]) for code, name in enumerate(STATUSES)}

    def placed(self) -> int:
        """Rows with a map position."""
        return int(np.count_nonzero(~np.isnan(self._f["x"][: self.size])))

    def max_uncertainty(self) -> float:
        """Entropy of the uniform distribution: the top of the colour scale."""
        return math.log(max(len(self.classes), 2))

    # --- storage ------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        def extend(arr: np.ndarray | None, fill: float, dtype: Any) -> np.ndarray:
            out = np.full(capacity, fill, dtype=dtype)
            if arr is not None:
                out[: self._cap] = arr[: self._cap]
            return out

        for name in _FLOATS:
            self._f[name] = extend(self._f.get(name), np.nan, np.float64)
        for name in _INTS:
            fill = STATUS["unlabeled"] if name == "status" else -1
            self._i[name] = extend(self._i.get(name), fill, np.int64)
        self.item_rev = extend(self.item_rev if self._cap else None, 0, np.int64)
        self._cap = capacity

    def _row(self, item_id: str) -> int:
        k = self.index.get(item_id)
        if k is None:
            if self.size == self._cap:
                self._grow(self._cap * 2)
            k = self.size
            self.size += 1
            self.index[item_id] = k
            self.ids.append(item_id)
            self._items.append(ItemFacts())
            self._annotator.append("")
            self._touched.add(k)
        return k

    def _restatus(self, k: int) -> None:
        derived = derive(self._items[k])
        self._i["status"][k] = STATUS[derived.status]
        self._i["label"][k] = derived.label
        self._annotator[k] = derived.annotator
        self._touched.add(k)

    def _count(self, cls: int, delta: int) -> None:
        if cls >= len(self.balance):
            self.balance = np.concatenate([self.balance,
                                           np.zeros(cls + 1 - len(self.balance), np.int64)])
        self.balance[cls] += delta
        self._changed.add("balance")

    # --- event handlers -----------------------------------------------------------------

    def _dataset(self, env: Envelope, e: ev.DatasetRegistered) -> None:
        self.classes = list(e.classes)
        self._changed.update(("classes", "balance"))
        self._touched.update(range(self.size))  # class names are part of every row

    def _ingested(self, env: Envelope, e: ev.ImageIngested) -> None:
        self.uris[e.item_id] = e.uri
        if e.split == "pool":
            self._row(e.item_id)

    def _scored(self, env: Envelope, e: ev.PredictionScored) -> None:
        k, seq = self._row(e.item_id), version_seq(e.model_version)
        if seq < self._i["pred_seq"][k]:
            return  # a newer model already scored it
        self._i["pred_seq"][k] = seq
        self._i["predicted"][k] = e.predicted_class
        self._f["uncertainty"][k] = e.entropy
        self._f["margin"][k] = e.margin
        self._f["eig"][k] = e.eig
        self._touched.add(k)

    def _projected(self, env: Envelope, e: ev.ProjectionUpdated) -> None:
        k, seq = self._row(e.item_id), version_seq(e.model_version)
        if seq < self._i["proj_seq"][k]:
            return
        self._i["proj_seq"][k] = seq
        self._f["x"][k], self._f["y"][k] = e.x, e.y
        self._touched.add(k)

    def _proposed(self, env: Envelope, e: ev.BatchProposed) -> None:
        t = env.time.timestamp()
        for proposed in e.items:
            k = self._row(proposed.item_id)
            self._items[k].proposed_at = max(self._items[k].proposed_at, t)
            self._restatus(k)

    def _task(self, env: Envelope, e: ev.TaskAssigned | ev.TaskReleased | ev.TaskExpired
              ) -> None:
        k = self._row(e.item_id)
        item = self._items[k]
        item.cleared_at = max(item.cleared_at, env.time.timestamp())
        if isinstance(e, ev.TaskAssigned):
            if e.task_id not in self._closed_tasks:
                item.tasks[e.task_id] = e.annotator
        else:
            self._close_task(k, e.task_id)
        self._restatus(k)

    def _labeled(self, env: Envelope, e: ev.LabelSubmitted) -> None:
        k = self._row(e.item_id)
        item = self._items[k]
        t = env.time.timestamp()
        item.cleared_at = max(item.cleared_at, t)
        item.labeled_at = max(item.labeled_at, t)
        self._close_task(k, e.task_id)
        if (e.label >= len(self.classes) and e.class_name
                and self._label_names.get(e.label) != e.class_name):
            self._label_names[e.label] = e.class_name  # no data set registered it
            self._changed.update(("classes", "balance"))
            self._touched.update(range(self.size))
        if e.label_id not in self._retracted and e.label_id not in item.labels:
            item.labels[e.label_id] = (e.label, e.annotator, t)
            self._count(e.label, +1)
        self._restatus(k)

    def _retracted_label(self, env: Envelope, e: ev.LabelRetracted) -> None:
        k = self._row(e.item_id)
        self._retracted.add(e.label_id)
        removed = self._items[k].labels.pop(e.label_id, None)
        if removed is not None:
            self._count(removed[0], -1)
        self._restatus(k)

    def _close_task(self, k: int, task_id: str | None) -> None:
        if task_id:
            self._closed_tasks.add(task_id)
            self._items[k].tasks.pop(task_id, None)

    def _review(self, env: Envelope, e: ev.ReviewRequested) -> None:
        k = self._row(e.item_id)
        self._close_task(k, e.task_id)
        self._items[k].review_at = max(self._items[k].review_at, env.time.timestamp())
        self._restatus(k)

    def _dismissed(self, env: Envelope, e: ev.ItemDismissed) -> None:
        k = self._row(e.item_id)
        self._close_task(k, e.task_id)
        self._items[k].dismissed_at = max(self._items[k].dismissed_at, env.time.timestamp())
        self._restatus(k)

    def _published(self, env: Envelope, e: ev.ModelPublished) -> None:
        m = e.metrics
        self.models[e.model_version] = ModelRow(
            e.model_version, e.labels, m.accuracy, m.ece, m.nll, e.train_seconds,
            tuple(m.calibration))
        self._changed.add("models")

    def _alert(self, env: Envelope, e: ev.DriftAlert) -> None:
        if env.id in self._alert_ids:
            return
        self._alert_ids.add(env.id)
        self.alerts.appendleft(AlertRow(env.time.isoformat(timespec="seconds"), e.kind,
                                        e.severity, e.message, e.value, e.threshold))
        self._changed.add("alerts")


_HANDLERS: dict[str, Any] = {
    "dataset.registered": DashboardView._dataset,
    "image.ingested": DashboardView._ingested,
    "prediction.scored": DashboardView._scored,
    "projection.updated": DashboardView._projected,
    "batch.proposed": DashboardView._proposed,
    "task.assigned": DashboardView._task,
    "task.released": DashboardView._task,
    "task.expired": DashboardView._task,
    "label.submitted": DashboardView._labeled,
    "label.retracted": DashboardView._retracted_label,
    "review.requested": DashboardView._review,
    "item.dismissed": DashboardView._dismissed,
    "model.published": DashboardView._published,
    "drift.alert": DashboardView._alert,
}

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:/()+-")


def safe_text(value: str, limit: int = 40) -> str:
    """Event text reduced to characters that mean nothing to HTML (for tooltip templates)."""
    return "".join(c if c in _SAFE else "?" for c in value[:limit])
