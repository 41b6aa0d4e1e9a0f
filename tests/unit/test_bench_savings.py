"""The label-efficiency report's savings: labels each strategy needs to reach a range of
accuracies against random's, with random taken past the budget by a --random-sizes file,
so "labels to 85%" is computed from the recorded figures, not worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_bench_refit import load_bench

LABELS = [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]


def write(runs: Path, strategy: str, seed: int, accuracy: list[float]) -> None:
    runs.mkdir(exist_ok=True)
    rows = [{"strategy": strategy, "seed": seed, "round": i, "labels": n, "accuracy": a,
             "train_s": 1.0, "score_s": 1.0, "select_s": 0.1}
            for i, (n, a) in enumerate(zip(LABELS, accuracy, strict=True))]
    (runs / f"{strategy}__s{seed}.jsonl").write_text("".join(json.dumps(r) + "\n"
                                                             for r in rows))


def curve(lo: float, hi: float) -> list[float]:
    return [round(lo + (hi - lo) * i / (len(LABELS) - 1), 4) for i in range(len(LABELS))]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """Seeds 0 and 1 of random (0.50 -> 0.78 at 200 labels) and of a strategy that gets
    there faster (0.50 -> 0.86); a seed 2 of random far below them."""
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write(runs, "random", seed, curve(0.50, 0.78))
        write(runs, "auto", seed, curve(0.50, 0.86))
    write(runs, "random", 2, curve(0.10, 0.20))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "report.json").write_text(json.dumps({"meta": {
        "budget": 200, "device": "cpu", "workers": 1, "representation": "test"}}))
    return tmp_path


def report(tmp: Path, *args: str) -> dict:
    load_bench().main(["--report-only", "--budget", "200", "--runs", str(tmp / "runs"),
                       "--out", str(tmp / "o"), *args])
    return json.loads((tmp / "o" / "report.json").read_text())["meta"]


def test_random_past_the_budget_gives_labels_to_85_and_its_ratio(recorded: Path) -> None:
    past = recorded / "random-curve.json"  # as --random-sizes writes it, seeds 0-2
    past.write_text(json.dumps({"seeds": [2, 0, 1], "sizes": [100, 300, 400],
                                "accuracy": {"100": [0.1, 0.6, 0.6],
                                             "300": [0.1, 0.84, 0.85],
                                             "400": [0.1, 0.86, 0.86]}}))
    meta = report(recorded, "--seeds", "0,1", "--random-curve", str(past))
    saved, goals = meta["savings"], meta["goals"]
    # 100 lies within the budget (the loop's own rounds count there); 300: 84.5%, 400: 86%
    assert saved["random"][saved["targets"].index(85)] == 400
    auto_85 = LABELS[next(i for i, a in enumerate(curve(0.50, 0.86)) if a >= 0.85)]
    assert goals["auto_labels_to_85"] == auto_85 == 200
    assert goals["random_labels_to_85"] == 400 and goals["labels_to_85_ratio"] == 0.5
    auto = saved["strategies"]["auto"]
    assert 80 in saved["targets"] and saved["targets"] == sorted(set(saved["targets"]))
    for t, mine, theirs, ratio in zip(saved["targets"], auto["labels"], saved["random"],
                                      auto["ratio"], strict=True):
        assert mine <= theirs and ratio == pytest.approx(mine / theirs), t
    text = (recorded / "o" / "report.md").read_text()
    assert "| random |" in text and f"{auto_85} (0.50)" in text
    assert meta["random_curve"] == str(past)  # kept for the next --report-only
    assert report(recorded, "--seeds", "0,1")["goals"]["random_labels_to_85"] == 400


def test_without_the_file_random_stops_at_the_budget(recorded: Path) -> None:
    meta = report(recorded, "--seeds", "0,1")
    saved = meta["savings"]
    assert saved["random_past_budget"] is None
    assert meta["goals"]["random_labels_to_85"] is None  # 78% at 200: never within it
    assert saved["random"][saved["targets"].index(85)] is None
    assert max(t for t in saved["targets"] if t not in (80, 85)) <= 78


def test_seeds_choose_the_runs_tabled(recorded: Path) -> None:
    both = report(recorded, "--seeds", "0,1")
    every = report(recorded)  # seed 2 of random drags its mean down
    assert both["goals"]["random_aubc"] > every["goals"]["random_aubc"] + 0.1


def test_per_seed_figures_follow_the_seeds_whatever_order_the_runs_come_in(
        recorded: Path) -> None:
    """Seeds 1 then 0 (two sources, the later seed first): each seed's AUBC stands at
    that seed's place in seed_ids."""
    later = recorded / "later"
    write(later, "margin", 1, curve(0.60, 0.60))
    write(recorded / "runs", "margin", 0, curve(0.40, 0.40))
    load_bench().main(["--report-only", "--budget", "200", "--runs",
                       f"{later},{recorded / 'runs'}", "--out", str(recorded / "o")])
    row = json.loads((recorded / "o" / "report.json").read_text())["strategies"]["margin"]
    assert row["seed_ids"] == [0, 1]
    assert row["aubc_per_seed"] == pytest.approx([0.40, 0.60])


