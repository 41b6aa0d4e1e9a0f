"""The Bokeh models of one dashboard session: the map, calibration, balance, tables.

One colour scheme everywhere: a single :class:`LinearColorMapper` over entropy (0 to
log K nats) colours the map, and its one colour bar explains it. Marker shape is always
annotation status, explained by one shape legend drawn in neutral grey.

Text that comes from events (class, annotator names, alert messages) is shown only
through models that render text, never HTML: canvas axis labels and titles, DataTable
``StringFormatter`` cells, ``Select`` options. The hover template is HTML, so it uses only
fields that cannot carry markup: the item id (restricted by its schema), the status,
numbers, and ``predicted_name`` reduced to safe characters (:func:`view.safe_text`).
Every model a client may need to find has a ``name``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import (
    AllIndices,
    CDSView,
    ColumnDataSource,
    DataRange1d,
    FactorRange,
    Filter,
    GroupFilter,
    HoverTool,
    IndexFilter,
    IntersectionFilter,
    LinearColorMapper,
    Range1d,
    UnionFilter,
)
from bokeh.models.annotations import ColorBar, Legend, LegendItem
from bokeh.models.layouts import LayoutDOM
from bokeh.models.widgets import (
    DataTable,
    Div,
    MultiChoice,
    NumberFormatter,
    Paragraph,
    Select,
    StringFormatter,
    TableColumn,
)
from bokeh.palettes import Cividis256
from bokeh.plotting import figure
from bokeh.transform import factor_mark, transform

from fogmap.dashboard.status import STATUSES
from fogmap.dashboard.view import DashboardView

MARKERS = ("circle", "diamond", "square", "triangle", "star", "hex", "x")
ALL_CLASSES = "all"
TOOLTIP = """
<div style="max-width:160px">
  <img src="/thumb/@{item_id}.png" alt="" width="112" height="112"
       style="image-rendering:pixelated;border:1px solid #ccc">
  <div><b>@{item_id}</b></div>
  <div>status: @{status}</div>
  <div>predicted: @{predicted_name} (class @{predicted})</div>
  <div>uncertainty: @{uncertainty}{0.000} nats</div>
</div>
"""


@dataclass
class Panels:
    layout: LayoutDOM
    map_source: ColumnDataSource
    map_view: CDSView
    mapper: LinearColorMapper
    status_filter: MultiChoice
    class_filter: Select
    summary: Paragraph
    balance_source: ColumnDataSource
    balance_range: FactorRange
    models_source: ColumnDataSource
    calibration_source: ColumnDataSource
    calibration_title: Paragraph
    alerts_source: ColumnDataSource


def build(view: DashboardView) -> Panels:
    """Every model of a fresh session, filled from the view's current state."""
    source = ColumnDataSource(view.columns(), name="map_source")
    mapper = LinearColorMapper(palette=Cividis256, low=0.0, high=view.max_uncertainty(),
                               nan_color="#c8c8c8", name="uncertainty_mapper")
    map_view = CDSView(filter=AllIndices(), name="map_view")
    fig = _map_figure(source, map_view, mapper)

    statuses = MultiChoice(title="status", options=list(STATUSES), value=list(STATUSES),
                           name="status_filter", width=420)
    classes = Select(title="class (human label, else predicted)", value=ALL_CLASSES,
                     options=class_options(view), name="class_filter", width=260)

    def refilter(attr: str, old: object, new: object) -> None:
        map_view.filter = map_filter(statuses.value, classes.value)

    statuses.on_change("value", refilter)
    classes.on_change("value", refilter)

    balance_source = ColumnDataSource(balance_data(view), name="balance_source")
    balance_range = FactorRange(factors=list(balance_source.data["name"]))
    balance = figure(x_range=balance_range, y_range=DataRange1d(start=0), height=260,
                     width=460, title="class balance", toolbar_location=None, tools="")
    balance.vbar(x="name", top="count", width=0.8, source=balance_source, color="#5b6d8f")
    balance.xaxis.major_label_orientation = 0.9

    calibration_source = ColumnDataSource(calibration_data(view), name="calibration_source")
    calibration_title = Paragraph(text=calibration_caption(view), name="calibration_title")
    calibration = figure(height=300, width=460, x_range=Range1d(start=0, end=1),
                         y_range=Range1d(start=0, end=1),
                         title="reliability diagram (latest model)", tools="",
                         toolbar_location=None, x_axis_label="confidence",
                         y_axis_label="accuracy")
    calibration.line([0, 1], [0, 1], line_dash="dashed", color="#888888")
    calibration.quad(left="lower", right="upper", bottom=0, top="accuracy", alpha=0.6,
                     color="#5b6d8f", source=calibration_source)
    calibration.scatter("confidence", "accuracy", source=calibration_source, size=6,
                        color="#222222")

    models_source = ColumnDataSource(models_data(view), name="models_source")
    models = DataTable(source=models_source, name="models_table", height=180, width=460,
                       index_position=None, reorderable=False, columns=[
                           TableColumn(field="version", title="model",
                                       formatter=StringFormatter()),
                           TableColumn(field="labels", title="labels"),
                           TableColumn(field="accuracy", title="accuracy",
                                       formatter=NumberFormatter(format="0.000")),
                           TableColumn(field="ece", title="ECE",
                                       formatter=NumberFormatter(format="0.000")),
                       ])
    alerts_source = ColumnDataSource(alerts_data(view), name="alerts_source")
    alerts = DataTable(source=alerts_source, name="alerts_table", height=160, width=940,
                       index_position=None, reorderable=False, columns=[
                           TableColumn(field=f, title=f, formatter=StringFormatter())
                           for f in ("time", "severity", "kind", "message")])
    summary = Paragraph(text=summary_text(view), name="summary", width=940)

    layout = column(
        Div(text="<h2 style='margin:0'>fogmap: the fog over the pool</h2>"),
        summary,
        row(statuses, classes),
        row(fig, column(calibration_title, calibration, models, balance)),
        alerts,
    )
    return Panels(layout, source, map_view, mapper, statuses, classes, summary,
                  balance_source, balance_range, models_source, calibration_source,
                  calibration_title, alerts_source)


