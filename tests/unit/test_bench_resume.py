"""The label-efficiency benchmark can take a run past its budget later (``--resume``) and
get what one longer run gets: the same picks and the same accuracies round by round. That
is how a finished table is extended (labels to 85% past 1,000) without redoing it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_bench_refit import load_bench, write_run

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
    short = bench(tmp_path / "short", "--budget", "40")
    assert [r["labels"] for r in rounds(tmp_path / "short", "auto__s1")] == [20, 40]
    progress = [line for line in short.stderr.splitlines() if "auto seed 1:" in line]
    assert [line.split(": ")[1].split(",")[0] for line in progress[:2]] == [
        "20 of 40 labels", "40 of 40 labels"]  # a line per round while a run goes on
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


def test_a_branched_run_goes_on_from_the_recorded_labeled_set(tmp_path: Path) -> None:
    bench(tmp_path / "rec", "--budget", "60")  # auto seed 1, recorded to 60 labels
    auto = rounds(tmp_path / "rec", "auto__s1")
    branch = ["--branch-from", str(tmp_path / "rec" / "runs"), "--branch-at", "40"]
    bench(tmp_path / "br", "--jobs", "margin:1", "--budget", "80", *branch)
    margin = rounds(tmp_path / "br", "margin__s1")
    assert [r["labels"] for r in margin] == [20, 40, 60, 80]
    assert {r["strategy"] for r in margin} == {"margin"}
    assert margin[0]["picked"] == auto[0]["picked"]  # auto's labeled set up to 40 labels
    assert margin[0]["branched_from"] == "auto:1:40" and "branched_from" not in margin[1]
    assert margin[1]["accuracy"] == auto[1]["accuracy"]  # same set, same seed: same model
    assert margin[1]["picked"] != auto[1]["picked"]  # then margin's own picks
    report = json.loads((tmp_path / "br" / "report.json").read_text())
    assert report["strategies"]["margin"]["curve"]["labels"] == [20, 40, 60, 80]
    assert "auto's recorded run of its seed at 40 labels" in report["meta"]["branch"]


def test_a_cold_start_run_picks_its_own_first_labels_as_the_service_does(
        tmp_path: Path) -> None:
    import argparse

    from threadpoolctl import threadpool_limits

    from fogmap.selection import strategies as S

    cold = ["--jobs", "auto:1,margin:1,random:1", "--cold-start"]
    bench(tmp_path / "long", *cold, "--budget", "60")
    bench(tmp_path / "short", *cold, "--budget", "40")
    bench(tmp_path / "short", *cold, "--budget", "60", "--resume")
    b = load_bench()
    pool = b.load("digits", 400, 100)[0]
    rep, _ = b.representation(pool, argparse.Namespace(
        encoder=str(tmp_path / "enc.bin"), device="cpu", pretrain_seconds=0,
        pretrain_steps=3))
    flat = S.Candidates.unscored(rep, rep[:0], 10)
    shared = sorted(b.initial_labels(len(pool), 1, 20).tolist())
    starts = {}
    for name, by in (("auto", "auto"), ("margin", "typiclust")):
        long, short = (rounds(tmp_path / d, f"{name}@cold-start__s1") for d in ("long", "short"))
        assert {r["strategy"] for r in long} == {f"{name}@cold-start"}
        with threadpool_limits(1):  # as in the benchmark's workers
            assert long[0]["initial"] == S.select(by, flat, 20, 1).tolist()
        starts[name] = sorted(long[0]["initial"])
        assert starts[name] != shared and len(set(starts[name])) == 20
        assert all("initial" not in r for r in long[1:])
        assert [r.get("picked") for r in short] == [r.get("picked") for r in long]  # resumed
        assert [r["accuracy"] for r in short] == [r["accuracy"] for r in long]
    assert starts["auto"] != starts["margin"]
    random = rounds(tmp_path / "long", "random__s1")  # as without --cold-start
    assert "initial" not in random[0]
    report = json.loads((tmp_path / "long" / "report.json").read_text())
    assert report["meta"]["round0_mismatch"] == {}  # the runs' own starts are not drift
    assert "picked their own first labels" in report["meta"]["cold_start"]
    text = (tmp_path / "long" / "report.md").read_text()
    assert "not margin@cold-start, auto@cold-start: each picked its own" in text or \
        "not auto@cold-start, margin@cold-start: each picked its own" in text


def test_a_cold_start_can_draw_part_of_its_first_labels_at_random(tmp_path: Path) -> None:
    import argparse

    import numpy as np
    from threadpoolctl import threadpool_limits

    from fogmap.selection import strategies as S

    bench(tmp_path / "mix", "--jobs", "auto:1", "--cold-start", "--cold-start-random", "8",
          "--budget", "40")
    bench(tmp_path / "all", "--jobs", "auto:1", "--cold-start", "--cold-start-random", "20",
          "--budget", "20")
    b = load_bench()
    pool = b.load("digits", 400, 100)[0]
    rep, _ = b.representation(pool, argparse.Namespace(
        encoder=str(tmp_path / "enc.bin"), device="cpu", pretrain_seconds=0,
        pretrain_steps=3))
    shared = b.initial_labels(len(pool), 1, 20)
    mix = rounds(tmp_path / "mix", "auto@cold-start+r8__s1")
    assert {r["strategy"] for r in mix} == {"auto@cold-start+r8"}
    assert mix[0]["initial"][:8] == shared[:8].tolist()  # the shared start's first 8
    rest = np.setdiff1d(np.arange(len(pool)), shared[:8])
    with threadpool_limits(1):  # the other 12 picked around them, as around any labels
        picked = rest[S.select("auto", S.Candidates.unscored(rep[rest], rep[shared[:8]], 10),
                               12, 1)]
    assert mix[0]["initial"][8:] == picked.tolist()
    assert not set(picked.tolist()) & set(shared.tolist())
    assert rounds(tmp_path / "all", "auto@cold-start+r20__s1")[0]["initial"] == \
        shared.tolist()  # all drawn: the shared random start
    report = json.loads((tmp_path / "mix" / "report.json").read_text())
    assert "the first 8 of each such start" in report["meta"]["cold_start"]


def test_a_branch_that_cannot_be_made_stops_before_any_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "rec"
    write_run(runs, "random", 0)
    main = load_bench().main
    for args, says in [
        (["--branch-from", str(runs), "--branch-at", "40"], "no round of auto seed 0"),
        (["--branch-from", str(runs), "--branch-at", "20", "--jobs", "margin:3",
          "--branch-strategy", "random"], "no round of random seed 3"),
        (["--branch-from", str(runs), "--branch-at", "40", "--branch-strategy", "random",
          "--budget", "40"], "needs a larger --budget"),
        (["--branch-from", str(runs), "--branch-at", "20", "--branch-strategy", "subset"],
         "not a strategy"),
        (["--branch-from", str(runs), "--branch-at", "40", "--branch-strategy", "random",
          "--pool", "110"], "the pool has 110"),
        (["--branch-at", "20"], "--branch-at and --branch-from go together"),
        (["--branch-from", str(runs), "--branch-at", "20", "--branch-strategy", "random",
          "--cold-start"], "a branched run starts from a recorded one"),
        (["--cold-start-random", "5"], "--cold-start-random goes with --cold-start"),
        (["--cold-start", "--cold-start-random", "21"], "--cold-start-random is 0 to"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main([*QUICK, "--jobs", "margin:0", "--budget", "60", "--out",
                  str(tmp_path / "bad"), "--encoder", str(tmp_path / "bad.bin"), *args])
        said = f"{stop.value} {capsys.readouterr().err}"
        assert says in said, (args, said[-800:])
        assert not list((tmp_path / "bad").glob("runs/*.jsonl"))
        assert not (tmp_path / "bad.bin").exists()  # stopped before pretraining, too


def children(pid: int) -> set[int]:
    """The process ids whose parent is pid (Linux /proc)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def test_killing_the_benchmark_by_its_process_id_stops_its_workers(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(BENCH), *QUICK, "--workers", "2",
                                 "--budget", "380", "--encoder", str(tmp_path / "enc.bin"),
                                 "--out", str(tmp_path / "out")],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 240
        while "20 of 380 labels" not in log.read_text():  # the workers are at work
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        workers = children(proc.pid)
        assert len(workers) >= 2
        proc.terminate()
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{w}").exists() for w in workers):
            assert time.monotonic() < deadline, "workers outlived the benchmark"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
