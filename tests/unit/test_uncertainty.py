"""Uncertainty measures: ranges, known values, and the invariants strategies rely on."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fogmap.scoring import uncertainty as U


def _simplex(raw: np.ndarray) -> np.ndarray:
    x = np.abs(raw) + 1e-6
    return x / x.sum(axis=-1, keepdims=True)


probs_st = arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(2, 10)),
                  elements=st.floats(0, 10, allow_nan=False)).map(_simplex)


@given(probs_st)
@settings(max_examples=60, deadline=None)
def test_ranges(probs: np.ndarray) -> None:
    n, c = probs.shape
    assert np.all((U.entropy(probs) >= 0) & (U.entropy(probs) <= np.log(c) + 1e-9))
    for f in (U.margin, U.least_confidence):
        v = f(probs)
        assert v.shape == (n,) and np.all((v >= 0) & (v <= 1))


@given(probs_st, st.randoms())
@settings(max_examples=40, deadline=None)
def test_permutation_equivariance(probs: np.ndarray, rnd) -> None:  # type: ignore[no-untyped-def]
    perm = np.array(rnd.sample(range(len(probs)), len(probs)))
    for f in (U.entropy, U.margin, U.least_confidence):
        np.testing.assert_allclose(f(probs[perm]), f(probs)[perm])


def test_known_values() -> None:
    uniform = np.full((1, 4), 0.25)
    sure = np.array([[1.0, 0, 0, 0]])
    assert np.isclose(U.entropy(uniform)[0], np.log(4))
    assert np.isclose(U.entropy(sure)[0], 0, atol=1e-9)
    assert np.isclose(U.margin(uniform)[0], 1.0) and np.isclose(U.margin(sure)[0], 0.0)
    assert np.isclose(U.least_confidence(uniform)[0], 0.75)


def test_bald_zero_when_samples_agree_and_positive_when_they_disagree() -> None:
    agree = np.tile(np.array([[[0.5, 0.5]]]), (8, 1, 1))
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]] * 4)
    assert np.isclose(U.bald(agree)[0], 0, atol=1e-9)
    assert np.isclose(U.bald(disagree)[0], np.log(2), atol=1e-6)


def test_eig_chunked_equals_whole_and_is_bounded() -> None:
    rng = np.random.default_rng(0)
    mc = _simplex(rng.random((6, 50, 5)))
    targets = _simplex(rng.random((6, 7, 5)))
    whole = U.eig(mc, targets, chunk=10_000)
    np.testing.assert_allclose(U.eig(mc, targets, chunk=7), whole, rtol=1e-10)
    assert np.all(whole >= 0)
    # I[y; y*] <= min(H[y], H[y*]) for every pair, so its mean is bounded by H[y].
    assert np.all(whole <= U.entropy(mc.mean(0)) + 1e-9)


def test_eig_is_zero_when_the_model_is_certain_about_its_parameters() -> None:
    p = np.tile(_simplex(np.random.default_rng(1).random((1, 20, 3))), (5, 1, 1))
    assert np.allclose(U.eig(p, p[:, :4]), 0, atol=1e-9)
