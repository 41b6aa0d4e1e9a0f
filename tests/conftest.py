"""Shared fixtures: free loopback ports, a deadline-based poll, fast settings."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fogmap.core.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], object], timeout: float = 30.0, every: float = 0.05,
                what: str = "condition") -> object:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small, fast settings for tests: digits, quick retrains, no progress bars."""
    return Settings(
        data_dir=tmp_path / "fogmap", progress=False, admin_token="t" * 32,
        training={"every_n_labels": 20, "every_seconds": 0, "min_labels": 10, "epochs": 30,
                  "min_steps": 100, "max_steps": 200, "isolate": False,
                  "pretrain_seconds": 0},
        selection={"strategy": "margin", "batch_size": 40, "initial": 40},
        scoring={"mc_samples": 8, "eig_targets": 16},
        labeling={"lease_seconds": 60},
    )
