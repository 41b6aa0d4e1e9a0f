"""A fast screen for selection strategies: their picks scored by a learner on frozen features.

Not the benchmark. ``bench_label_efficiency.py`` trains FogNet from scratch every round
(~25-60 s a round on 2 cores, so a five-seed run of one strategy takes 1.5 hours); here
the learner is a multinomial logistic regression on fixed features, refitted in well
under a second, so a strategy's cold start over five seeds takes a minute or two. Each
seed starts from the benchmark's kind of start (20 random labels; not the same 20) and
takes batches of 20 for ``--rounds`` rounds; each round the learner's probabilities
give the candidates' margins, entropies and confidences (``bald`` and ``eig`` are 0:
there is no dropout here), and the diversity strategies measure distances in the same
label-free representation the benchmark gives them (the pretrained encoder's 32-d
embedding). The learner's features are that embedding, standardized
(``--features embedding``), or the first 100 principal components of the pixels
(``--features pixels``), a learner that shares nothing with the representation.

What it is worth: on 2026-12-07 it gave ``herding-whitened`` +0.24 (embedding; by seed
-0.02 / +0.65 / +0.35 / +0.29 / -0.12) and +0.74 points (pixels; -0.96 / +2.72 / +1.57
/ -0.20 / +0.60) over ``herding``'s rounds 1-9, and the real benchmark then tied them
(-0.05 over its first 12 rounds, five seeds; README, Label efficiency). A screen for
large effects and for bugs, never a result.

Run from the repository root (the encoder as ``bench_label_efficiency.py`` builds it)::

    .venv/bin/python tests/benchmarks/bench_selection_proxy.py --encoder out/enc887.bin \\
        --strategies herding,herding-whitened --features embedding
    .venv/bin/python tests/benchmarks/bench_selection_proxy.py --encoder out/enc887.bin \\
        --strategies herding,herding-whitened --features pixels

Prints, per strategy, the mean held-out accuracy over rounds 1..R (round 0 is the same
for every strategy of a seed), per seed and the difference from the first strategy
named, and the seed-mean curve.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

PIXEL_COMPONENTS = 100
PIXEL_FIT_ROWS = 10_000  # the pixel PCA is fitted on this many pool images (every 6th)


def features(kind: str, pool: np.ndarray, test: np.ndarray, rep: tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
    """The learner's standardized features of the pool and the test images."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if kind == "embedding":
        a, b = rep
    else:
        flat = pool.reshape(len(pool), -1).astype(np.float32) / 255
        step = max(1, len(flat) // PIXEL_FIT_ROWS)
        pca = PCA(PIXEL_COMPONENTS, random_state=0).fit(flat[::step])
        a = pca.transform(flat)
        b = pca.transform(test.reshape(len(test), -1).astype(np.float32) / 255)
    scaler = StandardScaler().fit(a)
    return scaler.transform(a), scaler.transform(b)


def run(name: str, seed: int, rounds: int, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
        y_test: np.ndarray, rep: np.ndarray, classes: int) -> list[float]:
    """Held-out accuracy after each of rounds + 1 fits (20 labels, then 20 more a round)."""
    from sklearn.linear_model import LogisticRegression

    from fogmap.scoring import uncertainty as U
    from fogmap.selection import strategies as S

    labeled = np.random.default_rng(seed).choice(len(x), 20, replace=False)
    accuracy = []
    for r in range(rounds + 1):
        model = LogisticRegression(max_iter=500).fit(x[labeled], y[labeled])
        accuracy.append(float((model.predict(x_test) == y_test).mean()))
        if r == rounds:
            break
        unlabeled = np.setdiff1d(np.arange(len(x)), labeled)
        probs = np.zeros((len(unlabeled), classes))  # classes not yet seen get 0
        probs[:, model.classes_] = model.predict_proba(x[unlabeled])
        zeros = np.zeros(len(unlabeled))
        cand = S.Candidates(
            probs=probs, embedding=rep[unlabeled], entropy=U.entropy(probs),
            margin=U.margin(probs), least_confidence=U.least_confidence(probs), bald=zeros,
            eig=zeros, labeled_embedding=rep[labeled], representation=rep[unlabeled],
            labeled_representation=rep[labeled])
        labeled = np.concatenate([labeled, unlabeled[S.select(name, cand, 20, seed * 1000 + r)]])
    return accuracy


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_label_efficiency import DATA, load

    from fogmap.selection.strategies import STRATEGIES
    from fogmap.training.pretrain import embed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", type=Path, required=True,
                    help="encoder bytes (bench_label_efficiency.py --encoder writes them)")
    ap.add_argument("--strategies", default="herding,herding-whitened",
                    help="comma-separated; the first is the one the others are compared to")
    ap.add_argument("--features", choices=("embedding", "pixels"), default="embedding")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--rounds", type=int, default=9, help="batches of 20 after the first 20")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    names = args.strategies.split(",")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        ap.error(f"unknown strategies {unknown}; known: {', '.join(sorted(STRATEGIES))}")
    if not args.encoder.exists():
        ap.error(f"{args.encoder}: no such encoder")
    seeds = [int(s) for s in args.seeds.split(",")]

    pool, y, test, y_test = load(args.data, None, None)
    raw = args.encoder.read_bytes()
    rep = (embed(pool, raw), embed(test, raw))
    x, x_test = features(args.features, pool, test, rep)
    classes = int(max(y.max(), y_test.max())) + 1
    first: np.ndarray | None = None
    for name in names:
        started = time.perf_counter()
        curves = np.array([run(name, s, args.rounds, x, y, x_test, y_test, rep[0], classes)
                           for s in seeds])  # (seeds, rounds + 1)
        per_seed = curves[:, 1:].mean(1)
        first = per_seed if first is None else first
        print(f"{name}: mean {100 * per_seed.mean():.2f} over rounds 1-{args.rounds}; "
              f"per seed {' / '.join(f'{100 * v:.2f}' for v in per_seed)}; "
              f"vs {names[0]} {' / '.join(f'{100 * v:+.2f}' for v in per_seed - first)}; "
              f"curve {' '.join(f'{100 * v:.1f}' for v in curves.mean(0))} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
