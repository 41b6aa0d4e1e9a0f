"""Keeps one session's document in step with the shared read model, coalesced.

The session calls :meth:`SessionSync.update` from a 100 ms periodic callback, so it
pushes at most ten times a second however fast events arrive. It remembers the view
revision it last pushed: changed rows go out as a ``patch``, rows appended since as a
``stream``, and when too many rows changed (a replay, new class names) the columns are
replaced whole, which Bokeh sends as binary arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fogmap.dashboard import panels as p
from fogmap.dashboard.view import DashboardView


class SessionSync:
    max_patch_rows = 2000
    max_patch_fraction = 0.25

    def __init__(self, view: DashboardView, panels: p.Panels) -> None:
        self.view = view
        self.panels = panels
        self.seen = view.revision  # build() filled the panels at this revision
        self.rows = view.size
        self.pushes = 0

    def update(self) -> None:
        view = self.view
        if view.revision == self.seen:
            return
        self._sync_rows()
        self._sync_panels({name for name, rev in view.revisions.items() if rev > self.seen})
        self.panels.summary.text = p.summary_text(view)
        self.seen = view.revision
        self.pushes += 1

    def _sync_rows(self) -> None:
        view, source = self.view, self.panels.map_source
        changed = view.changed_since(self.seen)
        old = changed[changed < self.rows]
        many = len(old) > self.max_patch_rows or (
            len(old) > 50 and len(old) > self.max_patch_fraction * view.size)
        if many:
            source.data = view.columns()
        else:
            if len(old):
                source.patch(_patches(old, view.columns(old)))
            if view.size > self.rows:
                source.stream(view.columns(slice(self.rows, view.size)))
        self.rows = view.size

    def _sync_panels(self, changed: set[str]) -> None:
        view, panels = self.view, self.panels
        if "classes" in changed:
            panels.mapper.high = view.max_uncertainty()
            panels.class_filter.options = p.class_options(view)
        if "balance" in changed:
            balance = p.balance_data(view)
            if balance["name"] != list(panels.balance_range.factors):
                panels.balance_range.factors = list(balance["name"])  # type: ignore[arg-type]
            panels.balance_source.data = balance
        if "models" in changed:
            panels.models_source.data = p.models_data(view)
            panels.calibration_source.data = p.calibration_data(view)
            panels.calibration_title.text = p.calibration_caption(view)
        if "alerts" in changed:
            panels.alerts_source.data = p.alerts_data(view)


def _patches(rows: np.ndarray, columns: dict[str, Any]) -> dict[str, list[tuple[int, Any]]]:
    index = rows.tolist()
    return {name: list(zip(index, values.tolist() if isinstance(values, np.ndarray)
                           else values, strict=True))
            for name, values in columns.items() if name != "item_id"}
