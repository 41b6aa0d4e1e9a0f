"""Label efficiency: every fogmap strategy against random and two peer libraries.

One invocation runs, on Fashion-MNIST (the pool is every image with ``is_test`` False,
60k, and accuracy is measured on all 10k ``is_test`` images; ``--data`` takes any data
set ``fogmap`` ingests instead, e.g. ``digits``, scikit-learn's bundled 8x8 digits with
fogmap's seeded, stratified 20% held out):

* ``random`` and every other fogmap strategy (:data:`fogmap.selection.strategies.STRATEGIES`);
* baal 2.1 (``baal.active.heuristics``): ``baal-bald`` and ``baal-batchbald``, both on
  the same MC-dropout samples fogmap's ``bald`` reads;
* scikit-activeml 1.0 (``skactiveml.pool``): ``skal-margin`` (UncertaintySampling,
  margin), ``skal-coreset`` (CoreSet), ``skal-badge`` (Badge), ``skal-typiclust``;

all with the same network and recipe (``FogNet`` trained from scratch each round by
``fogmap.training.trainer.train`` with the production ``TrainingSettings()``), the same
20 random initial labels per seed, batches of 20, a budget of 1,000 labels (50 trained
models per run) and seeds 0, 1, 2. Every strategy that measures diversity (fogmap's
kcenter, typiclust, probcover, herding, herding-wide, herding-12k, herding-closest,
herding-whitened, maxherding, margin-diverse, typiclust-margin and auto; the peers'
CoreSet and TypiClust) gets the same label-free representation: the 32-d embedding of
FogNet's encoder pretrained without labels on the pool (``fogmap.training.pretrain``),
as the running services use.
badge (both) works in the model's own gradient embedding, as the method defines.

Peers are called through their public query APIs with the scores of our network: baal's
heuristics take the (N, C, K) MC-dropout probabilities; scikit-activeml's model-based
strategies take a ``SkactivemlClassifier`` that answers ``predict_proba`` from the
trained network's outputs (:class:`Scored`). Two settings differ from the peers'
defaults, both for run time at 60k: BatchBALD runs on the 1,000 items of highest BALD
with ``num_draw=40`` (baal's defaults, the whole pool and 500 draws, build a
B x 500K x C array per pick: 2.4e9 doubles at B = 60k, K = 20; even 2,000 candidates
took 160 s a round on 2 cores) and scikit-activeml's TypiClust caps k-means at 30 Lloyd
rounds (fogmap's own typiclust does the same).

Reported per strategy (means over seeds; "labels to x%" on the seed-mean curve):
AUBC, the mean held-out accuracy over the 50 rounds; the labels needed to reach 80% and
85% (or "-": not within budget); accuracy at 100, 250, 500 and 1,000 labels (250 is
interpolated between 240 and 260); median seconds per round (train + score the pool +
select) and for the selection alone. Then the savings: the labels each strategy needs to
reach a range of accuracies (80%, 85% and those random reaches across its curve) and
their ratio to random's, random's curve taken past the budget by ``--random-curve`` (a
``--random-sizes`` run's file), which also gives the goal's random labels to 85%.
The goals line also pairs auto's AUBC gaps (to random, to the best peer) by seed: the
per-seed gaps' mean, standard deviation and 95% Student-t interval, and whether that
interval lies at or above the goal (met), below it (not met) or across it (undecided:
more seeds, or a larger effect, would be needed to say). ``--auto NAME`` reads another
recorded strategy as auto.
Writes ``report.md`` and ``report.json`` (and one ``runs/<strategy>__s<seed>.jsonl`` per
run, a line per round, so an interrupted benchmark keeps what it measured) under
``--out``. The report also checks round 0, whose model every strategy of a seed trains
on the same labels (a ``--cold-start`` run, which picked its own, is left out): runs of
a seed that differ there were made on different numerics (host, threads, encoder
build), and the report names them (``round0_mismatch``), since their gap holds that
drift as well as the strategies' difference.

Run from the repository root (``make bench`` installs the ``bench`` extra first)::

    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --out out/efficiency
    # on a GPU machine, 16 runs at a time, stopping new rounds after 9 minutes and
    # starting none after 4 (start CUDA MPS first: `nvidia-cuda-mps-control -d`; the runs'
    # small kernels then share the GPU instead of taking turns, ~3.5 s a round):
    python tests/benchmarks/bench_label_efficiency.py --device cuda --workers 16 \\
        --threads 1 --deadline 500 --start-by 240 --encoder enc.bin --order given \\
        --out out/efficiency
    # complete a table: given runs only; then take two of them on to 1,300 labels
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --jobs auto:0,auto:1,baal-batchbald:2 --order given --workers 2 --threads 1 --out D
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --jobs auto:0,auto:1 --resume --budget 1300 --workers 2 --threads 1 --out D
    # random's curve past the budget (one random subset per seed and size):
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --random-sizes 1000,1400,2000 --out D
    # another training recipe on the labeled sets recorded runs had (the default recipe
    # gives back the recorded accuracies) and on --random-sizes' subsets:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py \\
        --refit-from docs/bench/label-efficiency-full.json \\
        --refit auto:0:860,auto:1:860,subset:0:1700 \\
        --recipes default,epochs=120+max_steps=3000 --workers 2 --threads 1 --out D
    # loop runs whose every model trains with another recipe:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --jobs auto:0,auto:1 --budget 860 --training epochs=120+max_steps=3000 --out D
    # late-phase selection side by side: every run goes on from auto's recorded
    # labeled set of its seed at 560 labels (a third of a whole run's time to 860):
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --jobs random:0,margin:0,badge:0 --branch-from docs/bench/label-efficiency-full.json \\
        --branch-at 560 --budget 860 --workers 2 --threads 1 --out D
    # fogmap simulate's start instead of the shared random one: each fogmap strategy
    # picks its own 20 first labels before any model, as the selection service does
    # (recorded as auto@cold-start; random and the peers start as without the flag),
    # then the paired goals read it as auto beside the recorded random runs:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --jobs auto:0,auto:1 --cold-start --workers 2 --threads 1 --out D
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --report-only \\
        --auto auto@cold-start --seeds 0,1 --out D2 --runs D/runs,RANDOM.json
    # ...or with the first 10 of those 20 drawn at random (the shared start's first 10)
    # and the strategy's 10 picked around them (recorded as auto@cold-start+r10):
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --encoder enc.bin \\
        --jobs auto:0,auto:1 --cold-start --cold-start-random 10 --workers 2 --threads 1 --out D
    # and paired by seed with a control from the shared start run on the same host:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --report-only \\
        --auto auto@cold-start --beside herding --seeds 0,1 --out D2 --runs D/runs,CTL/runs
    # a quick check of the whole pipeline (small pool, short training):
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --pool 3000 \\
        --budget 60 --seeds 0 --min-steps 30 --max-steps 30 --pretrain-steps 20
    # one full round at 1,000 labels on this machine (issue 3's < 30 s), 3 repeats:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --round-speed 3
    # the same defaults on another image set (1,438-image pool, 359 held out):
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --data digits \\
        --strategies auto,random,skal-badge --budget 300 --out out/digits
    # tables again from the runs already written (or a report JSON's), seeds 0-2 only,
    # random taken past the budget by a --random-sizes run's file:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --report-only --out D \\
        --runs docs/bench/label-efficiency-full.json --seeds 0,1,2 \\
        --random-curve docs/bench/label-efficiency-random-past-budget.json
    # one table from runs recorded apart (report JSONs, runs folders), comma-separated:
    .venv/bin/python tests/benchmarks/bench_label_efficiency.py --report-only --out D \\
        --runs docs/bench/label-efficiency-min-steps-1200.json,out/peers/runs

On 2 CPU cores, two runs at a time with one thread each (``--workers 2 --threads 1``),
a run takes 20-35 minutes (24-42 s a round with the default floor of 1,200 training
steps, as the shared host's load goes; ~18 s with the old 300; retraining and scoring
the pool dominate), so the full 17 x 3-run benchmark (8-15 hours there) is a GPU
job: one H100 under MPS ran 31 of those runs in 9 minutes, 16 at a time (~3.5 s a
round); see the README for the figures and where they ran.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fashion-mnist.npz"
PEERS = ("baal-bald", "baal-batchbald", "skal-margin", "skal-coreset", "skal-badge",
         "skal-typiclust")
CHECKPOINTS = (100, 250, 500, 1000)
THRESHOLDS = (0.80, 0.85)
SAVINGS_POINTS = 8  # label counts, log-spaced along random's curve, that set the savings' targets
BATCHBALD_POOL = 1000  # BatchBALD's candidates: the items of highest BALD
BATCHBALD_DRAWS = 40  # baal's num_draw: 40 x K = 800 sampled joint label configurations
KEY = ("random", "auto", *PEERS)  # what the goals compare: all seeds of these first
SLOW_FIRST = ("baal-batchbald", "skal-typiclust", "auto", "typiclust", "skal-badge",
              "skal-coreset", "eig", "margin-diverse", "kcenter", "badge")
EIG_TARGETS = 64  # as ScoringSettings.eig_targets


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def fogmap_strategies() -> list[str]:
    from fogmap.selection.strategies import STRATEGIES

    return ["random", *sorted(n for n in STRATEGIES if n != "random")]


# --- data and representation --------------------------------------------------------------


@dataclass
class Data:
    pool: np.ndarray  # (N, H, W, 1) uint8
    pool_labels: np.ndarray  # (N,)
    test: np.ndarray  # (T, H, W, 1) uint8
    test_labels: np.ndarray  # (T,)
    representation: np.ndarray  # (N, R) label-free
    classes: int


def load(spec: str, pool: int | None, test: int | None) -> tuple[np.ndarray, ...]:
    """(pool images, pool labels, test images, test labels) of any data set ``fogmap``
    ingests (``digits``, a ``.npz``, a folder; :func:`fogmap.catalog.datasets.load`); the
    first ``pool``/``test`` of a seeded permutation when given (quick runs), else all."""
    from fogmap.catalog.datasets import load as load_dataset

    d = load_dataset(spec)
    if d.labels is None:
        raise SystemExit(f"{spec}: the benchmark needs labels (it plays the annotator)")
    images, labels, is_test = d.images, d.labels, d.is_test
    rng = np.random.default_rng(1234)
    p, t = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if pool:
        p = np.sort(rng.permutation(p)[:pool])
    if test:
        t = np.sort(rng.permutation(t)[:test])
    return images[p], labels[p], images[t], labels[t]


def representation(pool: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """The label-free embedding (N, 32) of the pool and how it was made."""
    from fogmap.training.pretrain import embed, encoder_model, load_encoder, pretrain

    if args.encoder and Path(args.encoder).exists():
        raw = Path(args.encoder).read_bytes()
    else:
        started = time.perf_counter()
        raw = pretrain(pool, seconds_budget=args.pretrain_seconds, seed=0,
                       steps=args.pretrain_steps, device=args.device)
        log(f"pretrained the encoder in {time.perf_counter() - started:.0f} s")
        if args.encoder:
            Path(args.encoder).write_bytes(raw)
    blob = load_encoder(raw)
    model = encoder_model(raw).to(args.device)
    info = {k: blob[k] for k in ("steps", "seconds", "batch_size", "images")}
    return embed(pool, model), info


# --- one run: 50 rounds of train, score, select -------------------------------------------


@dataclass
class Pool:
    """The trained network's view of the pool in one round."""

    probs: np.ndarray  # (N, C)
    mc: np.ndarray  # (K, N, C) MC-dropout probabilities
    embedding: np.ndarray  # (N, D) the model's own


