"""Query strategies: pure functions over per-item measures and embeddings.

A strategy sees a :class:`Candidates` view of the unlabeled pool and returns the indices
(into that view) of the ``k`` items to label next, best first. Shapes: N candidates,
C classes, D embedding dimensions, L labeled items.

* uncertainty: ``least-confidence``, ``margin``, ``entropy``, ``bald``, ``eig`` (top k);
* diversity: ``kcenter`` (core-set), ``typiclust`` (typical points of uncovered clusters);
* both: ``badge`` (k-means++ in gradient space), ``margin-diverse`` (one per cluster of
  the most uncertain), ``herding`` (margin-weighted kernel coverage) and ``herding-wide``
  (the same, its candidates widened by the pool's closest calls), ``herding-12k``
  (the same on twice the sample), ``herding-closest`` (the same, its kernel as wide
  as the closest labeled pair) and ``herding-whitened`` (the same on Mahalanobis
  distances);
* ``auto`` (the default): typicality at the cold start, uncertainty x diversity later;
* ``random``, the baseline.

Randomness comes only from the seeded generator, and :func:`select` runs every strategy
on a canonical (content-sorted) order of the pool, so for a fixed seed every strategy is
permutation equivariant: permuting the pool permutes the picks. Distance computations run
in blocks of ``chunk`` rows, so memory stays bounded at 60k candidates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy import sparse
from scipy.spatial.distance import pdist
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning

CHUNK = 2048  # a distance block holds at most CHUNK**2 floats (16 MiB in float32)
TYPICAL_UNTIL, UNCERTAIN_FROM = 5, 10  # typiclust-margin's switch, in labels per class


@dataclass(frozen=True)
class Candidates:
    probs: np.ndarray  # (N, C) predictive distribution
    embedding: np.ndarray  # (N, D)
    entropy: np.ndarray  # (N,)
    margin: np.ndarray  # (N,) 1 - (p1 - p2)
    least_confidence: np.ndarray  # (N,)
    bald: np.ndarray  # (N,)
    eig: np.ndarray  # (N,)
    labeled_embedding: np.ndarray  # (L, D)
    # The label-free representation (R dims) the diversity strategies measure distances
    # in: stable across model versions and meaningful before any label. None: they use
    # the model's ``embedding`` instead. ``badge`` always uses the model's embedding (its
    # gradient embedding is defined by the model's last layer).
    representation: np.ndarray | None = None  # (N, R)
    labeled_representation: np.ndarray | None = None  # (L, R)

    def __post_init__(self) -> None:
        if (self.representation is None) != (self.labeled_representation is None):
            raise ValueError("give representation and labeled_representation together")

    @classmethod
    def unscored(cls, vectors: np.ndarray, labeled: np.ndarray, classes: int) -> Candidates:
        """Before any model: the representation (N, R) stands in for the embedding, the
        labeled items' vectors (L, R) for theirs, and every measure is flat (uniform
        probabilities over ``classes``, zero uncertainty)."""
        zeros = np.zeros(len(vectors))
        return cls(probs=np.full((len(vectors), classes), 1.0 / classes), embedding=vectors,
                   entropy=zeros, margin=zeros, least_confidence=zeros, bald=zeros,
                   eig=zeros, labeled_embedding=labeled, representation=vectors,
                   labeled_representation=labeled)

    def __len__(self) -> int:
        return len(self.entropy)

    @property
    def space(self) -> np.ndarray:
        """Where diversity is measured: (N, R) representation, else (N, D) embedding."""
        return self.embedding if self.representation is None else self.representation

    @property
    def labeled_space(self) -> np.ndarray:
        """The labeled items in :attr:`space`: (L, R) or (L, D)."""
        return (self.labeled_embedding if self.labeled_representation is None
                else self.labeled_representation)

    def take(self, idx: np.ndarray) -> Candidates:
        """The candidates ``idx`` (M,), in that order; the labeled set is unchanged."""
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)
                                if not f.name.startswith("labeled_")
                                and getattr(self, f.name) is not None})


Strategy = Callable[[Candidates, int, np.random.Generator], np.ndarray]


# --- uncertainty: the top k of one measure ----------------------------------------------


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (k,) of the k highest of ``scores`` (N,); ties broken at random."""
    jitter = rng.random(len(scores)) * 1e-9
    return np.argsort(-(scores + jitter), kind="stable")[:k]


