"""An in-process fogmap (services, API, dashboard) on free loopback ports, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from fogmap.api.app import create_app
from fogmap.core.settings import Settings
from fogmap.dashboard.server import start_dashboard, stop_dashboard
from fogmap.runtime.bootstrap import Runtime, bootstrap
from tests.conftest import free_port, until

TOKEN = "k" * 32


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


def spawn_up(data_dir: Path, api: int, dash: int, **env_extra: str
             ) -> subprocess.Popen[bytes]:
    """``fogmap up`` on digits in a child process, with small, fast settings."""
    env = {**os.environ, "FOGMAP_ADMIN_TOKEN": TOKEN, "FOGMAP_PROGRESS": "false",
           "FOGMAP_TRAINING__EVERY_N_LABELS": "15", "FOGMAP_TRAINING__EVERY_SECONDS": "0",
           "FOGMAP_TRAINING__MAX_STEPS": "200", "FOGMAP_SELECTION__BATCH_SIZE": "30",
           "FOGMAP_TRAINING__PRETRAIN_SECONDS": "5",  # pretrain, but never hold up a test
           "FOGMAP_SELECTION__INITIAL": "40", "FOGMAP_SCORING__MC_SAMPLES": "8",
           "FOGMAP_LOG_LEVEL": "WARNING", **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "fogmap.cli", "up", "--dataset", "digits", "--data-dir",
         str(data_dir), "--api-port", str(api), "--dashboard-port", str(dash)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def healthy(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            r = await http.get(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
            return r.status_code == 200 and r.json().get("tasks_open", 0) > 0
    except httpx.HTTPError:
        return False


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await healthy(url):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        assert loop.time() < deadline, "fogmap up did not become ready"
        await asyncio.sleep(0.25)