def score(model: Any, images: np.ndarray, version: str, device: str) -> Pool:
    import torch

    from fogmap.core.settings import ScoringSettings
    from fogmap.scoring.torch_scorer import TorchScorer

    cfg = ScoringSettings()  # the service's batch, except on a GPU, where bigger is faster
    scorer = TorchScorer(mc_samples=cfg.mc_samples, threads=torch.get_num_threads(),
                         batch_size=4096 if device != "cpu" else cfg.batch_size, device=device)
    scorer.use(version, model)
    raw = scorer.score(images)
    return Pool(raw.probs, raw.mc, raw.embedding)


def fogmap_select(name: str, s: Pool, data: Data, labeled: np.ndarray,
                  unlabeled: np.ndarray, k: int, seed: int) -> np.ndarray:
    from fogmap.scoring import uncertainty as U
    from fogmap.selection import strategies as S

    p, mc = s.probs[unlabeled], s.mc[:, unlabeled]
    zeros = np.zeros(len(unlabeled))
    eig = zeros  # EPIG is only computed for the strategy that reads it (it costs seconds)
    if name == "eig":
        targets = np.random.default_rng(seed).choice(len(s.probs), EIG_TARGETS, replace=False)
        eig = U.eig(mc, s.mc[:, np.sort(targets)])
    cand = S.Candidates(
        probs=p, embedding=s.embedding[unlabeled], entropy=U.entropy(p), margin=U.margin(p),
        least_confidence=U.least_confidence(p), bald=U.bald(mc), eig=eig,
        labeled_embedding=s.embedding[labeled],
        representation=data.representation[unlabeled],
        labeled_representation=data.representation[labeled])
    return unlabeled[S.select(name, cand, k, seed)]


def scored_classifier(probs: np.ndarray, embedding: np.ndarray, classes: int) -> Any:
    """A scikit-activeml classifier answering from the trained network's outputs: rows of
    X are pool indices (one column), so strategies see exactly our model's predictions."""
    from skactiveml.base import SkactivemlClassifier

    class Scored(SkactivemlClassifier):
        def __init__(self, probs: Any = None, embedding: Any = None, classes: Any = None,
                     missing_label: Any = np.nan, random_state: Any = None) -> None:
            super().__init__(classes=classes, missing_label=missing_label,
                             random_state=random_state)
            self.probs, self.embedding = probs, embedding

        def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Scored:
            return self  # trained already, by fogmap's recipe

        def predict_proba(self, X: Any, return_embeddings: bool = False) -> Any:
            idx = np.asarray(X)[:, 0].astype(int)
            p = self.probs[idx]
            return (p, self.embedding[idx]) if return_embeddings else p

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(self.predict_proba(X)).argmax(1)

    return Scored(probs, embedding, np.arange(classes))


def peer_select(name: str, s: Pool, data: Data, labeled: np.ndarray, unlabeled: np.ndarray,
                k: int, seed: int) -> np.ndarray:
    n = len(s.probs)
    if name.startswith("baal-"):
        from baal.active.heuristics import BALD, BatchBALD

        mc = np.ascontiguousarray(s.mc[:, unlabeled].transpose(1, 2, 0))  # (U, C, K)
        if name == "baal-bald":
            return unlabeled[np.asarray(BALD().get_ranks(mc)[0])[:k]]
        top = np.argsort(-BALD().get_uncertainties(mc), kind="stable")[:BATCHBALD_POOL]
        ranks = np.asarray(BatchBALD(num_samples=k, num_draw=BATCHBALD_DRAWS)
                           .get_ranks(mc[top])[0])
        return unlabeled[top[ranks[:k]]]
    from skactiveml.pool import Badge, CoreSet, TypiClust, UncertaintySampling

    y = np.full(n, np.nan)
    y[labeled] = data.pool_labels[labeled]
    if name in ("skal-coreset", "skal-typiclust"):
        qs = (CoreSet(random_state=seed) if name == "skal-coreset" else
              TypiClust(random_state=seed, cluster_algo_dict={"max_iter": 30}))
        return np.asarray(qs.query(data.representation, y, batch_size=k))
    clf = scored_classifier(s.probs, s.embedding, data.classes)
    rows = np.arange(n, dtype=float)[:, None]  # X: the pool index of each row
    if name == "skal-margin":
        qs = UncertaintySampling(method="margin_sampling", random_state=seed)
    else:
        qs = Badge(clf_embedding_flag_name="return_embeddings", random_state=seed)
    return np.asarray(qs.query(rows, y, clf, fit_clf=False, batch_size=k))