def test_a_bad_file_stops_with_a_message_and_leaves_the_report(recorded: Path) -> None:
    before = report(recorded, "--seeds", "0,1")
    past = recorded / "random-curve.json"
    past.write_text(json.dumps({"seeds": [0], "sizes": [300], "accuracy": {"300": [0.9]}}))
    with pytest.raises(SystemExit, match=r"no subsets for random's seeds \[1\]"):
        report(recorded, "--seeds", "0,1", "--random-curve", str(past))
    for text, says in [(None, "No such file"), ("{not json", "JSONDecodeError"),
                       ('{"seeds": [0, 1]}', "KeyError('accuracy')")]:
        bad = recorded / "bad.json"
        bad.unlink(missing_ok=True)
        if text is not None:
            bad.write_text(text)
        with pytest.raises(SystemExit, match="not a --random-sizes run's") as stop:
            report(recorded, "--seeds", "0,1", "--random-curve", str(bad))
        assert says in str(stop.value)
    after = json.loads((recorded / "o" / "report.json").read_text())["meta"]
    assert after == before  # nothing written on the way out


def test_a_runs_folder_without_a_report_is_reported_from_the_command_line(
        recorded: Path) -> None:
    (recorded / "o" / "report.json").unlink()
    meta = report(recorded, "--seeds", "0,1")
    assert meta["budget"] == 200 and meta["goals"]["auto_labels_to_85"] == 200
    # how those runs were made is not on the command line: said so, not made up
    assert meta["device"] is None and meta["representation"] is None
    assert "representation: not recorded" in (recorded / "o" / "report.md").read_text()
    (recorded / "o" / "report.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not this benchmark's report"):
        report(recorded, "--seeds", "0,1")
    assert (recorded / "o" / "report.json").read_text() == "[1, 2]"  # left as it was


def test_several_sources_are_tabled_together_and_a_run_in_two_stops_it(
        recorded: Path) -> None:
    # random and auto in a report JSON (as committed under docs/bench), a peer's runs in a
    # folder of their own: the savings rows need random's rounds beside the peer's
    whole = report(recorded, "--seeds", "0,1")
    kept = recorded / "kept.json"
    kept.write_text((recorded / "o" / "report.json").read_text())
    peers = recorded / "peers"
    for seed in (0, 1):
        write(peers, "skal-badge", seed, curve(0.50, 0.82))
    sources = f"{kept},{peers}"
    meta = load_bench().main(["--report-only", "--budget", "200", "--seeds", "0,1",
                              "--runs", sources, "--out", str(recorded / "o")])
    assert meta == 0
    both = json.loads((recorded / "o" / "report.json").read_text())
    assert set(both["strategies"]) == {"random", "auto", "skal-badge"}
    assert both["meta"]["goals"]["random_aubc"] == whole["goals"]["random_aubc"]
    badge = both["meta"]["savings"]["strategies"]["skal-badge"]
    to_80 = LABELS[next(i for i, a in enumerate(curve(0.50, 0.82)) if a >= 0.80)]
    assert badge["labels"][both["meta"]["savings"]["targets"].index(80)] == to_80
    for bad, says in [(f"{kept},{recorded / 'runs'}", "auto seed 0 is in .*kept.json and in"),
                      (f"{peers},{recorded / 'nowhere'}", "no runs at")]:
        with pytest.raises(SystemExit, match=says):
            load_bench().main(["--report-only", "--budget", "200", "--runs", bad,
                               "--out", str(recorded / "o")])
    assert json.loads((recorded / "o" / "report.json").read_text()) == both  # untouched
    with pytest.raises(SystemExit):  # several are read, never written to
        load_bench().main(["--runs", sources, "--out", str(recorded / "w")])


def test_runs_of_one_seed_that_start_apart_are_flagged(recorded: Path) -> None:
    """Every strategy of a seed starts from the same labels and recipe, so round 0 must
    agree; a run made on other numerics (another host) is named in the report."""
    assert report(recorded, "--seeds", "0,1")["round0_mismatch"] == {}
    assert "one numeric setup" in (recorded / "o" / "report.md").read_text()
    write(recorded / "runs", "auto", 1, [0.49, *curve(0.50, 0.86)[1:]])
    meta = report(recorded, "--seeds", "0,1")
    assert meta["round0_mismatch"] == {"1": {"auto": 0.49, "random": 0.5}}
    text = (recorded / "o" / "report.md").read_text()
    assert "differs for seed 1 (auto 49.00, random 50.00)" in text