def _map_figure(source: ColumnDataSource, map_view: CDSView,
                mapper: LinearColorMapper) -> figure:
    fig = figure(output_backend="webgl", width=900, height=700, match_aspect=True,
                 title="uncertainty map (colour: entropy, shape: status)",
                 tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                 name="map")
    colour = transform("uncertainty", mapper)
    points = fig.scatter("x", "y", source=source, view=map_view, size=8, fill_alpha=0.85,
                         marker=factor_mark("status", list(MARKERS), list(STATUSES)),
                         fill_color=colour, line_color=colour, name="map_points")
    fig.add_tools(HoverTool(renderers=[points], tooltips=TOOLTIP, limit=1))  # nearest only
    fig.add_layout(ColorBar(color_mapper=mapper, title="uncertainty (entropy, nats)",
                            name="uncertainty_bar"), "right")
    # The shape legend: one grey swatch per status, independent of the data.
    items = []
    for status, marker in zip(STATUSES, MARKERS, strict=True):
        # One point at NaN: never drawn, never in the auto-range, but a legend glyph.
        swatch: Any = fig.scatter(x=[math.nan], y=[math.nan], marker=marker, size=9,
                                  fill_color="#9a9a9a", line_color="#444444")
        items.append(LegendItem(label=status, renderers=[swatch]))
    fig.add_layout(Legend(items=items, title="status", name="status_legend"), "left")
    return fig


def map_filter(statuses: list[str], klass: str) -> Filter:
    """Status and class filters as index filters the browser re-applies on every patch."""
    chosen = [s for s in STATUSES if s in statuses]
    by_status: Filter
    if len(chosen) == len(STATUSES):
        by_status = AllIndices()
    elif not chosen:
        by_status = IndexFilter(indices=[])
    else:
        by_status = UnionFilter(operands=[GroupFilter(column_name="status", group=s)
                                          for s in chosen])
    if klass == ALL_CLASSES:
        return by_status
    return IntersectionFilter(operands=[by_status, GroupFilter(column_name="klass",
                                                               group=klass)])


def class_options(view: DashboardView) -> list[str | tuple[Any, str]]:
    n = max(len(view.classes), len(view.balance))
    options: list[str | tuple[Any, str]] = [(ALL_CLASSES, "all classes")]
    return options + [(str(c), view.class_name(c)) for c in range(n)]


def balance_data(view: DashboardView) -> dict[str, list[object]]:
    balance = view.class_balance()
    names: list[str] = []  # factors must be unique and non-empty
    for c, name in enumerate(balance):
        names.append(name if name and name not in names else f"{name} (#{c})")
    return {"name": names, "count": list(balance.values())}


def calibration_data(view: DashboardView) -> dict[str, list[float]]:
    model = view.latest_model()
    bins = model.calibration if model else ()
    return {"lower": [b.lower for b in bins], "upper": [b.upper for b in bins],
            "confidence": [b.confidence for b in bins], "accuracy": [b.accuracy for b in bins],
            "count": [float(b.count) for b in bins]}


def calibration_caption(view: DashboardView) -> str:
    model = view.latest_model()
    if model is None:
        return "no model yet"
    return (f"{model.version}: accuracy {model.accuracy:.3f}, ECE {model.ece:.3f}, "
            f"{model.labels} labels")


def models_data(view: DashboardView) -> dict[str, list[object]]:
    rows = view.model_rows()
    return {"version": [m.version for m in rows], "labels": [m.labels for m in rows],
            "accuracy": [m.accuracy for m in rows], "ece": [m.ece for m in rows]}


def alerts_data(view: DashboardView) -> dict[str, list[str]]:
    rows = list(view.alerts)
    return {"time": [a.time for a in rows], "severity": [a.severity for a in rows],
            "kind": [a.kind for a in rows], "message": [a.message for a in rows]}


def summary_text(view: DashboardView) -> str:
    counts = view.status_counts()
    parts = [f"{view.size} pool items", f"{view.placed()} on the map"]
    parts += [f"{n} {status}" for status, n in counts.items() if n]
    model = view.latest_model()
    parts.append(f"latest model {model.version}" if model else "no model yet")
    return " · ".join(parts)
