"""The live dashboard: a Bokeh directory app (``app/``) over an in-memory read model.

:func:`fogmap.dashboard.server.start_dashboard` registers the read model and the image
store here under a fresh key and hands the key to the app as its ``sys.argv[1]``; the
app's ``main.py`` (per session) and ``app_hooks.py`` (per server) look it up. The
registry is what lets a directory app, which Bokeh executes from source, reach objects
built by the composition root in the same process.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fogmap.catalog.imagestore import ImageStore
    from fogmap.dashboard.view import DashboardView


@dataclass(frozen=True)
class DashboardContext:
    view: DashboardView
    images: ImageStore


_REGISTRY: dict[str, DashboardContext] = {}


def register(context: DashboardContext) -> str:
    key = uuid.uuid4().hex
    _REGISTRY[key] = context
    return key


def lookup(key: str) -> DashboardContext:
    try:
        return _REGISTRY[key]
    except KeyError:
        raise LookupError(f"no dashboard registered under {key!r}; "
                          "start it with fogmap.dashboard.server.start_dashboard") from None


def unregister(key: str) -> None:
    _REGISTRY.pop(key, None)
