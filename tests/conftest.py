"""Shared fixtures: free loopback ports, a deadline-based poll, fast settings."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from fogmap.core.settings import Settings

# `make test` (and so CI) tries the same property-test examples every run: a rare case
# cannot fail one CI run and pass the next. `make fuzz` draws fresh examples under many
# seeds (profile "fuzz"); a failure there prints the @example to pin into the test.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("fuzz", derandomize=False, database=None)
hypothesis_settings.load_profile(os.environ.get("FOGMAP_HYPOTHESIS", "ci"))


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
