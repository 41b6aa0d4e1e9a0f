"""The label-efficiency benchmark can take a run past its budget later (``--resume``) and
get what one longer run gets: the same picks and the same accuracies round by round. That
is how a finished table is extended (labels to 85% past 1,000) without redoing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_label_efficiency.py"
QUICK = ["--data", "digits", "--pool", "400", "--test", "100", "--pretrain-steps", "3",
         "--min-steps", "4", "--max-steps", "4", "--workers", "1", "--threads", "1",
         "--jobs", "auto:1,random:0"]


def bench(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(BENCH), *QUICK, "--encoder",
                           str(out.parent / "enc.bin"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def rounds(out: Path, name: str) -> list[dict]:
    lines = (out / "runs" / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_resumed_run_equals_one_run_to_the_larger_budget(tmp_path: Path) -> None:
    bench(tmp_path / "long", "--budget", "80")
    bench(tmp_path / "short", "--budget", "40")
    assert [r["labels"] for r in rounds(tmp_path / "short", "auto__s1")] == [20, 40]
    bench(tmp_path / "short", "--budget", "80", "--resume")
    for name in ("auto__s1", "random__s0"):
        resumed, whole = rounds(tmp_path / "short", name), rounds(tmp_path / "long", name)
        assert [r["labels"] for r in resumed] == [20, 40, 60, 80]
        assert [r.get("picked") for r in resumed] == [r.get("picked") for r in whole]
        assert [r["accuracy"] for r in resumed] == [r["accuracy"] for r in whole]
    report = json.loads((tmp_path / "short" / "report.json").read_text())
    assert report["strategies"]["auto"]["curve"]["labels"] == [20, 40, 60, 80]


def test_a_run_that_did_not_record_its_picks_is_not_resumed(tmp_path: Path) -> None:
    runs = tmp_path / "old" / "runs"
    runs.mkdir(parents=True)
    old = {"strategy": "random", "seed": 0, "labels": 20, "accuracy": 0.5, "train_s": 1.0,
           "score_s": 1.0, "select_s": 0.1}
    (runs / "random__s0.jsonl").write_text(json.dumps({**old, "round": 0}) + "\n")
    done = bench(tmp_path / "old", "--jobs", "random:0", "--budget", "60", "--resume")
    assert "did not record its picks" in done.stdout + done.stderr
    assert json.loads((runs / "random__s0.jsonl").read_text().splitlines()[0]) == {
        **old, "round": 0}  # left as it was
