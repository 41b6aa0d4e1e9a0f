"""The report's goals paired by seed: auto's AUBC gap to random and to the best peer as a
mean of per-seed gaps with a 95% interval, and what that interval says about the goal,
so "+2.89, not +3" is read against the seeds' own spread, not guessed at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_bench_refit import load_bench
from tests.unit.test_bench_savings import curve, write

T_975_2 = 4.302652729911275  # Student t, 97.5th percentile, 2 degrees of freedom


def summary(**per_seed: dict[int, float]) -> dict:
    """Report rows holding only what pairing reads: seed ids and per-seed AUBC (0-1)."""
    return {name: {"seeds": len(v), "seed_ids": list(v), "aubc_per_seed": list(v.values()),
                   "aubc": sum(v.values()) / len(v)} for name, v in per_seed.items()}


def test_the_gap_is_paired_by_seed_with_a_student_t_interval() -> None:
    bench = load_bench()
    rows = summary(auto={0: 0.82, 1: 0.83, 2: 0.84, 7: 0.99},  # seed 7: random has none
                   random={2: 0.80, 1: 0.80, 0: 0.80, 9: 0.10})  # seed 9: auto has none
    p = bench.paired_gap(rows, "auto", "random", goal=3.0)
    assert p["seeds"] == [0, 1, 2]
    assert p["per_seed"] == pytest.approx([2.0, 3.0, 4.0])
    assert p["mean"] == pytest.approx(3.0) and p["sd"] == pytest.approx(1.0)
    half = T_975_2 / 3 ** 0.5
    assert p["ci95"] == pytest.approx([3.0 - half, 3.0 + half])
    assert p["reading"] == "undecided"  # the mean is on the goal; the interval spans it


@pytest.mark.parametrize("gaps, reading", [
    ([4.0, 4.1, 4.2], "met"),  # 4.1 +- 0.25: all of it above 3
    ([1.0, 1.1, 1.2], "not met"),  # all of it below
    ([2.5, 3.2, 3.9], "undecided"),  # 3.2 +- 1.7
    ([2.9, 2.9, 2.9], "not met"),  # no spread: the interval is the mean, under 3
])
def test_the_interval_reads_met_not_met_or_undecided(gaps: list[float],
                                                      reading: str) -> None:
    rows = summary(auto={s: 0.5 + g / 100 for s, g in enumerate(gaps)},
                   random={s: 0.5 for s in range(3)})
    assert load_bench().paired_gap(rows, "auto", "random", goal=3.0)["reading"] == reading


def test_one_shared_seed_gives_a_gap_but_no_interval_and_none_gives_nothing() -> None:
    bench = load_bench()
    one = bench.paired_gap(summary(auto={0: 0.9}, random={0: 0.8, 1: 0.8}), "auto",
                           "random", goal=3.0)
    assert one["mean"] == pytest.approx(10.0)
    assert one["ci95"] is None and one["reading"] == "undecided"
    assert bench.paired_gap(summary(auto={0: 0.9}, random={1: 0.8}), "auto", "random") is None
    assert bench.paired_gap(summary(random={1: 0.8}), "auto", "random") is None


def test_the_report_pairs_auto_and_reads_runs_recorded_under_another_name(
        tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (lo, hi) in enumerate([(0.50, 0.90), (0.50, 0.88), (0.50, 0.92)]):
        write(runs, "random", seed, curve(0.50, 0.80))
        write(runs, "herding", seed, curve(lo, hi))  # recorded before it was auto
        write(runs, "skal-badge", seed, curve(0.50, 0.84))
    out = tmp_path / "o"
    base = ["--report-only", "--budget", "200", "--runs", str(runs), "--out", str(out)]
    load_bench().main(base)
    goals = json.loads((out / "report.json").read_text())["meta"]["goals"]
    assert goals["auto_aubc"] is None and goals["auto_minus_random_paired"] is None

    load_bench().main([*base, "--auto", "herding"])
    goals = json.loads((out / "report.json").read_text())["meta"]["goals"]
    assert goals["auto"] == "herding" and goals["best_peer"] == "skal-badge"
    vs_random, vs_peer = goals["auto_minus_random_paired"], goals["auto_minus_best_peer_paired"]
    # a linear curve's mean is its midpoint: herding 0.70 / 0.69 / 0.71 against 0.65
    assert vs_random["per_seed"] == pytest.approx([5.0, 4.0, 6.0])
    assert vs_random["mean"] == pytest.approx(goals["auto_minus_random_points"])
    assert vs_random["reading"] == "undecided"  # 5 +- 2.5 spans 3
    assert vs_peer["per_seed"] == pytest.approx([3.0, 2.0, 4.0])
    assert vs_peer["reading"] == "met"  # 3 +- 2.5: all of it above the peer
    text = (out / "report.md").read_text()
    assert "Goals (auto: herding)" in text
    assert "95% CI +2.52 to +7.48, undecided at 3" in text


def test_the_report_can_pair_auto_with_a_named_control(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, hi in enumerate([0.90, 0.88, 0.92]):
        write(runs, "herding", seed, curve(0.50, 0.80))  # the control, shared start
        write(runs, "auto@cold-start", seed, curve(0.50, hi))
    out = tmp_path / "o"
    base = ["--report-only", "--budget", "200", "--runs", str(runs), "--out", str(out),
            "--auto", "auto@cold-start"]
    load_bench().main(base)
    goals = json.loads((out / "report.json").read_text())["meta"]["goals"]
    assert "auto_minus_beside_paired" not in goals  # only when asked for

    load_bench().main([*base, "--beside", "herding"])
    report = json.loads((out / "report.json").read_text())
    gap = report["meta"]["goals"]["auto_minus_beside_paired"]
    assert (gap["of"], gap["minus"]) == ("auto@cold-start", "herding")
    assert gap["per_seed"] == pytest.approx([5.0, 4.0, 6.0])
    assert report["meta"]["beside"] == "herding"  # recorded with the report
    assert "auto@cold-start - herding AUBC (paired over 3 seeds: +5.00" in (
        out / "report.md").read_text()
    load_bench().main(base[:-2] + ["--auto", "herding", "--beside", "nothing-recorded"])
    assert json.loads((out / "report.json").read_text())["meta"]["goals"][
        "auto_minus_beside_paired"] is None  # no shared seed: no gap, and no crash