def by_measure(field: str) -> Strategy:
    def pick(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
        return top_k(getattr(c, field), k, rng)

    pick.__name__ = field
    return pick


def random(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """The baseline: k items uniformly at random."""
    return rng.permutation(len(c))[:k]


# --- distances ----------------------------------------------------------------------------


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances: (A, D) x (B, D) -> (A, B), never negative."""
    d = a @ b.T
    d *= -2.0
    d += (a * a).sum(1)[:, None]
    d += (b * b).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def min_sq_dist(x: np.ndarray, ref: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Squared distance from each row of x (N, D) to its nearest row of ref (L, D): (N,).

    ``inf`` when ref is empty. Computed in (chunk, chunk) blocks.
    """
    out = np.full(len(x), np.inf, dtype=np.result_type(x, ref))
    rn = (ref * ref).sum(1)  # (L,)
    for lo in range(0, len(x), chunk):
        for r in range(0, len(ref), chunk):
            block = x[lo:lo + chunk] @ ref[r:r + chunk].T  # (chunk, chunk)
            block *= -2.0
            block += rn[r:r + chunk]
            np.minimum(out[lo:lo + chunk], block.min(1), out=out[lo:lo + chunk])
    return np.maximum(out + (x * x).sum(1), 0.0)  # ||x||^2 is constant along each row


def typicality(x: np.ndarray, chunk: int = CHUNK, neighbours: int = 20) -> np.ndarray:
    """Inverse mean distance to the nearest neighbours: (N, D) -> (N,), all > 0.

    Uses min(neighbours, N // 2) neighbours (TypiClust); rows run in blocks so that a
    block holds at most chunk**2 distances. The block's matrix product only shortlists the
    neighbours: their distances are then taken directly, ||x_i - x_j||, which is the same
    float for (i, j) and (j, i) whatever the block size, so items that are mathematically
    tied (the two members of a cluster of two) tie exactly and the lowest index wins.
    """
    n = len(x)
    kn = min(neighbours, n // 2)
    if kn == 0:
        return np.ones(n)
    x = x.astype(np.float64)
    sq = (x * x).sum(1)  # (N,)
    short = min(kn + 2, n - 1)  # a margin for rows whose kn-th neighbour is a near-tie
    rows = max(1, chunk * chunk // n)
    out = np.empty(n)
    for lo in range(0, n, rows):
        d = x[lo:lo + rows] @ x.T  # (rows, N): ||x_j||^2 - 2 x_i.x_j, ranks like distance
        d *= -2.0
        d += sq
        d[np.arange(len(d)), np.arange(lo, lo + len(d))] = np.inf  # not its own neighbour
        near = np.argpartition(d, short - 1, axis=1)[:, :short]  # (rows, short)
        exact = np.empty(near.shape)
        for j in range(short):  # one neighbour column at a time: (rows, D) memory
            exact[:, j] = ((x[lo:lo + rows] - x[near[:, j]]) ** 2).sum(1)
        exact.sort(axis=1)
        out[lo:lo + rows] = 1.0 / (np.sqrt(exact[:, :kn]).mean(1) + 1e-12)
    return out


def kmeans(x: np.ndarray, clusters: int, rng: np.random.Generator,
           sample: int = 20_000) -> np.ndarray:
    """Cluster ids (N,) of x (N, D): k-means++ seeding (one trial per centre, so it stays
    cheap at hundreds of clusters) and at most 30 Lloyd rounds, fitted on at most
    ``sample`` rows drawn at random; then every row goes to its nearest centre."""
    if clusters >= len(x):
        return np.arange(len(x))
    x = x.astype(np.float32)  # sklearn's k-means runs natively, and twice as fast, in it
    fit = x if len(x) <= sample else x[np.sort(rng.choice(len(x), sample, replace=False))]
    seeds, _ = kmeans_plusplus(fit, clusters, random_state=int(rng.integers(2**31)),
                               n_local_trials=1)
    model = KMeans(clusters, init=seeds, n_init=1, max_iter=30)
    with warnings.catch_warnings():  # duplicate points: fewer distinct clusters is fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(fit)
    return np.asarray(model.predict(x))


def fill(picks: list[int], ranked: np.ndarray, k: int) -> np.ndarray:
    """``picks`` topped up to k from ``ranked`` (best first), skipping repeats: (k,)."""
    seen = set(picks)
    rest = [int(i) for i in ranked if int(i) not in seen]
    return np.array((picks + rest)[:k], dtype=int)


# --- diversity and uncertainty x diversity ------------------------------------------------


def kcenter(c: Candidates, k: int, rng: np.random.Generator,
            chunk: int = CHUNK) -> np.ndarray:
    """Core-set (Sener & Savarese 2018): greedy k-center in :attr:`Candidates.space`.

    Each pick is the candidate farthest from the labeled set and the earlier picks, so
    the picks greedily minimize the largest distance from any item to a labeled one.
    With no labels the first pick is the item nearest the pool's mean. Deterministic.
    """
    x = c.space.astype(np.float32)  # (N, D); float32 halves the distance work
    d = min_sq_dist(x, c.labeled_space.astype(np.float32), chunk)  # (N,)
    picks: list[int] = []
    if not len(c.labeled_space):
        picks.append(int(np.argmin(sq_dist(x, x.mean(0, keepdims=True))[:, 0])))
        d = sq_dist(x, x[picks[0]:picks[0] + 1])[:, 0]
    d[picks] = -1.0
    while len(picks) < k:
        i = int(np.argmax(d))
        picks.append(i)
        np.minimum(d, sq_dist(x, x[i:i + 1])[:, 0], out=d)
        d[picks] = -1.0
    return np.array(picks, dtype=int)


def gradient_factors(probs: np.ndarray, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BADGE's gradient embedding g_i = a_i (x) h_i in factors: a = p - onehot(argmax p)
    (N, C) and h = embedding (N, D); g (N, C*D) itself is never formed."""
    a = probs.astype(np.float64).copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    return a, embedding.astype(np.float64)


def gradient_sq_dist(a: np.ndarray, h: np.ndarray, i: int,
                     sq: np.ndarray | None = None) -> np.ndarray:
    """||g_j - g_i||^2 for every j: (N,), from <g_i, g_j> = <a_i, a_j> <h_i, h_j>.

    O(N (C + D)) time and O(N) memory, where forming g would take N * C * D. ``sq`` (N,)
    is ||g||^2 when the caller has it.
    """
    sq = (a * a).sum(1) * (h * h).sum(1) if sq is None else sq
    return np.maximum(sq + sq[i] - 2.0 * (a @ a[i]) * (h @ h[i]), 0.0)


def badge(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """BADGE (Ash et al. 2020): k-means++ seeding over gradient embeddings.

    g_i = (p_i - onehot(argmax p_i)) (x) h_i is the last layer's loss gradient if the
    predicted label were right: long when the model is unsure, pointing where the item
    differs. The first pick has the longest gradient; each next one is drawn with
    probability proportional to its squared distance to the nearest pick, so a batch is
    uncertain and diverse at once (see :func:`gradient_sq_dist` for the memory).
    """
    a, h = gradient_factors(c.probs, c.embedding)  # (N, C), (N, D)
    sq = (a * a).sum(1) * (h * h).sum(1)  # (N,) ||g||^2
    picks = [int(np.argmax(sq))]
    d = gradient_sq_dist(a, h, picks[0], sq)  # (N,) to the nearest pick
    while len(picks) < k:
        d[picks] = 0.0
        total = d.sum()
        if total > 0:
            i = int(rng.choice(len(d), p=d / total))
        else:  # every gradient coincides with a pick: any unpicked item is as good
            i = int(rng.choice(np.setdiff1d(np.arange(len(d)), picks)))
        picks.append(i)
        np.minimum(d, gradient_sq_dist(a, h, i, sq), out=d)
    return np.array(picks, dtype=int)


def typiclust(c: Candidates, k: int, rng: np.random.Generator, chunk: int = CHUNK,
              min_size: int = 5, max_clusters: int = 500) -> np.ndarray:
    """TypiClust (Hacohen et al. 2022): the most typical items of uncovered clusters.

    Clusters labeled and unlabeled items (in :attr:`Candidates.space`) into min(L + k,
    max(max_clusters, k)) k-means clusters. Each pick comes from the cluster with the fewest
    labeled items and picks so far (ties: the largest; clusters under ``min_size`` only when
    nothing else is left) and is its unlabeled item of highest :func:`typicality`, computed
    within the cluster. Needs no labels and no model: the cold-start strategy.
    """
    n = len(c)
    x = np.vstack([c.space, c.labeled_space]).astype(np.float32)  # (N + L, D)
    clusters = min(len(x), len(c.labeled_space) + k, max(max_clusters, k))
    label = kmeans(x, clusters, rng)  # (N + L,)
    size = np.bincount(label, minlength=clusters)
    covered = np.bincount(label[n:], minlength=clusters)
    open_ = np.bincount(label[:n], minlength=clusters)  # unlabeled, unpicked members
    typical: dict[int, np.ndarray] = {}
    picks: list[int] = []
    for _ in range(k):
        small = size < min_size
        # the lexsort's last key sorts first: has open members, big enough, least covered
        j = int(np.lexsort((-size, covered, small, open_ == 0))[0])
        members = np.flatnonzero(label == j)
        if j not in typical:
            typical[j] = typicality(x[members], chunk)
        score = np.where((members < n) & ~np.isin(members, picks), typical[j], -np.inf)
        picks.append(int(members[np.argmax(score)]))
        covered[j] += 1
        open_[j] -= 1
    return np.array(picks, dtype=int)


def sq_dist_blocks(x: np.ndarray, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """Squared distances of x (N, D) to itself by row blocks: (lo, (rows, N)) pairs, rows
    lo to lo + rows, each block at most chunk**2 distances (may dip below 0 by rounding)."""
    n = len(x)
    sq = (x * x).sum(1)  # (N,)
    rows = max(1, chunk * chunk // n)
    for lo in range(0, n, rows):
        d = x[lo:lo + rows] @ x.T  # (rows, N), then ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j
        d *= -2.0
        d += sq
        d += sq[lo:lo + rows, None]
        yield lo, d


def impure_sq_radius(x: np.ndarray, cluster: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Each row's squared distance to the nearest row of another cluster: (N,).

    A ball around row i of a smaller squared radius holds only its own cluster's rows.
    """
    out = np.empty(len(x))
    for lo, d in sq_dist_blocks(x, chunk):
        d[cluster[lo:lo + len(d), None] == cluster[None, :]] = np.inf
        out[lo:lo + len(d)] = d.min(1)
    return np.maximum(out, 0.0)


def ball_graph(x: np.ndarray, sq_radius: float, chunk: int = CHUNK) -> sparse.csr_matrix:
    """The rows closer than ``sq_radius`` (squared) to each row, itself included: (N, N)
    boolean and symmetric (a pair whose two computed distances round to opposite sides
    of the radius is left out)."""
    parts = []
    for lo, d in sq_dist_blocks(x, chunk):
        d[np.arange(len(d)), np.arange(lo, lo + len(d))] = -1.0  # its own ball holds it
        parts.append(sparse.csr_matrix(d < sq_radius))
    ball = sparse.vstack(parts, format="csr")
    return ball.multiply(ball.T).tocsr()


def probcover(c: Candidates, k: int, rng: np.random.Generator, chunk: int = CHUNK,
              purity: float = 0.95, sample: int = 20_000) -> np.ndarray:
    """ProbCover (Yehuda et al. 2022): greedy maximum coverage with balls of radius delta.

    delta is the largest radius at which ``purity`` of the balls around the items (in
    :attr:`Candidates.space`) stay inside one of C k-means clusters, C the number of
    classes. Items closer than delta to a labeled one are covered; each pick is the
    unlabeled item whose ball covers the most uncovered items. When nothing is left to
    cover, the rest of the batch is drawn at random. Needs no model: a cold-start strategy.

    The graph holds every pair's distance once, so above ``sample`` candidates it is built
    on that many drawn at random (and the labeled items): 4.5 s from 60k on one core.
    On Fashion-MNIST it is 9-15 points under ``typiclust`` at 40-120 labels: its radius
    is small there and its picks crowd into the densest classes (README, Label efficiency).
    """
    if len(c) > sample:
        idx = np.sort(rng.choice(len(c), sample, replace=False))  # (sample,)
        return idx[probcover(c.take(idx), k, rng, chunk, purity, sample)]
    n = len(c)
    # (N + L, D) in float64: float32 distances round differently per block size
    x = np.vstack([c.space, c.labeled_space]).astype(np.float64)
    cluster = kmeans(x, c.probs.shape[1], rng)  # (N + L,)
    # Balls strictly inside the radius, so the pair that sets it (a certain near-tie) is
    # out whatever the rounding; inf when every item shares a cluster.
    radius = float(np.quantile(impure_sq_radius(x, cluster, chunk), 1.0 - purity,
                               method="lower"))
    ball = ball_graph(x, radius, chunk)  # (N + L, N + L)
    uncovered = np.ones(len(x))
    uncovered[ball[n:].indices] = 0.0  # what the labeled items' balls hold
    candidate_balls = ball[:n]  # (N, N + L), sliced once
    jitter = rng.random(n) * 1e-6  # ties broken at random
    picks: list[int] = []
    for _ in range(k):
        gain = candidate_balls @ uncovered + jitter  # (N,) uncovered items each would cover
        gain[picks] = -1.0
        if gain.max() < 1.0:
            break
        i = int(np.argmax(gain))
        picks.append(i)
        uncovered[ball[i].indices] = 0.0
    return fill(picks, rng.permutation(n), k)


def tiling_sq_scale(x: np.ndarray, ref: np.ndarray) -> float:
    """The median squared distance from the rows of x (M, D) to the nearest of its rows
    ``ref`` (R,), those counted as 0: the squared scale at which R of M items tile them.

    When R >= M / 2 that median is 0, so the scale is the median over the other rows
    alone (1.0 when none is left or they all sit on a reference row). Exact zeros rather
    than computed self-distances: float32 rounding leaves those at ~1e-5, which would
    otherwise set the scale when half the rows are references.
    """
    d = min_sq_dist(x, x[ref])  # (M,)
    d[ref] = 0.0
    scale = float(np.median(d))
    if scale > 0:
        return scale
    rest = np.delete(d, ref)
    return float(np.median(rest)) if len(rest) and np.median(rest) > 0 else 1.0


def closest_pair_sq(x: np.ndarray) -> float:
    """The smallest non-zero squared distance between two rows of x (L, D), from exact
    differences (duplicates give exactly 0 and are passed over); 0.0 when there is none."""
    d = pdist(x.astype(np.float64), "sqeuclidean") if len(x) > 1 else np.empty(0)
    d = d[d > 0]
    return float(d.min()) if len(d) else 0.0


def whitening(x: np.ndarray, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(mean (R,), map (R, R)) taking rows of x (N, R) to coordinates where they have
    identity covariance (PCA whitening): ``(x - mean) @ map``. Squared distances there
    are Mahalanobis distances, unchanged by any invertible linear map of x. Directions
    with less than ``floor`` of the largest variance are scaled as if at that floor, so
    a flat direction's noise is not blown up; with no spread at all the map is identity.
    """
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(0) if len(x64) else np.zeros(x64.shape[1])
    if len(x64) < 2:
        return mean, np.eye(x64.shape[1])
    var, vec = np.linalg.eigh(np.atleast_2d(np.cov(x64, rowvar=False)))  # ascending
    if not var[-1] > 0:
        return mean, np.eye(x64.shape[1])
    return mean, vec / np.sqrt(np.maximum(var, floor * var[-1]))


def herding(c: Candidates, k: int, rng: np.random.Generator, weighted: bool = True,
            sample: int = 6_000, widen: bool = False, bandwidth: str = "tiling",
            whiten: bool = False, chunk: int = CHUNK) -> np.ndarray:
    """Uncertainty herding (Bae et al. 2025); MaxHerding (Bae et al. 2024) unweighted.

    Greedy maximum of the weighted coverage sum_x w(x) max_s K(x, s) over a ``sample``
    of the pool drawn at random, s running over the labeled items and the picks: K is a
    Gaussian kernel in :attr:`Candidates.space` whose squared bandwidth is the median
    squared distance from the sample to L + k of its items drawn at random (the scale at
    which L + k items tile it), w the margin score (1 when not ``weighted``). With few
    labels the model's margins are high everywhere and the picks cover the pool, typical
    items first; as the model firms up they cover its close calls. Each pick is the
    candidate of greatest gain; gains are updated only where the pick raised coverage.
    The candidates are the sample, and with ``widen`` (weighted only) also the pool's
    ``sample`` most uncertain items: the coverage is still estimated on the unbiased
    sample, but the greedy step may take the pool's closest calls that the sample missed.
    ``bandwidth="closest-labeled"`` takes UHerding's adaptive radius instead: the
    smallest squared distance between two labeled items (the tiling scale while fewer
    than two distinct ones exist), which narrows the kernel faster as labels accumulate.
    With ``whiten`` distances are measured after :func:`whitening` by the candidates'
    own covariance (Mahalanobis), so no direction of the representation counts for more
    because its scale happens to be larger.
    """
    if bandwidth not in ("tiling", "closest-labeled"):
        raise ValueError(f"bandwidth {bandwidth!r}: 'tiling' or 'closest-labeled'")
    n = len(c)
    space, lab = c.space, c.labeled_space
    if whiten:
        mean, to_white = whitening(space)
        space, lab = (space - mean) @ to_white, (lab - mean) @ to_white
    idx = np.sort(rng.choice(n, min(n, sample), replace=False))  # (M,)
    x = space[idx].astype(np.float32)
    lab = lab.astype(np.float32)
    # drawn whatever the bandwidth, so every variant takes the same later draws
    ref = rng.choice(len(x), min(len(x), len(lab) + k), replace=False)
    s2 = closest_pair_sq(lab) if bandwidth == "closest-labeled" else 0.0
    if not s2:
        s2 = tiling_sq_scale(x, ref)
    # (M,) each sampled item's coverage so far (0 with no labels: the distance is inf)
    covered = np.exp(-min_sq_dist(x, lab) / s2).astype(np.float32)
    w = (c.margin[idx] if weighted else np.ones(len(x))).astype(np.float32)
    cand, xc = idx, x  # (P,) the candidates' pool indices, (P, R) their points
    if not w.max() > 0:  # no uncertainty at all (no model yet): every item weighs the same
        w[:] = 1.0
    elif widen and weighted:
        cand = np.union1d(idx, top_k(c.margin, min(n, sample), rng))
        xc = space[cand].astype(np.float32)
    kern = sq_dist(xc, x)  # (P, M), made the kernel in place
    np.negative(kern, out=kern)
    kern /= s2
    np.exp(kern, out=kern)
    gain = np.empty(len(cand))  # (P,) sum_x w(x) max(0, K(i, x) - covered(x)), by blocks
    for lo in range(0, len(cand), chunk):
        gain[lo:lo + chunk] = np.maximum(kern[lo:lo + chunk] - covered, 0.0) @ w
    picks: list[int] = []
    for _ in range(min(k, len(cand))):
        gain[picks] = -np.inf
        i = int(np.argmax(gain))
        picks.append(i)
        now = np.maximum(covered, kern[i])
        up = np.flatnonzero(now > covered)  # where the pick raised coverage
        if len(up):
            block = kern[:, up]  # (P, U): the gains lose what the pick now covers
            gain -= (np.maximum(block - covered[up], 0.0)
                     - np.maximum(block - now[up], 0.0)) @ w[up]
        covered = now
    return fill([int(cand[i]) for i in picks], rng.permutation(n), k)


def maxherding(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """MaxHerding (Bae et al. 2024): :func:`herding` with every item weighted alike, a
    kernel coverage that needs no model (a cold-start strategy)."""
    return herding(c, k, rng, weighted=False)


def herding_wide(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`herding` whose greedy step also weighs the pool's most uncertain items, not
    only the sample's. Over five seeds on Fashion-MNIST (README, Label efficiency) it
    scored 81.3 AUBC against herding's 81.4 and selects ~2x slower: auto stays herding."""
    return herding(c, k, rng, widen=True)


def herding_12k(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`herding` on a sample of 12,000 rather than 6,000: each candidate's gain is
    estimated from twice the sampled neighbours and twice the items are candidates, for
    ~4x the selection time and memory (a 12,000 x 12,000 kernel, 576 MB in float32).
    Over five seeds on Fashion-MNIST (README, Label efficiency) it scored 81.2 AUBC
    against herding's 81.4, behind at the cold start: auto stays herding."""
    return herding(c, k, rng, sample=12_000)


def herding_closest(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`herding` whose bandwidth is UHerding's adaptive radius (Bae et al. 2025, as
    scikit-activeml's ``UHerding(adaptive_sigma=True)``): the closest labeled pair. On
    Fashion-MNIST (README, Label efficiency) its kernel is 2.4-9x narrower than the
    tiling scale and it lost the cold start over five seeds (72.4 against herding's
    73.1, mean accuracy to 240 labels): auto stays herding."""
    return herding(c, k, rng, bandwidth="closest-labeled")


def herding_whitened(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`herding` with its kernel on Mahalanobis distances (:func:`whitening` by the
    candidates' covariance): the label-free representation's 32 directions count alike
    rather than by the scale pretraining happened to give them. Draws the same sample
    as herding, so the two differ only in the geometry. Over five seeds on
    Fashion-MNIST (README, Label efficiency) it tied herding, 81.45 AUBC against 81.42
    (-0.7 to +0.4 by seed), and on digits 95.50 against 95.47: auto stays herding."""
    return herding(c, k, rng, whiten=True)


def margin_diverse(c: Candidates, k: int, rng: np.random.Generator,
                   factor: int = 10) -> np.ndarray:
    """The most uncertain item of each of k clusters of the factor*k closest calls.

    Takes the M = min(N, factor * k) items of highest margin score, k-means them into k
    clusters in :attr:`Candidates.space`, and picks each cluster's highest-margin item
    (Zhdanov 2019, Citovsky et al. 2021): uncertain, but not k near-duplicates of one confusion.
    """
    top = top_k(c.margin, min(len(c), factor * k), rng)  # (M,) best first
    label = kmeans(c.space[top], k, rng)  # (M,)
    _, first = np.unique(label, return_index=True)  # each cluster's best item
    return fill([int(i) for i in top[np.sort(first)]], top, k)


def typical_share(labeled: int, classes: int) -> float:
    """typiclust-margin's share of a batch chosen by typicality, from labels per class.

    In [0, 1]: 1 up to TYPICAL_UNTIL labels per class, 0 from UNCERTAIN_FROM, linear
    between.
    """
    per_class = labeled / max(classes, 1)
    return float(np.clip((UNCERTAIN_FROM - per_class) / (UNCERTAIN_FROM - TYPICAL_UNTIL),
                         0.0, 1.0))


def typiclust_margin_split(c: Candidates, k: int) -> tuple[int, int]:
    """(typical, uncertain) pick counts of a ``typiclust-margin`` batch of k."""
    typical = round(typical_share(len(c.labeled_embedding), c.probs.shape[1]) * k)
    return typical, k - typical


def typiclust_margin(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """From typicality at the cold start to uncertainty x diversity, by a switch.

    With L labels and C classes (b = L / C labels per class) the batch's first
    t = round(k * clip((10 - b) / 5, 0, 1)) picks are ``typiclust`` and the other k - t
    are ``margin-diverse`` among the rest: all typical below 5 labels per class, when a
    model's uncertainty is still noise and typical examples teach the most (Hacohen et
    al. 2022); all uncertainty x diversity from 10 per class; a linear blend between.
    The rule reads only L, C and k, never the data set. ``auto`` until 2026-12-06.
    """
    typical, uncertain = typiclust_margin_split(c, k)
    first = typiclust(c, typical, rng) if typical else np.array([], dtype=int)
    if not uncertain:
        return first
    rest = np.setdiff1d(np.arange(len(c)), first)  # (N - t,)
    return np.concatenate([first, rest[margin_diverse(c.take(rest), uncertain, rng)]])


def auto(c: Candidates, k: int, rng: np.random.Generator) -> np.ndarray:
    """The default: uncertainty herding (:func:`herding`), one rule from the cold start
    to the close calls, with no switch.

    The weights are the current model's margins and the kernel's bandwidth is the scale
    at which the L labeled items and the k picks tile the pool. With few labels the
    margins are high nearly everywhere and the picks cover the pool, typical items first
    (the cold start that TypiClust makes); as the model firms up the weight gathers on
    its close calls and the picks cover those (uncertainty x diversity). Before any model
    every item weighs the same. It reads L, k and the margins, never the data set.
    """
    return herding(c, k, rng)


STRATEGIES: dict[str, Strategy] = {
    "auto": auto,
    "random": random,
    "least-confidence": by_measure("least_confidence"),
    "margin": by_measure("margin"),
    "entropy": by_measure("entropy"),
    "bald": by_measure("bald"),
    "eig": by_measure("eig"),
    "kcenter": kcenter,
    "badge": badge,
    "typiclust": typiclust,
    "probcover": probcover,
    "herding": herding,
    "herding-wide": herding_wide,
    "herding-12k": herding_12k,
    "herding-closest": herding_closest,
    "herding-whitened": herding_whitened,
    "maxherding": maxherding,
    "margin-diverse": margin_diverse,
    "typiclust-margin": typiclust_margin,
}

# Strategies that run without a model: on embeddings alone (or nothing, for random).
MODEL_FREE = frozenset({"auto", "random", "kcenter", "typiclust", "probcover", "maxherding",
                        "typiclust-margin"})


def cold_start_name(name: str) -> str:
    """The strategy that picks the first labels, before any model, for strategy ``name``:
    itself when it needs no model (:data:`MODEL_FREE`), else ``typiclust`` (typical items
    of the label-free representation)."""
    return name if name in MODEL_FREE else "typiclust"


# Measures a strategy's score is reported as (the number shown to annotators).
SCORE_FIELD = {"least-confidence": "least_confidence", "margin": "margin",
               "entropy": "entropy", "bald": "bald", "eig": "eig", "random": "entropy",
               "kcenter": "entropy", "badge": "entropy", "typiclust": "entropy",
               "probcover": "entropy", "herding": "margin", "herding-wide": "margin",
               "herding-12k": "margin", "herding-closest": "margin",
               "herding-whitened": "margin",
               "maxherding": "entropy",
               "margin-diverse": "margin", "auto": "margin", "typiclust-margin": "margin"}


def content_order(rows: np.ndarray) -> np.ndarray:
    """An order (N,) of rows (N, F) defined by their content alone: the same rows in any
    order come out in the same order (identical rows are interchangeable)."""
    rows = rows.astype(np.float64)
    key = np.zeros(len(rows))
    for j in range(rows.shape[1]):  # column by column: each row's key is bitwise the same
        key += rows[:, j] * (1.0 + j / rows.shape[1])  # wherever the row sits
    order = np.argsort(key, kind="stable")
    if np.any(key[order][1:] == key[order][:-1]):  # a tie: sort by every column
        order = np.lexsort(rows.T[::-1])
    return order


def phases(name: str, c: Candidates, k: int) -> list[str]:
    """Which strategy chose each of the k picks of :func:`select` (typiclust-margin mixes
    two)."""
    k = min(k, len(c))
    if name != "typiclust-margin":
        return [name] * k
    typical, uncertain = typiclust_margin_split(c, k)
    return ["typiclust"] * typical + ["margin-diverse"] * uncertain


def select(name: str, c: Candidates, k: int, seed: int) -> np.ndarray:
    """The k (at most N) picks (k,) of strategy ``name``, best first, seeded by ``seed``.

    Runs the strategy on the pool sorted by content (:func:`content_order`), so the picks
    do not depend on the order the pool arrived in. Raises ``KeyError`` listing the known
    names for an unknown one.
    """
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    k = min(k, len(c))
    if not k:
        return np.array([], int)
    extra = [] if c.representation is None else [c.representation]
    order = content_order(np.column_stack([c.embedding, c.probs, c.entropy, c.margin,
                                           c.least_confidence, c.bald, c.eig, *extra]))
    lab = np.column_stack([c.labeled_embedding, *([] if c.labeled_representation is None
                                                  else [c.labeled_representation])])
    lab_order = content_order(lab)
    canon = replace(c.take(order), labeled_embedding=c.labeled_embedding[lab_order])
    if c.labeled_representation is not None:
        canon = replace(canon, labeled_representation=c.labeled_representation[lab_order])
    return order[STRATEGIES[name](canon, k, np.random.default_rng(seed))]


def group(embedding: np.ndarray, group_size: int, seed: int) -> np.ndarray:
    """Group ids (N,) so look-alikes are labeled together: k-means with ~group_size each.

    Groups are numbered by size, largest first, so a queue ordered by group hands an
    annotator one cluster of similar images at a time.
    """
    n = len(embedding)
    groups = max(1, int(np.ceil(n / group_size)))
    if n <= 1 or groups == 1:
        return np.zeros(n, dtype=int)
    raw = KMeans(groups, n_init=4, random_state=seed).fit_predict(embedding)
    order = np.argsort(-np.bincount(raw, minlength=groups), kind="stable")
    rank = np.empty(groups, dtype=int)
    rank[order] = np.arange(groups)
    return rank[raw]


def nearest(query: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine nearest neighbours: (Q, D) x (L, D) -> indices (Q, k'), similarity (Q, k')."""
    if len(pool) == 0 or len(query) == 0:
        return np.zeros((len(query), 0), int), np.zeros((len(query), 0))
    qn = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    pn = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    sim = qn @ pn.T
    idx = np.argsort(-sim, axis=1)[:, :k]
    return idx, np.take_along_axis(sim, idx, axis=1)
