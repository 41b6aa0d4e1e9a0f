"""Start and stop the dashboard's Bokeh server inside the running asyncio loop.

Besides the directory app at ``/`` it serves ``/thumb/<item_id>.png``: an item's image,
re-encoded from pixels and scaled 4x, looked up through the read model's
``image.ingested`` URIs (the hover tooltip of the map shows it).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from bokeh.application import Application
from bokeh.application.handlers.directory import DirectoryHandler
from bokeh.server.server import Server
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from fogmap import dashboard
from fogmap.catalog.datasets import encode_png
from fogmap.catalog.imagestore import ImageStore
from fogmap.dashboard.view import DashboardView

APP_DIR = Path(__file__).parent / "app"
_ITEM_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class ThumbHandler(RequestHandler):
    """GET /thumb/<item_id>.png: the item's image as a PNG, 404 when unknown."""

    def initialize(self, view: DashboardView, images: ImageStore) -> None:
        self.view = view
        self.images = images

    async def get(self, item_id: str) -> None:
        uri = self.view.uri_of(item_id) if _ITEM_ID.match(item_id) else None
        if uri is None:
            raise HTTPError(404)
        try:
            png = await asyncio.to_thread(lambda: encode_png(self.images.get(uri), scale=4))
        except (KeyError, ValueError, IndexError, OSError):
            raise HTTPError(404) from None
        self.set_header("Content-Type", "image/png")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(png)


def start_dashboard(view: DashboardView, images: ImageStore, port: int,
                    allow_origins: list[str], address: str = "127.0.0.1") -> Server:
    """Serve the dashboard on ``address:port`` from the current asyncio loop.

    ``allow_origins`` are the websocket origins allowed besides ``localhost:port``, as
    ``host[:port]`` (a leading ``http://`` / ``https://`` is ignored); ``localhost:port``
    and ``address:port`` are always allowed.
    """
    key = dashboard.register(dashboard.DashboardContext(view, images))
    try:
        handler = DirectoryHandler(filename=str(APP_DIR), argv=[key])
        if handler.failed:
            raise RuntimeError(f"dashboard app failed to load: {handler.error_detail}")
        origins = sorted({_origin(o) for o in allow_origins}
                         | {f"localhost:{port}", f"{address}:{port}"})
        thumbs = (r"/thumb/(.+)\.png", ThumbHandler, {"view": view, "images": images})
        server = Server({"/": Application(handler)}, io_loop=IOLoop.current(), port=port,
                        address=address, allow_websocket_origin=origins,
                        extra_patterns=[thumbs])
    except BaseException:
        dashboard.unregister(key)
        raise
    server.start()
    return server


def stop_dashboard(server: Server) -> None:
    """Stop serving, stop every session's updates, and release the registered read model."""
    server.stop()  # runs on_server_unloaded, which unregisters the read model
    for session in server.get_sessions():
        # Not session.destroy(): closing websockets still reach the session's document.
        for callback in list(session.document.session_callbacks):
            session.document.remove_periodic_callback(callback)  # type: ignore[arg-type]
    server.unlisten()


def _origin(value: str) -> str:
    return re.sub(r"^https?://", "", value).rstrip("/")
