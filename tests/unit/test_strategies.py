"""Query strategies are pure: right size, no repeats, permutation equivariant, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from fogmap.scoring import uncertainty as U
from fogmap.selection import strategies as S


def candidates(n: int = 200, seed: int = 0) -> S.Candidates:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    noisy = np.exp(logits[None] + rng.normal(size=(4, n, 5)))
    mc = noisy / noisy.sum(-1, keepdims=True)
    return S.Candidates(probs=probs, embedding=rng.normal(size=(n, 8)),
                        entropy=U.entropy(probs), margin=U.margin(probs),
                        least_confidence=U.least_confidence(probs), bald=U.bald(mc),
                        eig=rng.random(n), labeled_embedding=rng.normal(size=(5, 8)))


def permuted(c: S.Candidates, perm: np.ndarray) -> S.Candidates:
    return S.Candidates(**{f: (getattr(c, f)[perm] if f != "labeled_embedding"
                               else c.labeled_embedding) for f in c.__dataclass_fields__})


@pytest.mark.parametrize("name", sorted(S.STRATEGIES))
def test_selects_k_distinct_valid_indices(name: str) -> None:
    c = candidates()
    pick = S.select(name, c, 20, seed=1)
    assert len(pick) == 20 and len(set(pick.tolist())) == 20
    assert pick.min() >= 0 and pick.max() < len(c)
    assert np.array_equal(pick, S.select(name, c, 20, seed=1))


@pytest.mark.parametrize("name", sorted(set(S.STRATEGIES) - {"random"}))
def test_permutation_equivariance(name: str) -> None:
    c = candidates()
    perm = np.random.default_rng(3).permutation(len(c))
    a = {int(i) for i in S.select(name, c, 15, seed=0)}
    b = {int(perm[i]) for i in S.select(name, permuted(c, perm), 15, seed=0)}
    assert a == b


def test_margin_picks_the_closest_calls() -> None:
    c = candidates()
    pick = S.select("margin", c, 10, seed=0)
    assert c.margin[pick].min() >= np.sort(c.margin)[-10] - 1e-12


def test_k_larger_than_pool_and_unknown_name() -> None:
    c = candidates(n=7)
    assert len(S.select("entropy", c, 50, seed=0)) == 7
    with pytest.raises(KeyError, match="known"):
        S.select("nope", c, 3, seed=0)


def test_groups_put_look_alikes_together() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.05, (10, 4)) + 5, rng.normal(0, 0.05, (10, 4)) - 5
    groups = S.group(np.vstack([a, b]), group_size=10, seed=0)
    assert len(set(groups[:10])) == 1 and len(set(groups[10:])) == 1
    assert groups[0] != groups[10]


def test_nearest_finds_itself() -> None:
    x = np.random.default_rng(0).normal(size=(6, 3))
    idx, sim = S.nearest(x, x, 1)
    assert np.array_equal(idx[:, 0], np.arange(6)) and np.allclose(sim[:, 0], 1)
