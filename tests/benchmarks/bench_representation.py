"""A representation before the labels: label-free pretraining vs training from scratch.

Run from the repository root. With the defaults it pretrains for 180 s, then trains 69
models (5 sizes x 3 seeds x 4 methods, plus the 200-label models of the map test) and
embeds the 60k pool four times: roughly 15 minutes on 2 idle cores (2 threads; estimated
from single-thread CPU time), far longer on a shared, busy machine::

    .venv/bin/python tests/benchmarks/bench_representation.py --out out/representation.json
    # reuse an encoder (skips pretraining; --save-encoder writes one):
    .venv/bin/python tests/benchmarks/bench_representation.py --encoder enc.bin
    # a quick look: fewer sizes and seeds, a short pretraining
    .venv/bin/python tests/benchmarks/bench_representation.py --sizes 100,500 --seeds 1 \\
        --pretrain-seconds 60
    # split the seeds over processes (one thread each), then combine the JSON:
    for s in 0 1 2; do .venv/bin/python tests/benchmarks/bench_representation.py \\
        --encoder enc.bin --threads 1 --seed-list $s --out out/r$s.json & done; wait
    .venv/bin/python tests/benchmarks/bench_representation.py --merge out/r?.json

Data: /work/shared/data/fashion-mnist.npz (``--data``). The pool is every image with
``is_test`` False (60k); accuracy is measured on a fixed, seeded 5,000-image subset of
the ``is_test`` split (``--test``). For each seed, labels are revealed in one random order
of the pool, so the 100-label set is inside the 200-label set (as in active learning).

Measured, with the production recipe (``trainer.train``, ``TrainingSettings()``):

* held-out accuracy at 20, 50, 100, 250, 500 random labels, median over seeds, for
  (a) ``scratch``: FogNet from random weights (today's recipe);
  (b) ``finetune``: FogNet started from the pretrained encoder, every layer trained;
  (c) ``frozen-linear``: pretrained encoder frozen, only the linear head trained;
  (d) ``frozen-mlp``: pretrained conv layers frozen, embed + head (an MLP) trained;
* pretraining wall time and steps (``fogmap.training.pretrain.pretrain``);
* map stability: on a fixed 5,000-item pool sample, 2-D map positions
  (``fogmap.vectors.projection.project``) of the 100-label model's embedding, then of the
  200-label model's embedding aligned to them by Procrustes; reported: the mean
  displacement (the map spans about [-1, 1]) and the share of each item's 10 nearest
  neighbours (32-d embedding, cosine) that both versions agree on. A frozen pretrained
  encoder gives the same embedding in every version (displacement 0 by construction);
* label-free embedding quality: k-NN (k=10, cosine, majority vote) accuracy on the test
  subset with ALL 60k pool labels, for the pretrained encoder, a random-weights FogNet,
  PCA-32 of the pixels, and (for reference, these saw labels) the seed-0 500-label
  scratch and fine-tuned classifiers.

Prints a markdown table and writes JSON (``--out``; default out/representation.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fogmap.core.settings import TrainingSettings
from fogmap.scoring.model import FogNet
from fogmap.training import trainer
from fogmap.training.pretrain import embed, load_encoder, pretrain
from fogmap.vectors.projection import project

DATA = Path("/work/shared/data/fashion-mnist.npz")
METHODS = {
    "scratch": {},
    "finetune": {"freeze": "none"},
    "frozen-linear": {"freeze": "encoder"},
    "frozen-mlp": {"freeze": "features"},
}


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def load(path: Path, test_size: int) -> dict[str, np.ndarray]:
    d = np.load(path)
    images, labels, is_test = d["images"][..., None], d["labels"].astype(np.int64), d["is_test"]
    test = np.flatnonzero(is_test)
    if test_size < len(test):
        test = np.sort(np.random.default_rng(12345).choice(test, test_size, replace=False))
    return {"pool_x": images[~is_test], "pool_y": labels[~is_test],
            "test_x": images[test], "test_y": labels[test]}


@torch.no_grad()
def accuracy(model: FogNet, x: np.ndarray, y: np.ndarray) -> float:
    return float((trainer.predict(model, x).argmax(1) == y).mean())


def knn_accuracy(pool: np.ndarray, pool_y: np.ndarray, test: np.ndarray, test_y: np.ndarray,
                 k: int = 10, classes: int = 10) -> float:
    """Majority vote of the k most cosine-similar pool items: (P, D), (P,), (T, D), (T,)."""
    a = torch.nn.functional.normalize(torch.from_numpy(pool).float(), dim=1)
    b = torch.nn.functional.normalize(torch.from_numpy(test).float(), dim=1)
    lab = torch.from_numpy(pool_y)
    hits = 0
    for lo in range(0, len(b), 1000):
        nearest = (b[lo:lo + 1000] @ a.T).topk(k, dim=1).indices
        votes = torch.nn.functional.one_hot(lab[nearest], classes).sum(1)
        hits += int((votes.argmax(1).numpy() == test_y[lo:lo + 1000]).sum())
    return hits / len(test_y)


def neighbour_overlap(e1: np.ndarray, e2: np.ndarray, k: int = 10) -> float:
    """Mean share of each item's k nearest neighbours (cosine) that two embeddings agree on."""
    def nearest(e: np.ndarray) -> torch.Tensor:
        z = torch.nn.functional.normalize(torch.from_numpy(e).float(), dim=1)
        sim = z @ z.T
        sim.fill_diagonal_(-2.0)
        return sim.topk(k, dim=1).indices
    n1, n2 = nearest(e1), nearest(e2)
    same = (n1.unsqueeze(2) == n2.unsqueeze(1)).any(2).float().sum(1) / k
    return float(same.mean())


