"""Governance monitor: class balance, labeling drift and annotator disagreement alerts.

A read model rebuilt from the label topic on every start (no committed offsets). Alerts
carry deterministic ids (kind + the label count at which the threshold was crossed), so a
replay after a restart publishes nothing twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque

import numpy as np

from fogmap.bus.port import Bus, Subscription
from fogmap.core.events import DriftAlert, Envelope, LabelRetracted, LabelSubmitted
from fogmap.core.service import Publisher, payloads


class MonitorService:
    name = "monitor"

    def __init__(self, bus: Bus, classes: int = 10, balance_ratio: float = 3.0,
                 window: int = 50, drift_threshold: float = 0.35, min_labels: int = 30) -> None:
        self.pub = Publisher(bus, self.name)
        self.classes = classes
        self.balance_ratio, self.window = balance_ratio, window
        self.drift_threshold, self.min_labels = drift_threshold, min_labels
        self.active: dict[str, LabelSubmitted] = {}
        self.recent: deque[int] = deque(maxlen=window)
        self.by_item: dict[str, dict[str, int]] = defaultdict(dict)
        self.raised: set[str] = set()
        self.count = 0

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(("fogmap.labels",), "monitor", self.on_labels, batch_size=500,
                             commit=False)]

    async def run(self) -> None:
        return None

    def balance(self) -> Counter[int]:
        return Counter(p.label for p in self.active.values())

    async def on_labels(self, events: list[Envelope]) -> None:
        alerts: list[tuple[str, DriftAlert]] = []
        for _, p in payloads(events, "label.submitted", "label.retracted"):
            if isinstance(p, LabelSubmitted):
                if p.label_id in self.active:
                    continue
                self.active[p.label_id] = p
                self.recent.append(p.label)
                self.by_item[p.item_id][p.annotator] = p.label
                self.count += 1
                alerts += self._check(p)
            elif isinstance(p, LabelRetracted) and p.label_id in self.active:
                gone = self.active.pop(p.label_id)
                self.by_item[gone.item_id].pop(gone.annotator, None)
        if alerts:
            await self.pub.emit([a for _, a in alerts], ids=[i for i, _ in alerts])

    def _check(self, p: LabelSubmitted) -> list[tuple[str, DriftAlert]]:
        out = []
        counts = np.bincount([q.label for q in self.active.values()],
                             minlength=self.classes).astype(float)
        n = counts.sum()
        if n >= self.min_labels:
            ratio = counts.max() / max(n / len(counts), 1e-9)
            if ratio >= self.balance_ratio and "balance" not in self.raised:
                self.raised.add("balance")
                out.append((f"alert:balance:{self.count}", DriftAlert(
                    kind="class_balance", severity="warning", value=round(float(ratio), 3),
                    threshold=self.balance_ratio,
                    message=f"class {int(counts.argmax())} holds {ratio:.1f}x its fair share "
                            f"of {int(n)} labels")))
            elif ratio < self.balance_ratio:
                self.raised.discard("balance")
        if self.count >= 2 * self.window and len(self.recent) == self.window:
            recent = np.bincount(list(self.recent), minlength=len(counts)) / self.window
            tv = 0.5 * float(np.abs(recent - counts / n).sum())
            if tv >= self.drift_threshold and "drift" not in self.raised:
                self.raised.add("drift")
                out.append((f"alert:drift:{self.count}", DriftAlert(
                    kind="label_drift", severity="warning", value=round(tv, 3),
                    threshold=self.drift_threshold,
                    message=f"the last {self.window} labels differ from all labels by "
                            f"TV distance {tv:.2f}")))
            elif tv < self.drift_threshold:
                self.raised.discard("drift")
        votes = set(self.by_item[p.item_id].values())
        if len(votes) > 1:
            out.append((f"alert:disagree:{p.item_id}:{len(self.by_item[p.item_id])}",
                        DriftAlert(kind="disagreement", severity="info", value=float(len(votes)),
                                   threshold=1.0,
                                   message=f"annotators disagree on {p.item_id}")))
        return out
