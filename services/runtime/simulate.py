"""``fogmap simulate``: the real services on the embedded bus, simulated annotators.

The annotators answer from the ground truth through the same labeling handlers a
person's label goes through (lease a task, submit a label with a rationale); training,
scoring, selection and the vector service run exactly as in ``fogmap up``. After each
published model the held-out accuracy is recorded against the number of labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import structlog
from tqdm import tqdm

from fogmap.bus.port import Subscription
from fogmap.catalog.ingest import item_id
from fogmap.core.events import Envelope, ModelPublished
from fogmap.core.service import payloads
from fogmap.core.settings import Settings
from fogmap.labeling.service import User
from fogmap.runtime.bootstrap import bootstrap

log = structlog.get_logger(__name__)
ANNOTATORS = 4


async def simulate(settings: Settings, dataset: str, strategy: str, seed: int, initial: int,
                   batch: int, budget: int, timeout: float = 3600.0) -> dict[str, Any]:
    """Run one active-learning experiment; returns the simulate contract's JSON."""
    with tempfile.TemporaryDirectory(prefix="fogmap-sim-") as tmp:
        cfg = settings.model_copy(update={
            "data_dir": Path(tmp),
            "selection": settings.selection.model_copy(update={
                "strategy": strategy, "batch_size": batch, "initial": initial, "seed": seed}),
            "training": settings.training.model_copy(update={
                "every_n_labels": batch, "every_seconds": 0.0,
                "min_labels": min(initial, settings.training.min_labels), "seed": seed}),
        })
        return await _run(cfg, dataset, strategy, seed, initial, batch, budget, timeout)


async def _run(cfg: Settings, dataset: str, strategy: str, seed: int, initial: int,
               batch: int, budget: int, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    runtime = bootstrap(cfg, dashboard=False)
    models: dict[int, ModelPublished] = {}
    arrived = asyncio.Event()

    async def on_models(events: list[Envelope]) -> None:
        for _, p in payloads(events, "model.published"):
            assert isinstance(p, ModelPublished)
            models[p.labels] = p
            arrived.set()

    runtime.bus.subscribe(Subscription(("fogmap.models",), f"sim-{uuid.uuid4().hex[:6]}",
                                       on_models, commit=False))
    await runtime.start()
    try:
        ds = await runtime.ingest(dataset)
        if ds.labels is None:
            raise ValueError(f"{dataset}: simulate needs ground-truth labels")
        truth = {item_id(ds.name, i): int(y) for i, y in enumerate(ds.labels)}
        users = [User(f"sim-{k}", "annotator") for k in range(ANNOTATORS)]
        for user in users:
            runtime.labeling.create_user(user.name, user.role)
        points: list[dict[str, Any]] = []
        labeled = 0
        targets = [initial, *range(initial + batch, budget + 1, batch)]
        if targets[-1] != budget and budget > initial:
            targets.append(budget)
        bar = tqdm(total=budget, desc=f"simulate {strategy}", unit="label",
                   disable=not cfg.progress)
        deadline = time.monotonic() + timeout
        for target in targets:
            if target - labeled < batch and labeled:  # a short last round retrains too
                runtime.training.cfg = runtime.training.cfg.model_copy(
                    update={"every_n_labels": target - labeled})
            while labeled < target:
                labeled += await _label_round(runtime, users, truth, target - labeled)
                bar.update(labeled - bar.n)
                if labeled < target:
                    _check(deadline)
                    await asyncio.sleep(0.05)
            while target not in models:
                _check(deadline)
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), 1.0)
            m = models[target]
            points.append({"labels": target, "accuracy": round(m.metrics.accuracy, 4),
                           "model_version": m.model_version})
            bar.set_postfix(acc=f"{m.metrics.accuracy:.3f}")
        bar.close()
        return {"dataset": ds.name, "strategy": strategy, "seed": seed, "points": points,
                "wall_seconds": round(time.perf_counter() - started, 2)}
    finally:
        await runtime.stop()


async def _label_round(runtime: Any, users: list[User], truth: dict[str, int],
                       remaining: int) -> int:
    """Each simulated annotator leases a few tasks and labels them from the ground truth."""
    done = 0
    for user in users:
        if done >= remaining:
            break
        tasks = runtime.labeling.lease_next(user, min(5, remaining - done))
        for task in tasks:
            if done >= remaining:
                runtime.labeling.release(user, task["task_id"])
                continue
            runtime.labeling.submit_label(user, task["task_id"], truth[task["item_id"]],
                                          rationale="simulated annotator: ground truth")
            done += 1
    return done


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError("simulation ran past its time limit")
