"""The label-efficiency benchmark's --refit trains a recipe on recorded labeled sets: with
the default recipe it must give back exactly what the loop recorded (same labels, same
seed), so a different recipe's figures compare like for like; bad input stops it with a
message before any training."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_label_efficiency.py"
QUICK = ["--data", "digits", "--pool", "400", "--test", "100", "--pretrain-steps", "3",
         "--min-steps", "30", "--max-steps", "30", "--workers", "1", "--threads", "1"]


def bench(out: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(BENCH), *QUICK, "--encoder",
                           str(out.parent / "enc.bin"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode == 0) == ok, done.stderr[-2000:]
    return done


def recorded(out: Path, name: str) -> dict[int, float]:
    lines = (out / "runs" / f"{name}.jsonl").read_text().splitlines()
    return {r["labels"]: r["accuracy"] for r in map(json.loads, lines)}


def test_the_default_recipe_gives_back_the_recorded_rounds(tmp_path: Path) -> None:
    out = tmp_path / "o"
    bench(out, "--jobs", "auto:1,random:0", "--budget", "60")
    bench(out, "--random-sizes", "40", "--seeds", "0")
    bench(out, "--refit", "auto:1:40,auto:1:60,random:0:20,subset:0:40",
          "--recipes", "default,epochs=3+min_steps=5+max_steps=5")
    res = json.loads((out / "refit.json").read_text())["results"]
    got = {(r["set"], r["recipe"]): r["accuracy"] for r in res}
    auto, rnd = recorded(out, "auto__s1"), recorded(out, "random__s0")
    assert got["auto:1:40", "default"] == auto[40]
    assert got["auto:1:60", "default"] == auto[60]
    assert got["random:0:20", "default"] == rnd[20]
    curve = json.loads((out / "random-curve.json").read_text())
    assert got["subset:0:40", "default"] == curve["accuracy"]["40"][0]
    assert 0.3 < auto[60] <= 1.0  # trained: far above chance (0.1), so equality means much
    assert len(res) == 8 and (out / "refit.md").read_text().count("\n") == 2 + 4 + 1
    # the other recipe trained differently (5 steps instead of 30): the figures move
    assert got["auto:1:60", "epochs=3+min_steps=5+max_steps=5"] != auto[60]


def load_script(path: Path) -> ModuleType:
    """A script under tests/benchmarks (not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_bench() -> ModuleType:
    return load_script(BENCH)


def write_run(runs: Path, strategy: str, seed: int) -> list[dict]:
    """A recorded run in the folder ``runs``: rounds at 20 and 40 labels (pool items 100 to
    119 picked at 20); its rows."""
    runs.mkdir(exist_ok=True)
    rows = [{"strategy": strategy, "seed": seed, "round": 0, "labels": 20, "accuracy": 0.5,
             "train_s": 1.0, "picked": list(range(100, 120))},
            {"strategy": strategy, "seed": seed, "round": 1, "labels": 40, "accuracy": 0.6,
             "train_s": 1.0}]
    (runs / f"{strategy}__s{seed}.jsonl").write_text("".join(json.dumps(r) + "\n"
                                                             for r in rows))
    return rows


def test_bad_sets_and_recipes_stop_before_training(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    rows = write_run(runs, "auto", 1)
    old = [{k: v for k, v in r.items() if k != "picked"} | {"strategy": "margin"}
           for r in rows]  # a run from before picks were recorded
    (runs / "margin__s1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    main = load_bench().main
    common = ["--data", "digits", "--refit-from", str(runs), "--out", str(tmp_path / "o")]
    for args, says in [
        (["--refit", "auto:1:50"], "no round of auto seed 1 had 50 labels"),
        (["--refit", "auto:1"], "takes strategy:seed:labels"),
        (["--refit", "kcenter:0:20"], "no run"),
        (["--refit", "margin:1:40"], "did not record its picks"),
        (["--refit", "auto:1:40", "--recipes", "epoch=120"], "not field=value"),
        (["--refit", "auto:1:40", "--recipes", "epochs=-1"], "greater than or equal"),
        (["--refit", "auto:1:40", "--recipes", "epochs=many"], "recipe 'epochs=many'"),
        (["--jobs", "auto:1", "--training", "epoch=120"], "not field=value"),  # loops too
    ]:
        with pytest.raises(SystemExit) as stop:
            main([*common, *args])
        assert says in str(stop.value), (args, stop.value)
        assert not (tmp_path / "o" / "refit.json").exists()
