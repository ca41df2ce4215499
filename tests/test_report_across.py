"""`tickets report RUN_A RUN_B`: the runs' tickets against each other, round by round (runs.csv)."""
import csv

import pytest
from conftest import TINY, read_results, run_cli
from scipy import stats


def test_two_runs_tickets_are_compared_per_round_with_a_paired_test(tmp_path):
    common = ["--rounds", "2", "--controls", "none", *TINY]
    common[common.index("--seeds") + 1] = "0,1,2"
    run_cli("prune", "--out", tmp_path, "--name", "rewind", *common)
    run_cli("prune", "--out", tmp_path, "--name", "finetune", "--retrain", "finetune", *common)
    run_cli("report", tmp_path / "rewind", tmp_path / "finetune")
    report = tmp_path / "report-rewind-finetune"
    with (report / "runs.csv").open() as handle:
        rows = {int(r["round"]): r for r in csv.DictReader(handle)}
    a, b = read_results(tmp_path / "rewind"), read_results(tmp_path / "finetune")
    for round_ in (1, 2):
        acc = lambda rows_: [float(r["test_acc_at_early_stop"]) for r in sorted(rows_, key=lambda r: r["seed"])
                             if int(r["round"]) == round_ and r["variant"] == "ticket"]  # noqa: E731
        first, other = acc(a), acc(b)
        row = rows[round_]
        assert row["run_a"] == "retrain=rewind" and row["run_b"] == "retrain=finetune"
        assert float(row["diff"]) == pytest.approx(sum(first) / 3 - sum(other) / 3, abs=1e-9)
        if first != other:
            assert float(row["p_paired"]) == pytest.approx(stats.ttest_rel(first, other).pvalue, rel=1e-9)
    assert "## Tickets across runs" in (report / "report.md").read_text()
