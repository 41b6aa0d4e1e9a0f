"""An in-process fogmap (services, API, dashboard) on free loopback ports, for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from fogmap.api.app import create_app
from fogmap.core.settings import Settings
from fogmap.dashboard.server import start_dashboard, stop_dashboard
from fogmap.runtime.bootstrap import Runtime, bootstrap
from tests.conftest import free_port, until


@dataclass
class Stack:
    runtime: Runtime
    api: str
    dashboard: str


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, dataset: str = "digits",
                        dashboard: bool = True) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={"api_port": free_port(),
                                           "dashboard_port": free_port()})
    runtime = bootstrap(settings)
    await runtime.start()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1",
                                           port=settings.api_port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    bokeh = (start_dashboard(runtime.dashboard, runtime.images, settings.dashboard_port,
                             settings.dashboard_origins) if dashboard else None)
    try:
        await until(lambda: server.started, 20, what="API start")
        await runtime.ingest(dataset)
        yield Stack(runtime, f"http://127.0.0.1:{settings.api_port}",
                    f"http://127.0.0.1:{settings.dashboard_port}")
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        if bokeh is not None:
            stop_dashboard(bokeh)
        await runtime.stop()
