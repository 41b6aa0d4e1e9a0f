"""The selection proxy (tests/benchmarks/bench_selection_proxy.py): its loop and its input
checks, on generated blobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_bench_refit import load_script

PROXY = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_selection_proxy.py"


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four separated classes in 6 dimensions: points (n, 6) and labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(4, size=n)
    return np.eye(4, 6)[y] * 6 + rng.normal(size=(n, 6)), y


@pytest.mark.parametrize("name", ["herding", "herding-whitened", "random"])
def test_the_proxy_labels_20_a_round_and_scores_every_fit(name: str) -> None:
    proxy = load_script(PROXY)
    x, y = blobs(600, seed=0)
    x_test, y_test = blobs(200, seed=1)
    acc = proxy.run(name, 0, 3, x, y, x_test, y_test, x.astype(np.float32), 4)
    assert len(acc) == 4 and all(0.0 <= a <= 1.0 for a in acc)
    assert acc[-1] > 0.95  # 80 labels of four separated blobs: nearly every test point


def test_the_proxy_names_unknown_strategies_and_a_missing_encoder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = load_script(PROXY)
    with pytest.raises(SystemExit):
        proxy.main(["--encoder", str(tmp_path / "enc.bin"), "--strategies", "herding,nope"])
    assert "unknown strategies ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        proxy.main(["--encoder", str(tmp_path / "enc.bin"), "--strategies", "herding"])
    assert "no such encoder" in capsys.readouterr().err
