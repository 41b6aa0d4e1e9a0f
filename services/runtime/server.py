"""``fogmap up``: the whole loop in one process, one asyncio loop.

The services, the FastAPI app (uvicorn) and the Bokeh server share the loop; CPU-heavy
work (training, scoring, projection) runs in worker threads so neither the API nor the
dashboard ever waits for it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading

import structlog
import uvicorn

from fogmap.api.app import create_app
from fogmap.core.settings import Settings
from fogmap.dashboard.server import start_dashboard, stop_dashboard
from fogmap.runtime.bootstrap import Runtime, bootstrap

log = structlog.get_logger(__name__)


async def serve(settings: Settings, dataset: str | None, ready: asyncio.Event | None = None
                ) -> None:
    # Training and scoring threads hold the GIL in bursts; a shorter switch interval
    # bounds how long the event loop (every HTTP request) waits for it.
    sys.setswitchinterval(0.001)
    runtime = bootstrap(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    # Elsewhere (a test serving from a thread, Windows) the caller stops it by cancelling.
    await runtime.start()
    api = uvicorn.Server(uvicorn.Config(create_app(runtime), host=settings.host,
                                        port=settings.api_port, log_level="warning",
                                        lifespan="off", ws="websockets"))
    api_task = asyncio.create_task(api.serve(), name="api")
    dashboard = start_dashboard(runtime.dashboard, runtime.images, settings.dashboard_port,
                                settings.dashboard_origins, settings.host)
    try:
        await _wait_started(api)
        _announce(settings)
        if dataset:
            ds = await runtime.ingest(dataset)
            log.info("data set ready", dataset=ds.name, images=len(ds.images),
                     classes=len(ds.classes))
        if ready is not None:
            ready.set()
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_wait, api_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        api.should_exit = True
        try:
            await asyncio.wait_for(api_task, 5)
        except Exception:  # noqa: BLE001 - shut the rest down regardless, but say why
            log.exception("the API did not stop cleanly")
        stop_dashboard(dashboard)
        await runtime.stop()
        log.info("stopped")


async def _wait_started(api: uvicorn.Server, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not api.started:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("the API did not start")
        await asyncio.sleep(0.05)


def _announce(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.api_port}"
    secret = settings.env == "development"  # never echo a production secret
    token = settings.admin_token if secret else "<FOGMAP_ADMIN_TOKEN>"
    print(f"\nfogmap is up\n  annotator page: {base}/#token={token}\n"
          f"  API docs:       {base}/docs\n"
          f"  dashboard:      http://{settings.host}:{settings.dashboard_port}/\n"
          f"  admin token:    {token}\n", flush=True)


__all__ = ["Runtime", "serve"]
