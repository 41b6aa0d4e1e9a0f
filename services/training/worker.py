"""Retraining (and label-free pretraining) in a child process, so neither competes with
the API for the GIL.

With training in a thread, a hundred annotators saw p99 acknowledgements of ~400 ms while
a model trained; in its own process the event loop only waits for the pickled result.
The child is spawned once and reused; progress travels back over a queue.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from fogmap.core.events import ModelMetrics
from fogmap.core.settings import TrainingSettings
from fogmap.training import trainer

Fitted = tuple[bytes, ModelMetrics]
Pretrained = tuple[np.ndarray, int, float]  # (N, 32) vectors, steps, seconds
_progress: Any = None  # the child's end of the progress queue


def _init(progress_queue: Any, threads: int, parent: int) -> None:
    global _progress
    # Watch first: the parent may die while this child is still importing torch.
    threading.Thread(target=_exit_with, args=(parent,), daemon=True,
                     name="parent-watch").start()
    import torch

    _progress = progress_queue
    torch.set_num_threads(threads)


def _exit_with(parent: int, every: float = 1.0) -> None:
    """End the child once ``parent`` (its creator's pid) is gone. A SIGKILLed ``fogmap
    up`` (the OOM killer, the fault test) cannot shut its pool down, and the orphan would
    hold memory forever; the kernel re-parents it, so the parent id changes. The pid is
    passed in rather than read here: the parent may already be gone when this runs."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(0)


def _reporter(report: trainer.Progress | None) -> trainer.Progress:
    """Progress to the caller's callback (a thread) or over the queue (the child)."""

    def progress(step: int, total: int) -> None:
        if report is not None:
            report(step, total)
        elif _progress is not None:
            _progress.put((step, total))

    return progress


def fit(images: np.ndarray, labels: np.ndarray, classes: int, cfg: TrainingSettings,
        seed: int, test_images: np.ndarray, test_labels: np.ndarray,
        report: trainer.Progress | None = None) -> Fitted:
    """Train, evaluate on the held-out images, return (weights, metrics)."""
    from fogmap.scoring.model import save_weights

    progress = _reporter(report)
    model = trainer.train(images, labels, classes, cfg, seed, progress)
    if len(test_labels):
        metrics = trainer.evaluate(model, test_images, test_labels)
    else:
        metrics = ModelMetrics(accuracy=0.0, ece=0.0, nll=0.0, test_items=0, calibration=[])
    return save_weights(model), metrics


def pretrain_embed(images: np.ndarray, cfg: TrainingSettings, seed: int,
                   report: trainer.Progress | None = None) -> Pretrained:
    """Pretrain the encoder on the pool without labels, embed the pool with it:
    (N, H, W, C) uint8 -> ((N, 32) float32, steps, seconds of pretraining)."""
    from fogmap.training import pretrain

    raw = pretrain.pretrain(images, seconds_budget=cfg.pretrain_seconds, seed=seed,
                            progress=_reporter(report), max_steps=cfg.pretrain_max_steps)
    blob = pretrain.load_encoder(raw)
    return pretrain.embed(images, raw), int(blob["steps"]), float(blob["seconds"])


class TrainerPool:
    """Runs :func:`fit` in one reusable child process (or a thread when ``isolate`` is off)."""

    def __init__(self, isolate: bool = True, threads: int = 2) -> None:
        self.isolate, self.threads = isolate, threads
        self._pool: ProcessPoolExecutor | None = None
        self._queue: Any = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("spawn")  # never fork a process that holds threads
            self._queue = ctx.Queue()
            self._pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_init,
                                             initargs=(self._queue, self.threads,
                                                       os.getpid()))
        return self._pool

    async def fit(self, *args: Any, progress: trainer.Progress) -> Fitted:
        return await self._call(fit, *args, progress=progress)  # type: ignore[no-any-return]

    async def pretrain_embed(self, *args: Any, progress: trainer.Progress) -> Pretrained:
        """:func:`pretrain_embed` in the child; a retrain submitted meanwhile waits for it."""
        return await self._call(pretrain_embed, *args,  # type: ignore[no-any-return]
                                progress=progress)

    async def _call(self, fn: Callable[..., Any], *args: Any,
                    progress: trainer.Progress) -> Any:
        if not self.isolate:
            return await asyncio.to_thread(fn, *args, progress)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor(), fn, *args)
        while not future.done():
            await asyncio.wait({future}, timeout=0.2)
            self._drain(progress)
        self._drain(progress)
        try:
            return await future
        except BrokenProcessPool:
            self._pool = None  # the child died (killed, out of memory): respawn next time
            raise

    def _drain(self, progress: trainer.Progress) -> None:
        while True:
            try:
                step, total = self._queue.get_nowait()
            except queue_mod.Empty:
                return
            progress(step, total)

    def close(self) -> None:
        """Stop the child at once; a retrain in progress is abandoned (it reruns later)."""
        if self._pool is None:
            return
        # The pool's public shutdown waits for a running task; a retrain can take minutes.
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
