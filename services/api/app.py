"""The labeling API: FastAPI app factory, security headers, errors, the event stream."""

from __future__ import annotations

import contextlib
from importlib import resources
from typing import Annotated, Any

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

    app.add_middleware(SecurityHeaders)

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


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): headers on every response."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", b"no-referrer")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in present]
                if any(k.lower() == b"content-type" and v.startswith(b"text/html")
                       for k, v in headers):
                    headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _same_origin(origin: str, ws: WebSocket, runtime: Runtime) -> bool:
    host = ws.headers.get("host", "")
    allowed = {f"http://{host}", f"https://{host}", *runtime.settings.allowed_origins}
    return origin in allowed


def _static(name: str) -> str:
    return resources.files("fogmap.api").joinpath("static", name).read_text()