def map_shift(e100: np.ndarray, e200: np.ndarray) -> dict[str, float]:
    before = project(e100)
    after = project(e200, previous=before)
    return {"displacement": float(np.linalg.norm(after - before, axis=1).mean()),
            "knn_overlap": neighbour_overlap(e100, e200)}


def pixel_pca(pool_x: np.ndarray, dims: int = 32) -> Any:
    """PCA of the pixels, fitted on 20k pool images: returns images (N, H, W, C) -> (N, dims)."""
    flat = pool_x.reshape(len(pool_x), -1).astype(np.float32) / 255.0
    mean = flat.mean(0)
    sample = flat[np.random.default_rng(0).choice(len(flat), min(20000, len(flat)),
                                                   replace=False)]
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)

    def pca(x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1).astype(np.float32) / 255.0 - mean) @ vt[:dims].T
    return pca


def cold_start(pool_x: np.ndarray, pool_y: np.ndarray, test_x: np.ndarray,
               test_y: np.ndarray, cfg: TrainingSettings, seeds: list[int],
               embeddings: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Median accuracy of a from-scratch model on the first 20 / 50 labels picked by
    TypiClust (fogmap's cold-start strategy) on each label-free embedding."""
    from fogmap.selection.strategies import Candidates, typiclust

    n, zero = len(pool_x), np.zeros(len(pool_x))
    out: dict[str, dict[str, float]] = {}
    for name, emb in embeddings.items():
        cand = Candidates(probs=np.full((n, 10), 0.1), embedding=emb, entropy=zero,
                          margin=zero, least_confidence=zero, bald=zero, eig=zero,
                          labeled_embedding=np.zeros((0, emb.shape[1])))
        for k in (20, 50):
            accs = []
            for seed in seeds:
                picks = typiclust(cand, k, np.random.default_rng(seed))
                model = trainer.train(pool_x[picks], pool_y[picks], 10, cfg, seed=seed)
                accs.append(accuracy(model, test_x, test_y))
                log(f"  cold start {name} k={k} seed {seed}: {accs[-1]:.4f}")
            out.setdefault(name, {})[str(k)] = median(accs)
    return out


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sizes", default="20,50,100,250,500")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", default=None,
                    help="run only these seeds (e.g. 1,2), to split a run across processes")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="combine the JSON of split runs into one table (runs nothing)")
    ap.add_argument("--test", type=int, default=5000, help="held-out images (max 10000)")
    ap.add_argument("--pretrain-seconds", type=float, default=180.0)
    ap.add_argument("--pretrain-steps", type=int, default=None,
                    help="fixed pretraining steps instead of the time budget")
    ap.add_argument("--encoder", type=Path, default=None,
                    help="encoder bytes to reuse instead of pretraining")
    ap.add_argument("--save-encoder", type=Path, default=None)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--map-items", type=int, default=5000)
    ap.add_argument("--no-knn", action="store_true", help="skip the 60k-pool k-NN scores")
    ap.add_argument("--cold-start", action="store_true",
                    help="also: first labels picked by TypiClust on a label-free embedding")
    ap.add_argument("--train-steps", type=int, default=None,
                    help="override min/max training steps (smoke tests only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("out/representation.json"))
    args = ap.parse_args()
    if args.merge:
        merged = merge([json.loads(p.read_text()) for p in args.merge])
        print(report(merged))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(merged, indent=1))
        log(f"wrote {args.out}")
        return
    torch.set_num_threads(args.threads)
    seeds = ([int(s) for s in args.seed_list.split(",")] if args.seed_list
             else list(range(args.seeds)))
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    started = time.perf_counter()
    data = load(args.data, args.test)
    pool_x, pool_y, test_x, test_y = data["pool_x"], data["pool_y"], data["test_x"], data[
        "test_y"]
    cfg = TrainingSettings() if args.train_steps is None else TrainingSettings(
        min_steps=args.train_steps, max_steps=args.train_steps)
    result: dict[str, Any] = {"sizes": sizes, "seeds": seeds, "test_items": len(test_y),
                              "threads": args.threads, "methods": methods}

    # --- pretraining ---------------------------------------------------------------------
    if args.encoder:
        encoder = args.encoder.read_bytes()
        pre_seconds = None
        log(f"encoder from {args.encoder}")
    else:
        budget = (f"{args.pretrain_steps} steps" if args.pretrain_steps
                  else f"{args.pretrain_seconds:.0f} s")
        log(f"pretraining on {len(pool_x)} pool images ({budget})")
        t = time.perf_counter()
        encoder = pretrain(pool_x, 10, seconds_budget=args.pretrain_seconds, seed=0,
                           steps=args.pretrain_steps,
                           progress=lambda s, n: log(f"  pretrain {s}/{n}") if s % 100 == 0
                           else None)
        pre_seconds = time.perf_counter() - t
    if args.save_encoder:
        args.save_encoder.parent.mkdir(parents=True, exist_ok=True)
        args.save_encoder.write_bytes(encoder)
    blob = load_encoder(encoder)
    result["pretrain"] = {"wall_seconds": pre_seconds, "steps": blob["steps"],
                          "batch_size": blob["batch_size"],
                          "seconds_recorded": blob["seconds"]}
    log(f"pretraining: {blob['steps']} steps, {blob['seconds']:.0f} s")

    # --- accuracy vs labels --------------------------------------------------------------
    runs: list[dict[str, Any]] = []
    models: dict[tuple[str, int, int], FogNet] = {}
    map_rng = np.random.default_rng(777)
    map_items = np.sort(map_rng.choice(len(pool_x), args.map_items, replace=False))
    map_emb: dict[tuple[str, int, int], np.ndarray] = {}
    for seed in seeds:
        order = np.random.default_rng(1000 + seed).permutation(len(pool_x))
        for n in sorted(set(sizes) | {100, 200}):
            labeled = order[:n]
            for method in methods:
                if n not in sizes and method == "frozen-linear":
                    continue  # its embedding never changes: nothing to measure at 200
                kw = dict(METHODS[method])
                if method != "scratch":
                    kw["init"] = encoder
                t = time.perf_counter()
                model = trainer.train(pool_x[labeled], pool_y[labeled], 10, cfg, seed=seed,
                                      **kw)
                seconds = time.perf_counter() - t
                if n in (100, 200):
                    map_emb[(method, n, seed)] = embed(pool_x[map_items], model)
                if n == max(sizes) and seed == seeds[0]:
                    models[(method, n, seed)] = model
                if n not in sizes:
                    log(f"  seed {seed} n={n} {method}: (map only) {seconds:.1f}s")
                    continue
                acc = accuracy(model, test_x, test_y)
                runs.append({"method": method, "labels": n, "seed": seed, "accuracy": acc,
                             "train_seconds": seconds})
                log(f"  seed {seed} n={n} {method}: acc {acc:.4f} ({seconds:.1f}s, "
                    f"{time.perf_counter() - started:.0f}s so far)")
    result["runs"] = runs

    # --- map stability: 100 -> 200 labels ----------------------------------------------
    shifts: list[dict[str, Any]] = []
    for method in methods:
        for seed in seeds:
            if method == "frozen-linear":  # the embedding is the encoder's in every version
                e = embed(pool_x[map_items], encoder)
                shifts.append({"method": method, "seed": seed, **map_shift(e, e)})
                break
            if (method, 200, seed) in map_emb:
                shifts.append({"method": method, "seed": seed,
                               **map_shift(map_emb[(method, 100, seed)],
                                           map_emb[(method, 200, seed)])})
    result["map_shifts"] = shifts

    # --- label-free embedding quality: k-NN with all pool labels ------------------------
    pca = pixel_pca(pool_x)
    knn: dict[str, float] = {}
    if not args.no_knn:
        log("k-NN scores on the whole pool")
        torch.manual_seed(0)
        encoders: dict[str, Any] = {"pretrained encoder": encoder,
                                    "random-weights FogNet": FogNet(pool_x.shape[-1], 10).eval()}
        for method in ("scratch", "finetune"):
            if (method, max(sizes), seeds[0]) in models:
                encoders[f"{method} @{max(sizes)} labels (saw labels)"] = models[
                    (method, max(sizes), seeds[0])]
        knn["PCA-32 of pixels"] = knn_accuracy(pca(pool_x), pool_y, pca(test_x), test_y)
        for name, enc in encoders.items():
            t = time.perf_counter()
            knn[name] = knn_accuracy(embed(pool_x, enc), pool_y, embed(test_x, enc), test_y)
            log(f"  {name}: {knn[name]:.4f} ({time.perf_counter() - t:.0f}s)")
    result["knn10_all_pool_labels"] = knn

    # --- optional: the cold start, picked on a label-free embedding ----------------------
    if args.cold_start:
        result["cold_start"] = cold_start(pool_x, pool_y, test_x, test_y, cfg, seeds, {
            "TypiClust on pretrained encoder": embed(pool_x, encoder),
            "TypiClust on PCA-32 of pixels": pca(pool_x)})
    result["total_seconds"] = time.perf_counter() - started
    summarize(result)
    print(report(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log(f"wrote {args.out}")


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Split runs (``--seed-list``) of one configuration -> one result."""
    out = dict(parts[0])
    out["seeds"] = sorted({s for p in parts for s in p["seeds"]})
    out["runs"] = [r for p in parts for r in p["runs"]]
    out["map_shifts"] = [m for p in parts for m in p["map_shifts"]]
    out["knn10_all_pool_labels"] = {k: v for p in parts
                                    for k, v in p.get("knn10_all_pool_labels", {}).items()}
    out["total_seconds"] = sum(p["total_seconds"] for p in parts)
    out.pop("cold_start", None)  # medians of parts cannot be merged; see each part
    out["merged_from"] = len(parts)
    summarize(out)
    return out


def summarize(result: dict[str, Any]) -> None:
    """Medians over seeds, in place."""
    runs, sizes, methods = result["runs"], result["sizes"], result["methods"]
    result["median_accuracy"] = {
        m: {str(n): median([r["accuracy"] for r in runs if r["method"] == m
                            and r["labels"] == n]) for n in sizes} for m in methods}
    result["median_train_seconds"] = {
        m: median([r["train_seconds"] for r in runs if r["method"] == m]) for m in methods}
    result["map_stability"] = {
        m: {k: median([s[k] for s in result["map_shifts"] if s["method"] == m])
            for k in ("displacement", "knn_overlap")}
        for m in methods if any(s["method"] == m for s in result["map_shifts"])}


def report(result: dict[str, Any]) -> str:
    sizes, methods = result["sizes"], result["methods"]
    table, train_s = result["median_accuracy"], result["median_train_seconds"]
    stability, knn = result["map_stability"], result["knn10_all_pool_labels"]
    lines = ["| method | " + " | ".join(f"{n} labels" for n in sizes)
             + " | train s (median) | map shift 100->200 | 10-NN kept |",
             "|---|" + "---|" * (len(sizes) + 3)]
    for m in methods:
        st = stability.get(m, {})
        lines.append(f"| {m} | " + " | ".join(f"{table[m][str(n)]:.3f}" for n in sizes)
                     + f" | {train_s[m]:.1f} | {st.get('displacement', float('nan')):.3f} | "
                     f"{st.get('knn_overlap', float('nan')):.2f} |")
    pre = result["pretrain"]
    lines.append("")
    lines.append(f"Pretraining: {pre['steps']} steps x {pre['batch_size']} pairs, "
                 f"{pre['seconds_recorded']:.0f} s wall when it ran. Accuracy: median of "
                 f"{len(result['seeds'])} seeds on {result['test_items']} held-out images "
                 f"({result['threads']} threads).")
    if knn:
        lines += ["", "| embedding | 10-NN accuracy, all 60k pool labels |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in knn.items()]
    if result.get("cold_start"):
        lines += ["", "| first labels picked by | 20 labels | 50 labels |", "|---|---|---|"]
        scratch = result["median_accuracy"].get("scratch", {})
        lines.append(f"| random (the scratch row) | {scratch.get('20', float('nan')):.3f} | "
                     f"{scratch.get('50', float('nan')):.3f} |")
        lines += [f"| {k} | {v['20']:.3f} | {v['50']:.3f} |"
                  for k, v in result["cold_start"].items()]
    lines.append(f"\nTotal {result['total_seconds']:.0f} s.")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
