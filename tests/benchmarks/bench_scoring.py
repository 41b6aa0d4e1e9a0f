"""Rescoring the pool: seconds per forward batch size, measured side by side.

Run from the repository root::

    .venv/bin/python tests/benchmarks/bench_scoring.py                 # ~2 min
    .venv/bin/python tests/benchmarks/bench_scoring.py --threads 1 --batches 512,128

Trains a FogNet briefly on the first 1,000 pool images (the weights do not change the
cost), then scores the whole Fashion-MNIST pool (60k images) with the embedded default's
:class:`fogmap.scoring.torch_scorer.TorchScorer` (probabilities, MC-dropout head, embedding)
once per batch size, round-robin, ``--repeats`` times, so a noisy neighbour slows every
size alike. Every size must give the same probabilities. Prints the median per size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from bench_label_efficiency import DATA, load  # this folder is on the path of a script run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA), help="digits, an .npz or a folder")
    ap.add_argument("--batches", default="512,128,64", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from fogmap.core.settings import ScoringSettings, TrainingSettings
    from fogmap.scoring.torch_scorer import TorchScorer
    from fogmap.training import trainer

    torch.set_num_threads(args.threads)
    pool, labels, _, test_labels = load(args.data, None, None)  # (N, H, W, C), (N,)
    classes = int(max(labels.max(), test_labels.max()) + 1)
    model = trainer.train(pool[:1000], labels[:1000], classes,
                          TrainingSettings(min_steps=50, max_steps=50), seed=0)
    mc = ScoringSettings().mc_samples
    sizes = [int(b) for b in args.batches.split(",")]
    times: dict[int, list[float]] = {b: [] for b in sizes}
    first = None
    for _ in range(args.repeats):
        for b in sizes:
            scorer = TorchScorer(mc, b, args.threads)
            scorer.use("v0001", model)
            t = time.perf_counter()
            raw = scorer.score(pool)
            times[b].append(time.perf_counter() - t)
            if first is None:
                first = raw.probs
            np.testing.assert_allclose(raw.probs, first, rtol=1e-4, atol=1e-5)
    print(json.dumps({"images": len(pool), "threads": args.threads,
                      "median_s": {b: round(statistics.median(v), 2) for b, v in times.items()},
                      "runs_s": {b: [round(x, 2) for x in v] for b, v in times.items()}}))


if __name__ == "__main__":
    main()
