"""The labeling API: FastAPI app factory, security headers, errors, the event stream."""

from __future__ import annotations

import contextlib
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fogmap.api.routes import router
from fogmap.api.stream import EventHub
from fogmap.labeling.service import LabelingError
from fogmap.runtime.bootstrap import Runtime

CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
       "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="fogmap labeling API", version="1.0")
    app.state.runtime = runtime
    hub = EventHub()
    runtime.bus.subscribe(hub.subscription())
    app.state.hub = hub
    app.include_router(router)

    @app.exception_handler(LabelingError)
    async def labeling_error(_: Request, exc: LabelingError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = CSP
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def annotator_page() -> HTMLResponse:
        return HTMLResponse(_static("annotate.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        types = {"annotate.js": "text/javascript", "annotate.css": "text/css"}
        if name not in types:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return Response(_static(name), media_type=types[name])

    @app.websocket("/api/events/stream")
    async def stream(ws: WebSocket, token: Annotated[str | None, Query()] = None,
                     topics: Annotated[str | None, Query()] = None) -> None:
        """Live events as CloudEvents JSON; credentials are checked before accept."""
        origin = ws.headers.get("origin")
        user = runtime.labeling.authenticate(token)
        if user is None or (origin and not _same_origin(origin, ws, runtime)):
            await ws.close(code=status.WS_1008_POLICY_VIOLATION)
            return
        try:
            wanted = hub.topics_for(user.role, topics.split(",") if topics else None)
        except PermissionError:
            await ws.close(code=status.WS_1008_POLICY_VIOLATION)
            return
        await ws.accept()
        key, queue = hub.join(wanted)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    await ws.close(code=1013)
                    return
                await ws.send_text(event.model_dump_json())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.leave(key)
            with contextlib.suppress(Exception):
                await ws.close()

    return app


def _same_origin(origin: str, ws: WebSocket, runtime: Runtime) -> bool:
    host = ws.headers.get("host", "")
    allowed = {f"http://{host}", f"https://{host}", *runtime.settings.allowed_origins}
    return origin in allowed


def _static(name: str) -> str:
    return resources.files("fogmap.api").joinpath("static", name).read_text()