_DATA: Data | None = None
_LIMITS: Any = None  # keeps the BLAS thread limit in force


def _init_worker(data: Data, threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    global _DATA, _LIMITS
    _DATA = data
    torch.set_num_threads(threads)
    _LIMITS = threadpool_limits(threads)  # numpy/sklearn too: 15 runs x 16 threads thrash
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once


def run(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_one`, with a failure reported (and the other runs going on)."""
    try:
        return run_one(job)
    except Exception as exc:  # noqa: BLE001 - one strategy failing must not stop the rest
        import traceback

        Path(job["path"]).with_suffix(".error").write_text(traceback.format_exc())
        return {"strategy": job["name"], "seed": job["seed"], "rounds": 0,
                "final": float("nan"), "complete": False, "error": repr(exc)}


def accuracy(model: Any, data: Data) -> float:
    """Held-out accuracy of a trained network."""
    from fogmap.training import trainer

    return float((trainer.predict(model, data.test).argmax(1) == data.test_labels).mean())


def resumed(path: Path) -> list[dict[str, Any]]:
    """The rounds of an earlier run that recorded its picks, up to its last selection: the
    round after it (the final one, or one a deadline cut) is trained again, then the run
    goes on, as if it had been started with the larger budget."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for i, row in enumerate(rows):
        if row["round"] != i:
            raise RuntimeError(f"{path}: round {row['round']} in line {i + 1}")
        if "picked" not in row:
            if "select_s" in row:  # selected, but written before picks were recorded
                raise RuntimeError(f"{path} did not record its picks: it cannot be resumed")
            break
        kept.append(row)
    return kept


def initial_labels(n: int, seed: int, initial: int) -> np.ndarray:
    """A run's random initial labeled set (initial,) of a pool of n, for its seed."""
    return np.random.default_rng(seed).choice(n, initial, replace=False)


COLD = "@cold-start"  # what a --cold-start run of a strategy is recorded as: auto@cold-start


def recorded_name(name: str, cold_start: bool, at_random: int = 0) -> str:
    """The name a run's rounds carry: ``name``, or with --cold-start ``name@cold-start``
    for a strategy whose start it changes (every fogmap strategy but random: random and
    the peers start from the seed's random set either way); ``name@cold-start+rN`` when
    N of those first labels were drawn at random (--cold-start-random)."""
    if not cold_start or name == "random" or name in PEERS:
        return name
    return name + COLD + (f"+r{at_random}" if at_random else "")


def cold_start(name: str, data: Data, initial: int, seed: int,
               at_random: int = 0) -> np.ndarray:
    """The first ``initial`` labels (initial,) as fogmap's selection service picks them
    before any model (``fogmap simulate``'s start): by the strategy itself when it needs
    no model, else by typiclust, on the label-free representation with every measure
    flat; selection seed ``seed``, as the service's cold start takes its configured seed.

    With ``at_random`` = N the first N are the seed's random start's first N (the shared
    start's, so the two runs share them) and the strategy picks the other initial - N
    around them, as it would pick around any labeled items.
    """
    from fogmap.selection import strategies as S

    drawn = initial_labels(len(data.pool), seed, initial)[:at_random]
    rest = np.setdiff1d(np.arange(len(data.pool)), drawn)
    rep = data.representation
    cand = S.Candidates.unscored(rep[rest], rep[drawn], data.classes)
    picked = rest[S.select(S.cold_start_name(name), cand, initial - len(drawn), seed)]
    return np.concatenate([drawn, picked])


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One strategy, one seed: rounds until the budget (or the deadline); a line per round
    to ``job['path']``. Returns the run's summary."""
    import torch

    from fogmap.core.settings import TrainingSettings
    from fogmap.training import trainer

    data = _DATA
    assert data is not None
    name, seed, budget, k, device = (job[x] for x in ("name", "seed", "budget", "batch",
                                                       "device"))
    recorded = job["recorded"]
    cfg = TrainingSettings(**job["training"])
    if time.time() > job["start_by"]:  # would not finish: leave the device to the others
        return {"strategy": recorded, "seed": seed, "rounds": 0, "final": float("nan"),
                "complete": False}
    n = len(data.pool)
    path = Path(job["path"])
    rounds = resumed(path) if job["resume"] and path.exists() else []
    own = recorded != name  # the strategy picks its own first labels (--cold-start)
    labeled = (np.asarray(rounds[0]["initial"]) if own and rounds else
               cold_start(name, data, job["initial"], seed, job["cold_start_random"])
               if own else initial_labels(n, seed, job["initial"]))
    labeled = np.concatenate([labeled, np.array([i for r in rounds for i in r["picked"]],
                                                dtype=labeled.dtype)])
    path.write_text("".join(json.dumps(r) + "\n" for r in rounds))
    while True:
        r = len(rounds)
        t0 = time.perf_counter()
        model = trainer.train(data.pool[labeled], data.pool_labels[labeled], data.classes,
                              cfg, seed=seed * 1000 + r, device=device)
        acc = accuracy(model, data)
        t1 = time.perf_counter()
        row: dict[str, Any] = {"strategy": recorded, "seed": seed, "round": r,
                               "labels": int(len(labeled)), "accuracy": acc,
                               "train_s": t1 - t0}
        if own and r == 0:
            row["initial"] = labeled.tolist()  # its own start: the run can be audited
        done = len(labeled) >= budget or time.time() > job["deadline"]
        if not done:
            s = score(model, data.pool, f"v{r + 1:04d}", device)
            t2 = time.perf_counter()
            mask = np.ones(n, bool)
            mask[labeled] = False
            unlabeled = np.flatnonzero(mask)
            take = min(k, budget - len(labeled))
            select = peer_select if name in PEERS else fogmap_select
            picks = np.asarray(select(name, s, data, labeled, unlabeled, take,
                                      seed * 1000 + r), dtype=int)
            if len(set(picks.tolist())) != take or mask[picks].sum() != take:
                raise RuntimeError(f"{name} picked {picks}: not {take} distinct unlabeled")
            labeled = np.concatenate([labeled, picks])
            row.update(score_s=t2 - t1, select_s=time.perf_counter() - t2,
                       picked=picks.tolist())  # pool indices: the run can be audited
        rounds.append(row)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        log(f"{recorded} seed {seed}: {row['labels']} of {budget} labels, accuracy "
            f"{acc:.3f}, round {time.perf_counter() - t0:.0f} s")  # progress, a line per round
        del model
        if device != "cpu":
            torch.cuda.empty_cache()
        if done:
            break
    return {"strategy": recorded, "seed": seed, "rounds": len(rounds),
            "final": rounds[-1]["accuracy"], "complete": rounds[-1]["labels"] >= budget}


# --- the report -----------------------------------------------------------------------------


def first_reaching(labels: np.ndarray, acc: np.ndarray, threshold: float) -> int | None:
    hit = np.flatnonzero(acc >= threshold)
    return int(labels[hit[0]]) if len(hit) else None


def summarize(rows: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Per strategy: the table's figures from the per-round lines of complete runs."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in (r for r in rows if r["labels"] <= budget):  # a run taken past it: its start
        runs.setdefault((row["strategy"], row["seed"]), []).append(row)
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["strategy"] for r in rows):
        complete = sorted((sorted(v, key=lambda r: r["round"]) for (s, _), v in runs.items()
                           if s == name and max(r["labels"] for r in v) >= budget),
                          key=lambda run: run[0]["seed"])  # per-seed figures by seed
        partial = sum(1 for (s, _), v in runs.items() if s == name) - len(complete)
        if not complete:
            out[name] = {"seeds": 0, "partial_runs": partial}
            continue
        labels = np.array([r["labels"] for r in complete[0]])
        curves = np.array([[r["accuracy"] for r in run] for run in complete])  # (S, R)
        mean = curves.mean(0)
        per_round = [r["train_s"] + r.get("score_s", 0) + r.get("select_s", 0)
                     for run in complete for r in run if "select_s" in r]
        out[name] = {
            "seeds": len(complete), "partial_runs": partial,
            "seed_ids": [run[0]["seed"] for run in complete],
            "aubc": float(curves.mean()), "aubc_per_seed": curves.mean(1).tolist(),
            **{f"labels_to_{int(t * 100)}": first_reaching(labels, mean, t)
               for t in THRESHOLDS},
            **{f"acc_at_{c}": float(np.interp(c, labels, mean)) if c <= labels[-1] else None
               for c in CHECKPOINTS},  # none past the budget (a --budget 300 run)
            "s_per_round": statistics.median(per_round) if per_round else None,
            "select_s": statistics.median(r["select_s"] for run in complete for r in run
                                          if "select_s" in r) if per_round else None,
            "curve": {"labels": labels.tolist(), "accuracy": mean.tolist()},
        }
    return out


def round0_mismatch(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Seeds whose runs disagree at round 0, with each strategy's round-0 accuracy.

    Every strategy of a seed trains its first model on the same initial labels with the
    same recipe, so round 0 is a fingerprint of the numerics (host, threads, encoder): runs
    that differ there were made on different setups, and their per-seed gap carries that
    drift as well as the strategies' difference.
    """
    first: dict[int, dict[str, float]] = {}
    for r in rows:
        if r["round"] == 0 and "initial" not in r:  # not a --cold-start run's own start
            first.setdefault(r["seed"], {})[r["strategy"]] = r["accuracy"]
    return {seed: acc for seed, acc in sorted(first.items()) if len(set(acc.values())) > 1}


def earlier_meta(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    """The meta of the report already in ``--out`` (device, representation, ...) that
    ``--report-only`` rewrites; the command line's where there is none yet (a runs folder
    put together by hand)."""
    if not path.exists():
        return default
    try:
        meta = json.loads(path.read_text())["meta"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"{path}: not this benchmark's report ({err!r}); move it away "
                         "to report from the command line's settings") from None
    if not isinstance(meta, dict):
        raise SystemExit(f"{path}: not this benchmark's report (its meta is not an object)")
    return meta


def random_past_budget(summary: dict[str, Any], path: Path | None
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """random's seed-mean curve (labels, accuracy), taken past the budget by a
    ``--random-sizes`` file (``random-curve.json``) where it has random's seeds.

    The loop's random labeled set at N labels is such a subset, so the two join into one
    curve; the file's sizes within the budget are left to the loop's own rounds. None
    when random has no complete run.
    """
    rnd = summary.get("random", {})
    if not rnd.get("seeds"):
        return None
    labels = np.array(rnd["curve"]["labels"])
    acc = np.array(rnd["curve"]["accuracy"])
    if path is None:
        return labels, acc
    try:
        blob = json.loads(Path(path).read_text())
        column = {s: i for i, s in enumerate(blob["seeds"])}
        sizes = {int(n): v for n, v in blob["accuracy"].items()}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"--random-curve {path}: not a --random-sizes run's "
                         f"random-curve.json ({err!r})") from None
    missing = [s for s in rnd["seed_ids"] if s not in column]
    if missing:
        raise SystemExit(f"{path} has no subsets for random's seeds {missing}")
    past = sorted(n for n in sizes if n > labels[-1])
    extra = [statistics.fmean(sizes[n][column[s]] for s in rnd["seed_ids"]) for n in past]
    return np.concatenate([labels, past]), np.concatenate([acc, extra])


def savings(summary: dict[str, Any], random_curve: Path | None) -> dict[str, Any] | None:
    """Labels each strategy needs to reach a range of accuracies, and their ratio to random's.

    Targets: :data:`THRESHOLDS` and the whole percents random's curve (with
    ``random_curve``, taken past the budget) has reached at :data:`SAVINGS_POINTS` label
    counts spread evenly on a log scale from five rounds' worth to its last point, so
    they span what random learns rather than the first rounds' jumps. One target shows a
    strategy's saving at one level only; across the range it shows whether the saving
    holds as accuracy rises.
    """
    curve = random_past_budget(summary, random_curve)
    if curve is None or len(curve[0]) < 2:
        return None
    r_labels, r_acc = curve
    reached = np.maximum.accumulate(r_acc)  # the best random has reached by then
    start = min(r_labels[0] + 5 * (r_labels[1] - r_labels[0]), r_labels[-1])
    at = np.geomspace(start, r_labels[-1], SAVINGS_POINTS)
    grid = {int(np.floor(100 * np.interp(n, r_labels, reached))) for n in at}
    targets = sorted(grid | {round(100 * t) for t in THRESHOLDS})
    rnd = [first_reaching(r_labels, r_acc, t / 100) for t in targets]
    out: dict[str, Any] = {"targets": targets, "random": rnd,
                           "random_past_budget": str(random_curve) if random_curve else None,
                           "strategies": {}}
    for name, v in summary.items():
        if not v.get("seeds") or name == "random":
            continue
        labels, acc = np.array(v["curve"]["labels"]), np.array(v["curve"]["accuracy"])
        mine = [first_reaching(labels, acc, t / 100) for t in targets]
        out["strategies"][name] = {
            "labels": mine,
            "ratio": [m / r if m and r else None for m, r in zip(mine, rnd, strict=True)]}
    return out


def paired_gap(summary: dict[str, Any], a: str, b: str, goal: float = 0.0
               ) -> dict[str, Any] | None:
    """a's AUBC minus b's in points, paired by seed over the seeds both have complete
    runs of (a seed's runs share their initial labels, so pairing takes out what the
    seed does to both): the per-seed gaps, their mean and standard deviation, a 95%
    Student-t interval for the mean, and how that interval reads against ``goal``:
    ``met`` (all of it at or above), ``not met`` (all below) or ``undecided``. None when
    the two share no seed; no interval from one seed."""
    from scipy import stats

    sa, sb = (dict(zip(summary.get(n, {}).get("seed_ids") or [],
                       summary.get(n, {}).get("aubc_per_seed") or [], strict=True))
              for n in (a, b))
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return None
    gap = np.array([100 * (sa[s] - sb[s]) for s in seeds])
    mean = float(gap.mean())
    out: dict[str, Any] = {"of": a, "minus": b, "seeds": seeds, "per_seed": gap.tolist(),
                           "mean": mean, "sd": None, "ci95": None, "goal": goal,
                           "reading": "undecided"}
    if len(gap) > 1:
        sd = float(gap.std(ddof=1))
        half = float(stats.t.ppf(0.975, len(gap) - 1)) * sd / np.sqrt(len(gap))
        lo, hi = mean - half, mean + half
        out.update(sd=sd, ci95=[lo, hi], reading="met" if lo >= goal else
                   "not met" if hi < goal else "undecided")
    return out


def goals(summary: dict[str, Any], saved: dict[str, Any] | None = None,
          auto_name: str = "auto", beside: str | None = None) -> dict[str, Any]:
    """Issue 3's goals, each with the figures it compares; ``auto_name`` is the recorded
    strategy that stands for auto (runs recorded under another name, e.g. ``herding``
    before it became auto). ``beside`` names a control auto's AUBC is also paired with
    by seed (a variant's start against the shared one, say)."""
    def get(name: str, key: str) -> Any:
        return summary.get(name, {}).get(key)

    peers = {n: v["aubc"] for n, v in summary.items() if n in PEERS and v.get("seeds")}
    best_peer = max(peers, key=peers.__getitem__) if peers else None
    auto, rnd = get(auto_name, "aubc"), get("random", "aubc")
    a85, r85 = get(auto_name, "labels_to_85"), get("random", "labels_to_85")
    if r85 is None and saved:  # random only gets there past the budget
        r85 = saved["random"][saved["targets"].index(85)]
    return {
        "auto": auto_name, "auto_aubc": auto, "random_aubc": rnd,
        "auto_minus_random_points": None if auto is None or rnd is None
        else 100 * (auto - rnd),
        "auto_minus_random_paired": paired_gap(summary, auto_name, "random", goal=3.0),
        "auto_minus_best_peer_paired": paired_gap(summary, auto_name, best_peer)
        if best_peer else None,
        "best_peer": best_peer, "best_peer_aubc": peers.get(best_peer) if best_peer else None,
        "auto_beats_best_peer": None if auto is None or not peers else auto >= max(
            peers.values()),
        "auto_labels_to_85": a85, "random_labels_to_85": r85,
        "labels_to_85_ratio": a85 / r85 if a85 and r85 else None,
        **({"auto_minus_beside_paired": paired_gap(summary, auto_name, beside)}
           if beside else {}),
    }


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    def pct(x: Any) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}"

    def num(x: Any, unit: str = "") -> str:
        return "-" if x is None else f"{x:.2f}{unit}" if isinstance(x, float) else f"{x}"

    head = ("| strategy | seeds | AUBC | to 80% | to 85% | "
            + " | ".join(f"@{c}" for c in CHECKPOINTS) + " | s/round | select s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    ranked = sorted(summary.items(), key=lambda kv: -(kv[1].get("aubc") or 0))
    for name, v in ranked:
        if not v.get("seeds"):
            lines.append(f"| {name} | 0 ({v['partial_runs']} partial) |" + " |" * 9)
            continue
        lines.append(
            f"| {name} | {v['seeds']} | {pct(v['aubc'])} | {num(v['labels_to_80'])} | "
            f"{num(v['labels_to_85'])} | "
            + " | ".join(pct(v[f"acc_at_{c}"]) for c in CHECKPOINTS)
            + f" | {num(v['s_per_round'])} | {num(v['select_s'])} |")

    def paired(p: dict[str, Any] | None, before: str = "") -> str:
        """``before`` and the paired gap, in brackets; ``before`` alone without one."""
        if not p:
            return f" ({before})" if before else ""
        seeds = f"{len(p['seeds'])} seed{'s' * (len(p['seeds']) > 1)}"
        text = f"paired over {seeds}: {p['mean']:+.2f}"
        if p["ci95"]:
            lo, hi = p["ci95"]
            text += (f", sd {p['sd']:.2f}, 95% CI {lo:+.2f} to {hi:+.2f}, {p['reading']}"
                     + (f" at {p['goal']:g}" if p["goal"] else ""))
        else:
            text += ", no interval from one seed"
        return f" ({before}; {text})" if before else f" ({text})"

    g = meta["goals"]
    standing_in = g.get("auto", "auto")  # the recorded strategy read as auto
    lines += [
        "",
        f"AUBC and accuracies in %; labels to x%: first point of the seed-mean curve at or "
        f"above x (\"-\": not within {meta['budget']}). " + (
            f"Device: {meta['device']}, {meta['workers']} runs at a time; representation: "
            f"{meta['representation']}." if meta.get("representation") else
            "Device, runs at a time and representation: not recorded (runs put together "
            "without their report)."),
        "",
        "Goals" + ("" if standing_in == "auto" else f" (auto: {standing_in})") + ": "
        f"auto - random AUBC = {num(g['auto_minus_random_points'])} points"
        f"{paired(g.get('auto_minus_random_paired'), 'goal >= 3')}; best peer "
        f"{g['best_peer']} AUBC {pct(g['best_peer_aubc'])} vs auto "
        f"{pct(g['auto_aubc'])}{paired(g.get('auto_minus_best_peer_paired'))}; "
        f"labels to 85%: auto {num(g['auto_labels_to_85'])} vs "
        f"random {num(g['random_labels_to_85'])}, ratio {num(g['labels_to_85_ratio'])} "
        f"(goal: at most 0.5).",
    ]
    beside = g.get("auto_minus_beside_paired")
    if beside:
        lines += ["", f"{standing_in} - {beside['minus']} AUBC{paired(beside)}."]
    odd = meta.get("round0_mismatch") or {}
    cold = [n for n in summary if COLD in n]
    lines += ["", "Round 0 (the same initial labels for every strategy" + (
        f"; not {', '.join(cold)}: each picked its own" if cold else "") + "): " + (
        "the same accuracy in every run of a seed, one numeric setup." if not odd else
        "differs for " + "; ".join(
            f"seed {seed} (" + ", ".join(f"{n} {100 * a:.2f}" for n, a in acc.items()) + ")"
            for seed, acc in odd.items())
        + ": those runs were made on different setups (host, threads, encoder), so their "
        "per-seed gaps carry that drift too.")]
    saved = meta.get("savings")
    if saved:
        head = "| labels to reach | " + " | ".join(f"{t}%" for t in saved["targets"]) + " |"
        lines += ["", head, "|" + "---|" * (head.count("|") - 1),
                  "| random | " + " | ".join(num(n) for n in saved["random"]) + " |"]
        for name, _ in ranked:
            if name in saved["strategies"]:
                v = saved["strategies"][name]
                lines.append(f"| {name} | " + " | ".join(
                    "-" if n is None else f"{n} ({r:.2f})" if r else f"{n}"
                    for n, r in zip(v["labels"], v["ratio"], strict=True)) + " |")
        past = saved["random_past_budget"]
        lines += ["", "Labels to reach x% on the seed-mean curve, and in brackets the "
                  "ratio to random's (below 1: fewer labels)"
                  + (f"; random's curve past the budget: {past}." if past else ".")]
    return "\n".join(lines) + "\n"


def report(out: Path, runs: Path | list[Path], meta: dict[str, Any],
           seeds: set[int] | None = None) -> dict[str, Any]:
    """report.json and report.md under ``out`` from the runs' lines (only ``seeds``' when
    given); ``meta``'s ``random_curve`` (a --random-sizes file) takes random past the
    budget in the labels-to-x% figures."""
    rows = [r for r in recorded_rounds(runs) if seeds is None or r["seed"] in seeds]
    summary = summarize(rows, meta["budget"])
    past = meta.get("random_curve")
    saved = savings(summary, Path(past) if past else None)
    meta = {**meta, "savings": saved,
            "goals": goals(summary, saved, meta.get("auto_name") or "auto",
                           meta.get("beside")),
            "round0_mismatch": round0_mismatch(rows)}
    (out / "report.json").write_text(json.dumps({"meta": meta, "strategies": summary,
                                                 "rounds": rows}, indent=1))
    text = markdown(summary, meta)
    (out / "report.md").write_text(text)
    return {"text": text, "meta": meta}


# --- speed of one production round ------------------------------------------------------------


def round_speed(data: Data, args: argparse.Namespace) -> None:
    """Issue 3's 'full round' at 1,000 labels: retrain, rescore the pool, select 20."""
    import torch

    from fogmap.core.settings import TrainingSettings
    from fogmap.training import trainer

    torch.set_num_threads(args.threads)
    labeled = np.random.default_rng(0).choice(len(data.pool), 1000, replace=False)
    mask = np.ones(len(data.pool), bool)
    mask[labeled] = False
    unlabeled = np.flatnonzero(mask)
    times: dict[str, list[float]] = {}
    for rep in range(args.round_speed):
        t0 = time.perf_counter()
        model = trainer.train(data.pool[labeled], data.pool_labels[labeled], data.classes,
                              TrainingSettings(), seed=rep, device=args.device)
        t1 = time.perf_counter()
        s = score(model, data.pool, f"v{rep + 1:04d}", args.device)
        t2 = time.perf_counter()
        for name in ("badge", "kcenter", "auto"):
            t = time.perf_counter()
            fogmap_select(name, s, data, labeled, unlabeled, 20, rep)
            times.setdefault(f"select_{name}", []).append(time.perf_counter() - t)
        times.setdefault("train", []).append(t1 - t0)
        times.setdefault("score", []).append(t2 - t1)
        times.setdefault("round_badge", []).append(t2 - t0 + times["select_badge"][-1])
        log(f"repeat {rep}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"pool": len(data.pool), "labels": 1000, "threads": args.threads,
                      "device": args.device, "repeats": args.round_speed, "median_s": med}))


def random_subset(n: int, seed: int, size: int) -> np.ndarray:
    """--random-sizes' labeled set (size,) of ``seed``: nested across sizes."""
    return np.random.default_rng(seed).permutation(n)[:size]


def random_curve(data: Data, args: argparse.Namespace, cfg: Any) -> None:
    """Held-out accuracy of the model trained on N random labels (N in --random-sizes),
    per seed; the labeled set of the loop's ``random`` at N is such a subset too. Prints
    the seed means and writes them, with every model's accuracy, to OUT/random-curve.json."""
    import torch

    from fogmap.training import trainer

    torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.random_sizes.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    acc: dict[int, list[float]] = {size: [] for size in sizes}
    for seed in seeds:
        for size in sizes:
            take = random_subset(len(data.pool), seed, size)
            model = trainer.train(data.pool[take], data.pool_labels[take], data.classes,
                                  cfg, seed=seed * 100_000 + size,
                                  device=args.device)
            a = accuracy(model, data)
            acc[size].append(a)
            log(f"random, seed {seed}, {size} labels: {a:.4f}")
    out = {"seeds": seeds, "sizes": sizes, "accuracy": {str(k): v for k, v in acc.items()},
           "mean": {str(k): statistics.fmean(v) for k, v in acc.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "random-curve.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out["mean"]))


# --- the recipe on fixed labeled sets -----------------------------------------------------


def recorded_rounds(source: Path | list[Path]) -> list[dict[str, Any]]:
    """Per-round lines with picks: a runs folder of ``.jsonl`` files, or a report JSON
    (its ``rounds`` and any ``meta.extra_seeds.rounds``); of several, all their lines,
    where no run may be in two of them (which of the two would count is unknown)."""
    if isinstance(source, list):
        rows: list[dict[str, Any]] = []
        seen: dict[tuple[str, int], Path] = {}  # run -> the source it came from
        for one in source:
            part = recorded_rounds(one)
            for run in sorted({(r["strategy"], r["seed"]) for r in part}):
                if run in seen:
                    raise SystemExit(f"{run[0]} seed {run[1]} is in {seen[run]} and in "
                                     f"{one}: name one of them")
                seen[run] = one
            rows += part
        return rows
    if not source.exists():
        raise SystemExit(f"no runs at {source}")
    if source.is_dir():
        return [json.loads(line) for p in sorted(source.glob("*.jsonl"))
                for line in p.read_text().splitlines() if line.strip()]
    blob = json.loads(source.read_text())
    return blob["rounds"] + blob["meta"].get("extra_seeds", {}).get("rounds", [])


def labeled_set(spec: str, rows: list[dict[str, Any]], n: int, initial: int
                ) -> tuple[np.ndarray, int]:
    """(labeled pool indices, training seed) of ``strategy:seed:labels``.

    ``subset:S:N`` is --random-sizes' subset with its seed; any other strategy is that
    run's labeled set when it had N labels (its initial labels and the picks before),
    with the seed the run trained that round with, so the default recipe gives back the
    recorded accuracy."""
    try:
        name, seed_s, size_s = spec.strip().rsplit(":", 2)
        seed, size = int(seed_s), int(size_s)
    except ValueError:
        raise SystemExit(f"--refit takes strategy:seed:labels, got {spec!r}") from None
    if name == "subset":
        return random_subset(n, seed, size), seed * 100_000 + size
    before = rounds_before(name, seed, size, rows, "--refit")
    labeled = np.concatenate([initial_labels(n, seed, initial),
                              np.array([i for r in before for i in r["picked"]], dtype=int)])
    return labeled, seed * 1000 + len(before)


def rounds_before(name: str, seed: int, size: int, rows: list[dict[str, Any]],
                  option: str) -> list[dict[str, Any]]:
    """The recorded rounds of run ``name`` ``seed`` before the one that had ``size``
    labels, in order, each with its picks; a message naming ``option`` when there is no
    such round or a pick is missing."""
    run = sorted((r for r in rows if r["strategy"] == name and r["seed"] == seed),
                 key=lambda r: r["round"])
    at = [r["round"] for r in run if r["labels"] == size]
    if not at:
        raise SystemExit(f"{option} {name}:{seed}:{size}: no round of {name} seed {seed} "
                         f"had {size} labels (recorded: "
                         f"{[r['labels'] for r in run] or 'no run'})")
    before = [r for r in run if r["round"] < at[0]]
    if any("picked" not in r for r in before):
        raise SystemExit(f"{option} {name}:{seed}:{size}: that run did not record its "
                         "picks, so its labeled set is unknown (runs record them since "
                         "--resume exists)")
    return before


def branch_rows(args: argparse.Namespace, wanted: list[tuple[str, int]], n: int
                ) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """For --branch-at: each wanted run's first rows, copied from the recorded
    --branch-strategy run of its seed up to the round that had --branch-at labels (picks
    included, renamed to the run's strategy). The run resumes from them, so every
    strategy goes on from the same labeled set. Checked before anything trains."""
    if args.budget <= args.branch_at:
        raise SystemExit(f"--branch-at {args.branch_at} needs a larger --budget "
                         f"(got {args.budget})")
    known = fogmap_strategies() + list(PEERS)
    if args.branch_strategy not in known:
        raise SystemExit(f"--branch-strategy {args.branch_strategy!r}: not a strategy "
                         f"({', '.join(known)})")
    rows = recorded_rounds(args.branch_from)
    out = {}
    for name, seed in wanted:
        spec = f"{args.branch_strategy}:{seed}:{args.branch_at}"
        before = rounds_before(args.branch_strategy, seed, args.branch_at, rows,
                               "--branch-at")
        top = max((i for r in before for i in r["picked"]), default=-1)
        if top >= n:
            raise SystemExit(f"--branch-from: {spec} picked pool item {top}, but the pool "
                             f"has {n}: another --data or --pool?")
        out[name, seed] = [{**r, "strategy": name, "branched_from": spec} for r in before]
    return out


def recipe(text: str) -> dict[str, Any]:
    """``default`` or ``field=value+field=value`` (TrainingSettings fields, JSON values)
    -> the overrides, checked: an unknown field or a bad value stops the run."""
    from pydantic import ValidationError

    from fogmap.core.settings import TrainingSettings

    if text == "default":
        return {}
    pairs = [kv.split("=", 1) for kv in text.split("+")]
    unknown = [p[0] for p in pairs if len(p) != 2 or p[0] not in TrainingSettings.model_fields]
    if unknown:
        raise SystemExit(f"recipe {text!r}: {unknown} not field=value of TrainingSettings "
                         f"({', '.join(TrainingSettings.model_fields)})")
    try:
        overrides = {k: json.loads(v) for k, v in pairs}
        TrainingSettings(**overrides)
    except (ValueError, ValidationError) as exc:
        raise SystemExit(f"recipe {text!r}: {exc}") from None
    return overrides


def refit_one(job: dict[str, Any]) -> dict[str, Any]:
    from fogmap.core.settings import TrainingSettings
    from fogmap.training import trainer

    data = _DATA
    assert data is not None
    idx = np.asarray(job["labeled"])
    t0 = time.perf_counter()
    model = trainer.train(data.pool[idx], data.pool_labels[idx], data.classes,
                          TrainingSettings(**job["training"]), seed=job["seed"],
                          device=job["device"])
    return {"set": job["set"], "recipe": job["recipe"], "accuracy": accuracy(model, data),
            "train_s": time.perf_counter() - t0}


def refit(data: Data, args: argparse.Namespace, base: dict[str, Any]) -> None:
    """Every --recipes recipe trained on every --refit labeled set (seeds as recorded):
    what a different training recipe would give on the same labels, without redoing the
    loops. Writes OUT/refit.json and OUT/refit.md (seed means per strategy and size)."""
    rows = recorded_rounds(args.refit_from or args.runs)
    sets = [s.strip() for s in args.refit.split(",") if s.strip()]
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    overrides = {r: recipe(r) for r in recipes}
    jobs = []
    for spec in sets:
        labeled, seed = labeled_set(spec, rows, len(data.pool), args.initial)
        jobs += [{"set": spec, "recipe": r, "labeled": labeled.tolist(), "seed": seed,
                  "training": {**base, **overrides[r]}, "device": args.device}
                 for r in recipes]
    results = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, _init_worker, (data, args.threads)) as workers:
        for res in workers.imap_unordered(refit_one, jobs):
            log(f"{res['set']} {res['recipe']}: {res['accuracy']:.4f} "
                f"({res['train_s']:.0f} s)")
            results.append(res)
    def group(spec: str) -> str:  # auto:0:860 -> auto@860, what the seeds are averaged over
        name, _, size = spec.rsplit(":", 2)
        return f"{name}@{size}"

    def mean(g: str, r: str) -> float:
        return statistics.fmean(x["accuracy"] for x in results
                                if x["recipe"] == r and group(x["set"]) == g)

    lines = ["| labeled set (seed mean) | " + " | ".join(recipes) + " |",
             "|---|" + "---|" * len(recipes)]
    lines += [f"| {g} | " + " | ".join(f"{100 * mean(g, r):.1f}" for r in recipes) + " |"
              for g in dict.fromkeys(map(group, sets))]
    lines.append("| train s (median) | " + " | ".join(
        f"{statistics.median(x['train_s'] for x in results if x['recipe'] == r):.0f}"
        for r in recipes) + " |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refit.json").write_text(json.dumps(
        {"sets": sets, "recipes": recipes, "base": base, "threads": args.threads,
         "results": sorted(results, key=lambda x: (x["set"], x["recipe"]))}, indent=1))
    (args.out / "refit.md").write_text(text)
    print(text)


# --- main ---------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA),
                    help="digits, an .npz or a folder, as fogmap ingests (default: "
                    "Fashion-MNIST)")
    ap.add_argument("--out", type=Path, default=Path("out/efficiency"))
    ap.add_argument("--strategies", default="all",
                    help="comma-separated names, 'fogmap', 'peers' or 'all'")
    ap.add_argument("--seeds", help="comma-separated (default 0,1,2); with --report-only: "
                    "table only these seeds' runs (default: every run recorded)")
    ap.add_argument("--jobs", help="comma-separated strategy:seed runs instead of every "
                    "strategy with every seed (to complete a table), e.g. auto:3,random:3")
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--cold-start", action="store_true",
                    help="fogmap strategies pick their own --initial labels before any "
                    "model, as the selection service and `fogmap simulate` do (model-free "
                    "ones themselves, the others by typiclust), recorded as NAME@cold-start; "
                    "random and the peers start from the seed's random set as without it")
    ap.add_argument("--cold-start-random", type=int, default=0, metavar="N",
                    help="with --cold-start: the first N of those labels are the seed's "
                    "random start's first N and the strategy picks the rest around them "
                    "(recorded as NAME@cold-start+rN)")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--pool", type=int, help="use a seeded subset of the pool (quick runs)")
    ap.add_argument("--test", type=int, help="use a seeded subset of the test images")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--workers", type=int, default=1, help="runs at a time (processes)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per run (default: cores / workers)")
    ap.add_argument("--deadline", type=float, default=0,
                    help="seconds after which no run starts another round (0: none)")
    ap.add_argument("--start-by", type=float, default=0,
                    help="seconds after which no new run starts (0: until the deadline)")
    ap.add_argument("--order", choices=("goals", "given"), default="goals",
                    help="goals: every strategy's first seed, then the other seeds of "
                    "random, auto and the peers, then the rest; given: strategy by strategy "
                    "in the order of --strategies, each with all its seeds")
    ap.add_argument("--resume", action="store_true",
                    help="go on from the runs already in the runs folder (those that "
                    "recorded their picks), e.g. to a larger --budget")
    ap.add_argument("--random-sizes", metavar="N,N,...",
                    help="only the random baseline's accuracy at these label counts (one "
                    "random subset per seed and size, trained once): random's curve past "
                    "the budget, without 20-label rounds")
    ap.add_argument("--random-curve", type=Path, metavar="FILE",
                    help="a --random-sizes run's random-curve.json: takes random's curve "
                    "past the budget in the report's labels-to-x%% and savings figures")
    ap.add_argument("--branch-at", type=int, metavar="LABELS",
                    help="start every run from a recorded run's labeled set at LABELS "
                    "labels (same seed; see --branch-from, --branch-strategy) and go on "
                    "with the run's own strategy: late-phase selection compared on one "
                    "labeled set, in a third of a whole run's time")
    ap.add_argument("--branch-from", type=Path, help="the recorded runs --branch-at reads: "
                    "a runs folder or a report JSON")
    ap.add_argument("--branch-strategy", default="auto",
                    help="whose recorded runs --branch-at starts from (default: auto)")
    ap.add_argument("--refit", metavar="STRATEGY:SEED:LABELS,...",
                    help="only train --recipes on these labeled sets: a recorded run's "
                    "(from --refit-from) at that many labels, or subset:SEED:N (as "
                    "--random-sizes); e.g. auto:0:860,subset:0:1700")
    ap.add_argument("--refit-from", type=Path, help="the recorded runs --refit reads: a "
                    "runs folder or a report JSON (default: the runs folder)")
    ap.add_argument("--recipes", default="default",
                    help="for --refit: comma-separated 'default' or TrainingSettings "
                    "overrides joined by '+', e.g. default,epochs=120+max_steps=3000")
    ap.add_argument("--training", default="default", metavar="RECIPE",
                    help="the recipe every model of this invocation trains with, as in "
                    "--recipes (e.g. epochs=120+max_steps=3000); default: TrainingSettings()")
    ap.add_argument("--min-steps", type=int, help="override TrainingSettings.min_steps")
    ap.add_argument("--max-steps", type=int, help="override TrainingSettings.max_steps")
    ap.add_argument("--encoder", help="encoder file: read if it exists, else written")
    ap.add_argument("--pretrain-seconds", type=float, default=180.0)
    ap.add_argument("--pretrain-steps", type=int, help="fixed steps instead of seconds")
    ap.add_argument("--round-speed", type=int, default=0, metavar="REPEATS",
                    help="only time full rounds at 1,000 labels")
    ap.add_argument("--runs", type=lambda text: [Path(p) for p in text.split(",") if p],
                    help="folder of the per-run lines (default: OUT/runs); to read, "
                    "several folders or report JSONs, comma-separated")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--auto", default="auto", metavar="STRATEGY",
                    help="the recorded strategy the goals read as auto (default: auto), "
                    "e.g. herding for runs recorded under that name before it was auto")
    ap.add_argument("--beside", metavar="STRATEGY",
                    help="also pair auto's AUBC by seed with this recorded strategy's "
                    "(a control: e.g. herding from the shared start beside auto@cold-start)")
    args = ap.parse_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    if (args.branch_at is None) != (args.branch_from is None):
        ap.error("--branch-at and --branch-from go together")
    if not 0 <= args.cold_start_random <= args.initial:
        ap.error(f"--cold-start-random is 0 to --initial ({args.initial})")
    if args.cold_start_random and not args.cold_start:
        ap.error("--cold-start-random goes with --cold-start")
    if args.cold_start and args.branch_from:
        ap.error("--cold-start is a run's start; a branched run starts from a recorded one")
    if args.runs and len(args.runs) > 1 and not (args.report_only or args.refit):
        ap.error("several --runs are read (--report-only, --refit), not written to")
    args.runs = args.runs or [args.out / "runs"]
    return args


def stop_on_sigterm() -> None:
    """``kill PID`` of the benchmark stops its runs too: SIGTERM unwinds main, so the
    worker pool's context terminates its processes rather than leaving them running."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main(argv: list[str] | None = None) -> int:
    from fogmap.core.settings import TrainingSettings

    stop_on_sigterm()
    args = parse(argv)
    started = time.time()
    only = None if args.seeds is None else {int(x) for x in args.seeds.split(",")}
    args.seeds = args.seeds or "0,1,2"
    names = {"fogmap": fogmap_strategies(), "peers": list(PEERS),
             "all": fogmap_strategies() + list(PEERS)}.get(args.strategies)
    names = names or [n.strip() for n in args.strategies.split(",") if n.strip()]
    pairs = [j.strip().rsplit(":", 1) for j in (args.jobs or "").split(",") if j.strip()]
    if any(len(p) != 2 or not p[1].isdigit() for p in pairs):
        raise SystemExit(f"--jobs takes strategy:seed pairs, got {args.jobs!r}")
    names = list(dict.fromkeys(p[0] for p in pairs)) if pairs else names
    unknown = set(names) - set(fogmap_strategies()) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown strategies {sorted(unknown)}; known: "
                         f"{', '.join(fogmap_strategies() + list(PEERS))}")
    meta = {"budget": args.budget, "initial": args.initial, "batch": args.batch,
            "device": args.device, "workers": args.workers, "threads": args.threads,
            "data": str(args.data), "representation": "see representation_info",
            "random_curve": str(args.random_curve) if args.random_curve else None,
            "auto_name": args.auto, "beside": args.beside}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        # Without an earlier report, how the runs were made is unknown: the command
        # line's --device, --workers and encoder describe this call, not those runs.
        old = earlier_meta(args.out / "report.json", {
            **meta, "device": None, "workers": None, "threads": None,
            "representation": None})
        past = meta["random_curve"] or old.get("random_curve")
        print(report(args.out, args.runs, {**old, "budget": args.budget,
                                           "random_curve": past, "auto_name": args.auto,
                                           "beside": args.beside},
                     only)["text"])
        return 0
    pool, pool_labels, test, test_labels = load(args.data, args.pool, args.test)
    log(f"pool {len(pool)}, test {len(test)}; " + (
        f"random at {args.random_sizes} labels, seeds {args.seeds}" if args.random_sizes
        else f"recipes {args.recipes} on {args.refit}" if args.refit
        else f"runs {args.jobs}" if pairs else
        f"{len(names)} strategies x seeds {args.seeds}"))
    classes = int(max(pool_labels.max(), test_labels.max()) + 1)
    training = {**{k: v for k, v in (("min_steps", args.min_steps),
                                     ("max_steps", args.max_steps)) if v is not None},
                **recipe(args.training)}
    meta["training"] = training
    if args.random_sizes or args.refit:  # training only: no representation needed
        data = Data(pool, pool_labels, test, test_labels, np.zeros((len(pool), 0)), classes)
        if args.refit:
            refit(data, args, training)
        else:
            random_curve(data, args, TrainingSettings(**training))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [(n, int(s)) for n, s in pairs] or [(n, s) for n in names for s in seeds]
    branched = {} if args.branch_at is None else branch_rows(args, wanted, len(pool))
    rep, info = representation(pool, args)
    data = Data(pool, pool_labels, test, test_labels, rep.astype(np.float32), classes)
    if args.round_speed:
        round_speed(data, args)
        return 0
    meta["representation"] = (f"FogNet encoder pretrained without labels, {info['steps']} "
                              f"steps of {info['batch_size']} pairs")
    meta["representation_info"] = info
    deadline = started + args.deadline if args.deadline else float("inf")
    start_by = min(deadline, started + args.start_by if args.start_by else float("inf"))
    runs = args.runs[0]
    runs.mkdir(parents=True, exist_ok=True)
    jobs = [{"name": n, "seed": s, "budget": args.budget, "batch": args.batch,
             "initial": args.initial, "device": args.device, "training": training,
             "deadline": deadline, "start_by": start_by, "resume": args.resume,
             "cold_start_random": args.cold_start_random,
             "recorded": recorded_name(n, args.cold_start, args.cold_start_random)}
            for n, s in wanted]
    for job in jobs:
        job["path"] = str(runs / f"{job['recorded']}__s{job['seed']}.jsonl")
    if args.cold_start:
        meta["cold_start"] = ("fogmap strategies (recorded as NAME" + COLD + ") picked their "
                              "own first labels as the selection service does before any "
                              "model; random and the peers started from the seed's random set")
        if args.cold_start_random:
            meta["cold_start"] += (f"; the first {args.cold_start_random} of each such start "
                                   "were the seed's random start's first, the rest picked "
                                   "around them")
    if branched:
        for job in jobs:
            path = Path(job["path"])
            if not (args.resume and path.exists()):  # --resume: on from an earlier branch
                path.write_text("".join(json.dumps(r) + "\n"
                                        for r in branched[job["name"], job["seed"]]))
            job["resume"] = True
        meta["branch"] = (f"every run starts from {args.branch_strategy}'s recorded run of "
                          f"its seed at {args.branch_at} labels ({args.branch_from})")
    if args.order == "goals":
        # Every strategy's first seed, then the other seeds of what the goals compare, then
        # the rest; slow runs first within each, so a deadline cuts the least.
        jobs.sort(key=lambda j: (j["seed"] != seeds[0] and j["name"] not in KEY,
                                 j["seed"] != seeds[0], j["seed"],
                                 SLOW_FIRST.index(j["name"]) if j["name"] in SLOW_FIRST
                                 else len(SLOW_FIRST)))
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, _init_worker, (data, args.threads)) as workers:
        for res in workers.imap_unordered(run, jobs):
            status = ("" if res["complete"] else f" FAILED: {res['error']}" if "error" in res
                      else " (not started: too late to finish)" if not res["rounds"]
                      else " (cut off by the deadline)")
            log(f"{res['strategy']} seed {res['seed']}: {res['rounds']} rounds, final "
                f"{res['final']:.3f}{status}")
            report(args.out, runs, meta)  # after every run: a cut-off run keeps it
    meta["wall_s"] = time.time() - started
    print(report(args.out, runs, meta)["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
