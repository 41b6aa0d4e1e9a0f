"""Server-wide hooks of the dashboard app, run once per Bokeh server.

The server-wide resources (the bus-fed read model, the image store) are built by the
composition root, which owns the bus subscription; here they are resolved once from the
registry so that a misconfigured server fails at start, not on the first page view, and
released when the server unloads.
"""

import sys

import structlog
from bokeh.application.application import ServerContext

from fogmap import dashboard

log = structlog.get_logger("fogmap.dashboard")

# Bokeh patches sys.argv only while it executes this module, not when it calls the hooks.
KEY = sys.argv[1] if len(sys.argv) > 1 else ""


def on_server_loaded(server_context: ServerContext) -> None:
    context = dashboard.lookup(KEY)
    log.info("dashboard loaded", items=context.view.size, revision=context.view.revision)


def on_server_unloaded(server_context: ServerContext) -> None:
    dashboard.unregister(KEY)
