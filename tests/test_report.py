"""The report stage on a hand-made run whose statistics are worked out by hand below."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

from tickets.errors import TicketsError
from tickets.report import compare, load_results, run_labels, summarize, t_ppf, welch, write_report

COLUMNS = ["run", "seed", "round", "variant", "criterion", "weights_remaining", "params_remaining", "acc_at_init",
           "best_val_loss", "early_stop_iter", "test_acc_at_early_stop", "final_test_acc", "final_test_loss",
           "iterations", "train_seconds"]

# (round, variant, weights_remaining) -> per seed 0, 1, 2: (test_acc_at_early_stop, early_stop_iter, final_test_acc)
RUN = {
    (0, "ticket", 1.0): [(0.90, 1000, 0.89), (0.92, 1100, 0.91), (0.94, 1200, 0.93)],
    (1, "ticket", 0.5): [(0.93, 800, 0.92), (0.94, 900, 0.93), (0.95, 1000, 0.94)],
    (1, "reinit", 0.5): [(0.80, 1000, 0.80), (0.81, 1000, 0.80), (0.82, 1000, 0.80)],
    (1, "random_prune", 0.5): [(0.92, 900, 0.9), (0.95, 900, 0.9), (0.94, 900, 0.9)],
    (2, "ticket", 0.2): [(0.95, 600, 0.94), (0.96, 700, 0.95), (0.97, 800, 0.96)],
    (2, "reinit", 0.2): [(0.70, 900, 0.7), (0.72, 900, 0.7), (0.74, 900, 0.7)],
    (2, "random_prune", 0.2): [(0.98, 900, 0.9), (0.99, 900, 0.9), (1.00, 900, 0.9)],
    (3, "ticket", 0.035): [(0.80, 1500, 0.8), (0.82, 1600, 0.8), (0.84, 1700, 0.8)],
    (3, "reinit", 0.035): [(0.79, 1500, 0.8), (0.81, 1500, 0.8), (0.83, 1500, 0.8)],
    (3, "random_prune", 0.035): [(0.50, 1500, 0.5), (0.60, 1500, 0.5), (0.70, 1500, 0.5)],
}
T_975 = {1: 12.706205, 2: 4.302653, 4: 2.776445, 30: 2.042272}  # Student-t table


def results_frame(name: str = "r1") -> pd.DataFrame:
    rows = []
    for (rnd, variant, weights), seeds in RUN.items():
        for seed, (acc, it, final) in enumerate(seeds):
            rows.append([name, seed, rnd, variant, "magnitude", weights, round(266200 * weights), None, 0.3, it,
                         acc, final, 0.3, 2000, 1.5])
    return pd.DataFrame(rows, columns=COLUMNS)


def make_run(tmp_path, name="r1", **prune) -> "Path":  # noqa: F821
    run = tmp_path / name
    run.mkdir()
    config = {"name": name, "seeds": [0, 1, 2],
              "model": {"name": "lenet_300_100", "init": "kaiming_normal", "options": {}},
              "train": {"optimizer": "adam", "lr": 0.0012, "batch_size": 60, "accelerator": "cpu"},
              "prune": {"rounds": 3, "fraction": 0.2, "criterion": "magnitude", "rewind": "0",
                        "controls": ["reinit", "random_prune"], **prune}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    results_frame(name).to_csv(run / "results.csv", index=False)
    for seed in (0, 1):
        for rnd, variant in ((0, "ticket"), (2, "ticket"), (2, "reinit")):
            folder = run / f"seed_{seed}" / f"round_{rnd}" / variant
            folder.mkdir(parents=True)
            it = np.arange(0, 2001, 100)
            acc = 0.9 - 0.8 * np.exp(-it / (300 + 200 * rnd)) + 0.01 * seed
            pd.DataFrame({"iteration": it, "train_loss": 1 - acc, "val_loss": 1 - acc, "val_acc": acc,
                          "test_loss": 1 - acc, "test_acc": acc}).to_csv(folder / "metrics.csv", index=False)
    return run


def row(table, **where):
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= table[column] == value
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


def test_t_quantiles_match_the_table():
    for df, expected in T_975.items():
        assert t_ppf(0.975, df) == pytest.approx(expected, abs=1e-6)
    assert t_ppf(0.025, 4) == pytest.approx(-T_975[4], abs=1e-6)
    assert t_ppf(0.975, 1e4) == pytest.approx(1.960201, abs=1e-5)


def test_summary_statistics_by_hand():
    s = summarize(results_frame().drop(columns="run"))
    assert list(s[["round", "variant"]].itertuples(index=False, name=None))[:4] == [
        (0, "ticket"), (1, "ticket"), (1, "reinit"), (1, "random_prune")]
    dense = row(s, round=0, variant="ticket")
    half = T_975[2] * 0.02 / math.sqrt(3)
    assert dense["n_seeds"] == 3 and dense["weights_remaining"] == 1.0
    assert dense["test_acc_at_early_stop_mean"] == pytest.approx(0.92)
    assert dense["test_acc_at_early_stop_std"] == pytest.approx(0.02)
    assert dense["test_acc_at_early_stop_ci_low"] == pytest.approx(0.92 - half, abs=1e-7)
    assert dense["test_acc_at_early_stop_ci_high"] == pytest.approx(0.92 + half, abs=1e-7)
    assert dense["early_stop_iter_mean"] == pytest.approx(1100)
    assert dense["early_stop_iter_std"] == pytest.approx(100)
    assert dense["early_stop_iter_ci_high"] == pytest.approx(1100 + T_975[2] * 100 / math.sqrt(3), abs=1e-4)
    assert dense["final_test_acc_mean"] == pytest.approx(0.91)
    # No spread: the interval collapses onto the mean.
    reinit = row(s, round=1, variant="reinit")
    assert reinit["early_stop_iter_std"] == 0 and reinit["early_stop_iter_ci_low"] == 1000


def test_single_seed_has_no_spread_and_no_interval():
    s = summarize(results_frame()[lambda d: d["seed"] == 0])
    dense = row(s, run="r1", round=0, variant="ticket")
    assert dense["n_seeds"] == 1 and dense["test_acc_at_early_stop_mean"] == pytest.approx(0.90)
    assert math.isnan(dense["test_acc_at_early_stop_std"]) and math.isnan(dense["test_acc_at_early_stop_ci_low"])
    assert set(compare(results_frame()[lambda d: d["seed"] == 0])["verdict"]) == {"too few seeds"}


def test_welch_verdicts():
    c = compare(results_frame().drop(columns="run"))
    assert list(c.columns[:3]) == ["round", "weights_remaining", "control"]
    assert set(c["test"]) == {"Welch's two-sided t-test on test_acc_at_early_stop, alpha=0.05"}
    separated = row(c, round=1, control="reinit")  # 0.93..0.95 vs 0.80..0.82
    assert separated["verdict"] == "ticket better"
    # Both sides have std 0.01 and n 3: se = 0.01 * sqrt(2/3), Welch df = 4.
    se = 0.01 * math.sqrt(2 / 3)
    assert separated["diff"] == pytest.approx(0.13)
    assert separated["t"] == pytest.approx(0.13 / se)
    assert separated["df"] == pytest.approx(4)
    assert separated["diff_ci_low"] == pytest.approx(0.13 - T_975[4] * se, abs=1e-7)
    assert separated["diff_ci_high"] == pytest.approx(0.13 + T_975[4] * se, abs=1e-7)
    assert separated["p_value"] < 1e-4
    overlapping = row(c, round=1, control="random_prune")  # 0.93..0.95 vs 0.92, 0.95, 0.94
    assert overlapping["verdict"] == "no difference" and overlapping["p_value"] > 0.5
    assert overlapping["diff_ci_low"] < 0 < overlapping["diff_ci_high"]
    assert row(c, round=2, control="random_prune")["verdict"] == "worse"  # 0.96 vs 0.99, t = -3.67, df = 4
    assert row(c, round=3, control="reinit")["verdict"] == "no difference"
    assert row(c, round=3, control="reinit")["weights_remaining"] == 0.035


def test_welch_against_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=rng.integers(2, 8)), rng.normal(0.5, 2, size=rng.integers(2, 8))
        w, expected = welch(a, b), stats.ttest_ind(a, b, equal_var=False)
        assert w["t"] == pytest.approx(expected.statistic) and w["p"] == pytest.approx(expected.pvalue, abs=1e-12)
        assert t_ppf(0.975, w["df"]) == pytest.approx(stats.t.ppf(0.975, w["df"]), rel=1e-9)


def test_labels_from_differing_config_keys(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", criterion="large_final", rewind="500")
    assert run_labels([a, b]) == ["criterion=magnitude, rewind=0", "criterion=large_final, rewind=500"]
    same = make_run(tmp_path, "same")
    assert run_labels([a, same]) == ["a", "same"]  # only the ignored name differs
    assert run_labels([a]) == ["a"]


def test_report_over_several_runs_labels_rows(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", rewind="500")
    out = write_report([a, b], tmp_path / "both")
    summary = pd.read_csv(out / "summary.csv")
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(summary["run"]) == set(comparison["run"]) == {"rewind=0", "rewind=500"}
    assert len(summary) == 2 * len(RUN) and len(comparison) == 2 * 6
    text = (out / "report.md").read_text()
    assert "### rewind=500" in text and "Across runs" in text
    assert write_report([a, b]) == tmp_path / "report-a-b"


def test_write_report_files_and_findings(tmp_path):
    run = make_run(tmp_path)
    out = write_report([run])
    assert out == run / "report"
    summary = pd.read_csv(out / "summary.csv")
    assert "run" not in summary.columns
    assert summary.loc[0, "test_acc_at_early_stop_mean"] == pytest.approx(0.92)
    assert len(pd.read_csv(out / "comparison.csv")) == 6
    for name in ("accuracy.png", "early_stop.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 10_000
        image = imread(out / name)
        assert image.shape[0] > 300 and image[..., :3].std() > 0.05  # not a blank canvas
    assert not list(out.glob(".*.tmp"))
    text = (out / "report.md").read_text()
    assert "Welch's two-sided t-test" in text
    for name in ("accuracy.png", "early_stop.png", "learning_curves.png"):
        assert f"]({name})" in text
    assert "The dense network reaches 92.00% test accuracy" in text
    assert "highest at 20% weights remaining (round 2): 96.00%, +4.00 percentage points over the dense" in text
    assert "Tickets beat reinit down to 20% weights remaining (significantly better in 2 of 3 rounds" in text
    assert "Tickets are not significantly better than random_prune in any of 3 rounds" in text
    assert "random_prune is significantly better than the ticket at 20% weights remaining" in text
    # Round 3 (mean 0.82) is below the dense CI (0.92 - 0.0497); round 2 is the sparsest match.
    assert "At 20% weights remaining (round 2), the sparsest round" in text
    assert "iteration 700 versus 1,100 for the dense network (36% sooner)" in text
    # reinit early-stops at 1000, 900, 1500 vs the ticket's 900, 700, 1600: ratios 1.11, 1.29, 0.94
    assert "Tickets early-stop sooner than reinit in 2 of 3 rounds (median ratio of early-stop iterations " \
           "reinit/ticket: 1.11x)" in text


def test_learning_curves_skipped_without_metrics(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    results_frame("bare").to_csv(run / "results.csv", index=False)
    out = write_report([run], rounds_to_plot=[0, 2])
    assert (out / "accuracy.png").exists() and not (out / "learning_curves.png").exists()
    assert "learning_curves.png" not in (out / "report.md").read_text()


def test_missing_or_empty_results_is_a_tickets_error(tmp_path):
    with pytest.raises(TicketsError, match="results.csv: run `tickets prune` first"):
        write_report([tmp_path])
    assert not (tmp_path / "report").exists()
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(TicketsError, match="no rows yet"):
        load_results(tmp_path)
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(TicketsError, match="tickets prune"):
        load_results(tmp_path)


def test_supermask_run_without_tickets_is_described_not_compared(tmp_path):
    run = tmp_path / "sm"
    run.mkdir()
    rows = [["sm", seed, 0, "supermask_edge_popup", "edge_popup", 0.5, 133100, 0.1, 0.3, 900, acc, acc + 0.01,
             0.3, 1160, 9.0] for seed, acc in enumerate((0.93, 0.94, 0.95))]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(run / "results.csv", index=False)
    out = write_report([run])
    assert pd.read_csv(out / "comparison.csv").empty
    assert ("supermask_edge_popup reaches 94.00% test accuracy at early stop (final 95.00%) "
            "with 50% weights remaining (3 seeds).") in (out / "report.md").read_text()
