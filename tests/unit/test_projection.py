"""The map projection: PCA, then Procrustes alignment to the previous positions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fogmap.vectors.projection import normalize, pca2, procrustes, project


def clustered(n: int = 300, d: int = 16, seed: int = 0) -> np.ndarray:
    """Anisotropic blobs, so the first two principal axes are well separated."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, d)) * 4
    x = centres[rng.integers(0, 5, n)] + rng.standard_normal((n, d))
    return x * np.linspace(3.0, 0.5, d)


def random_orthogonal(d: int, seed: int, reflect: bool) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    if reflect and np.linalg.det(q) > 0:
        q[:, 0] *= -1
    return q


def test_shape_range_and_finite_without_previous() -> None:
    out = project(clustered())
    assert out.shape == (300, 2)
    assert np.isfinite(out).all()
    assert np.abs(out).max() == pytest.approx(1.0)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotated_copy_of_the_embedding_lands_on_the_previous_map(reflect: bool) -> None:
    x = clustered()
    before = project(x)
    q = random_orthogonal(x.shape[1], seed=3, reflect=reflect)
    after = project(2.5 * x @ q + 7.0, previous=before)  # rotated, scaled, shifted
    assert np.abs(after - before).max() < 1e-8


def test_without_alignment_the_same_change_can_flip_the_map() -> None:
    """The reason alignment exists: PCA alone may mirror the map between versions."""
    x = clustered()
    before = project(x)
    flipped = project(np.column_stack([-x[:, 0], x[:, 1:]]))
    aligned = project(np.column_stack([-x[:, 0], x[:, 1:]]), previous=before)
    assert np.abs(flipped - before).max() > 0.5
    assert np.abs(aligned - before).max() < 1e-8


def test_small_change_moves_points_a_little() -> None:
    x = clustered()
    before = project(x)
    noisy = x + 0.05 * np.random.default_rng(9).standard_normal(x.shape)
    after = project(noisy @ random_orthogonal(x.shape[1], 4, reflect=True), previous=before)
    assert np.median(np.linalg.norm(after - before, axis=1)) < 0.02


def test_only_rows_with_a_previous_position_anchor_the_fit() -> None:
    x = clustered()
    before = project(x)
    previous = before.copy()
    previous[::3] = np.nan  # a third of the items are new in this version
    after = project(x @ random_orthogonal(x.shape[1], 5, reflect=False), previous=previous)
    assert np.isfinite(after).all()
    # The new items land where they would have been, too: the transform is global.
    assert np.abs(after - before).max() < 1e-8


def test_too_few_anchors_falls_back_to_a_normalized_pca() -> None:
    x = clustered()
    previous = np.full((len(x), 2), np.nan)
    previous[:2] = [[0.0, 0.0], [1.0, 1.0]]
    np.testing.assert_allclose(project(x, previous), project(x))
    np.testing.assert_allclose(project(x, np.full((len(x), 2), np.nan)), project(x))


def test_previous_shape_must_match() -> None:
    with pytest.raises(ValueError):
        project(clustered(), previous=np.zeros((10, 2)))


def test_deterministic() -> None:
    x = clustered()
    np.testing.assert_array_equal(project(x), project(x.copy()))
    prev = project(x)
    y = clustered(seed=1)
    np.testing.assert_array_equal(project(y, prev), project(y.copy(), prev.copy()))


@pytest.mark.parametrize("shape", [(0, 8), (1, 8), (2, 8), (50, 1)])
def test_degenerate_inputs_give_finite_output(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    out = project(x)
    assert out.shape == (shape[0], 2)
    assert np.isfinite(out).all()
    assert np.isfinite(project(np.ones((20, 4)))).all()  # all identical points


def test_procrustes_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(2)
    src = rng.standard_normal((40, 2))
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    r, s, t = procrustes(src, 3.0 * src @ rot + [1.0, -2.0])
    np.testing.assert_allclose(r, rot, atol=1e-10)
    assert s == pytest.approx(3.0)
    np.testing.assert_allclose(t, [1.0, -2.0], atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 120), st.integers(2, 12), st.integers(0, 2**16))
def test_pca_is_permutation_equivariant_and_normalize_bounded(n: int, d: int, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((n, d))
    perm = np.random.default_rng(seed + 1).permutation(n)
    np.testing.assert_allclose(pca2(x)[perm], pca2(x[perm]), atol=1e-8)
    assert np.abs(normalize(pca2(x))).max() <= 1.0 + 1e-12
