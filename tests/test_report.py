"""The report stage on a hand-made run whose statistics are worked out by hand below.

With 3 seeds a paired t-test has 2 degrees of freedom, where Student's t has a closed form:
the two-sided p-value of t is 1 - |t| / sqrt(t² + 2). The paired differences below have
standard deviation 0.01, so t = mean / (0.01 / √3).
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

from tickets.errors import TicketsError
from tickets.report import (
    compare,
    holm,
    load_results,
    mean_ci,
    paired_test,
    run_labels,
    summarize,
    welch_test,
    write_report,
)
from tickets.report.statistics import is_constant, verdict

COLUMNS = ["run", "seed", "round", "variant", "criterion", "weights_remaining", "params_remaining", "acc_at_init",
           "best_val_loss", "early_stop_iter", "test_acc_at_early_stop", "final_test_acc", "final_test_loss",
           "iterations", "train_seconds"]

# (round, variant, weights_remaining) -> per seed 0, 1, 2: (test_acc_at_early_stop, early_stop_iter, final_test_acc)
RUN = {
    (0, "ticket", 1.0): [(0.90, 1000, 0.89), (0.92, 1100, 0.91), (0.94, 1200, 0.93)],
    # ticket - reinit = 0.13, 0.12, 0.14; ticket - random_prune = 0.02, 0.03, 0.04
    (1, "ticket", 0.5): [(0.93, 800, 0.92), (0.94, 900, 0.93), (0.95, 1000, 0.94)],
    (1, "reinit", 0.5): [(0.80, 1000, 0.80), (0.82, 1000, 0.80), (0.81, 1000, 0.80)],
    (1, "random_prune", 0.5): [(0.91, 900, 0.9), (0.91, 900, 0.9), (0.91, 900, 0.9)],
    # ticket - reinit = 0.25, 0.24, 0.26; ticket - random_prune = 0.04, 0.03, 0.02
    (2, "ticket", 0.2): [(0.95, 600, 0.94), (0.96, 700, 0.95), (0.97, 800, 0.96)],
    (2, "reinit", 0.2): [(0.70, 900, 0.7), (0.72, 900, 0.7), (0.71, 900, 0.7)],
    (2, "random_prune", 0.2): [(0.91, 900, 0.9), (0.93, 900, 0.9), (0.95, 900, 0.9)],
    # ticket - reinit = 0.01, -0.01, 0.03 (sd 0.02); ticket - random_prune = -0.25, -0.24, -0.26
    (3, "ticket", 0.08): [(0.60, 1500, 0.6), (0.60, 1600, 0.6), (0.62, 1700, 0.6)],
    (3, "reinit", 0.08): [(0.59, 1500, 0.6), (0.61, 1500, 0.6), (0.59, 1500, 0.6)],
    (3, "random_prune", 0.08): [(0.85, 1500, 0.8), (0.84, 1500, 0.8), (0.88, 1500, 0.8)],
    # ticket - reinit = 0.10, 0.11, 0.12; random_prune scores exactly what the ticket scores
    (4, "ticket", 0.035): [(0.80, 1400, 0.8), (0.82, 1500, 0.8), (0.84, 1600, 0.8)],
    (4, "reinit", 0.035): [(0.70, 1200, 0.7), (0.71, 1200, 0.7), (0.72, 1200, 0.7)],
    (4, "random_prune", 0.035): [(0.80, 1500, 0.8), (0.82, 1500, 0.8), (0.84, 1500, 0.8)],
}
T_975 = {1: 12.706205, 2: 4.302653, 4: 2.776445, 30: 2.042272}  # Student-t table


def p_df2(mean_diff: float, sd: float = 0.01) -> float:
    """Two-sided p of a paired t-test over 3 pairs, by the closed form for 2 degrees of freedom."""
    t = mean_diff / (sd / math.sqrt(3))
    return 1 - abs(t) / math.sqrt(t * t + 2)


P_REINIT = {1: p_df2(0.13), 2: p_df2(0.25), 3: p_df2(0.01, sd=0.02), 4: p_df2(0.11)}  # .00197 .00053 .478 .00274
P_RANDOM = {1: p_df2(0.03), 2: p_df2(0.03), 3: p_df2(-0.25)}  # .0351 .0351 .00053; round 4: identical


def results_frame(name: str = "r1", run: dict = RUN) -> pd.DataFrame:
    rows = []
    for (rnd, variant, weights), seeds in run.items():
        for seed, (acc, it, final) in enumerate(seeds):
            rows.append([name, seed, rnd, variant, "magnitude", weights, round(266200 * weights), None, 0.3, it,
                         acc, final, 0.3, 2000, 1.5])
    return pd.DataFrame(rows, columns=COLUMNS)


def make_run(tmp_path, name="r1", frame=None, **prune) -> "Path":  # noqa: F821
    run = tmp_path / name
    run.mkdir()
    config = {"name": name, "seeds": [0, 1, 2],
              "model": {"name": "lenet_300_100", "init": "kaiming_normal", "options": {}},
              "train": {"optimizer": "adam", "lr": 0.0012, "batch_size": 60, "accelerator": "cpu"},
              "prune": {"rounds": 4, "fraction": 0.2, "criterion": "magnitude", "rewind": "0",
                        "controls": ["reinit", "random_prune"], **prune}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (results_frame(name) if frame is None else frame).to_csv(run / "results.csv", index=False)
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


def test_confidence_interval_uses_the_t_table():
    for n, expected in ((2, T_975[1]), (3, T_975[2]), (5, T_975[4]), (31, T_975[30])):
        values = np.arange(n, dtype=float)
        _, mean, std, low, high = mean_ci(values)
        assert high - mean == pytest.approx(expected * std / math.sqrt(n), rel=1e-6)
        assert mean - low == pytest.approx(high - mean)


def test_confidence_interval_edge_cases():
    assert mean_ci([])[0] == 0 and all(math.isnan(v) for v in mean_ci([])[1:])
    n, mean, std, low, high = mean_ci([0.5, math.nan])
    assert (n, mean) == (1, 0.5) and math.isnan(std) and math.isnan(low) and math.isnan(high)
    _, mean, std, low, high = mean_ci([0.098] * 7)  # float noise in the variance (2e-34) is no spread
    assert std == 0.0 and low == high == mean == pytest.approx(0.098)


def test_constant_means_equal_up_to_float_noise_relative_to_size():
    assert is_constant([0.91, 0.91, 0.91]) and is_constant([0.80 - 0.79, 0.82 - 0.81])
    assert not is_constant([0.5, 0.500001])  # results.csv keeps 6 decimals: this is a real difference
    assert is_constant([1000.0, 1000.0 + 1e-7]) and not is_constant([1000.0, 1000.01])


def test_summary_statistics_by_hand():
    s = summarize(results_frame().drop(columns="run"))
    assert list(s[["round", "variant"]].itertuples(index=False, name=None))[:4] == [
        (0, "ticket"), (1, "ticket"), (1, "reinit"), (1, "random_prune")]
    dense = row(s, round=0, variant="ticket")
    half = T_975[2] * 0.02 / math.sqrt(3)
    assert dense["n_seeds"] == 3 and dense["weights_remaining"] == 1.0
    assert dense["test_acc_at_early_stop_mean"] == pytest.approx(0.92)
    assert dense["test_acc_at_early_stop_std"] == pytest.approx(0.02)
    assert dense["test_acc_at_early_stop_ci_low"] == pytest.approx(0.92 - half, abs=1e-6)
    assert dense["test_acc_at_early_stop_ci_high"] == pytest.approx(0.92 + half, abs=1e-6)
    assert dense["early_stop_iter_mean"] == pytest.approx(1100)
    assert dense["early_stop_iter_std"] == pytest.approx(100)
    assert dense["early_stop_iter_ci_high"] == pytest.approx(1100 + T_975[2] * 100 / math.sqrt(3), abs=1e-4)
    assert dense["final_test_acc_mean"] == pytest.approx(0.91)
    # No spread (up to float noise): the interval collapses onto the mean.
    reinit = row(s, round=1, variant="reinit")
    assert reinit["early_stop_iter_std"] == 0 and reinit["early_stop_iter_ci_low"] == 1000
    constant = row(s, round=1, variant="random_prune")  # 0.91 three times: its float variance is not 0
    assert constant["test_acc_at_early_stop_std"] == 0
    assert constant["test_acc_at_early_stop_ci_low"] == constant["test_acc_at_early_stop_ci_high"] == 0.91


def test_single_seed_has_no_spread_and_no_test():
    frame = results_frame()[lambda d: d["seed"] == 0]
    dense = row(summarize(frame), run="r1", round=0, variant="ticket")
    assert dense["n_seeds"] == 1 and dense["test_acc_at_early_stop_mean"] == pytest.approx(0.90)
    assert math.isnan(dense["test_acc_at_early_stop_std"]) and math.isnan(dense["test_acc_at_early_stop_ci_low"])
    c = compare(frame)
    assert set(c["verdict"]) == {"n/a"} and c["p_paired"].isna().all() and c["p_welch"].isna().all()


def test_paired_test_p_values_and_interval_by_hand():
    c = compare(results_frame().drop(columns="run"))
    assert list(c.columns[:3]) == ["round", "weights_remaining", "control"]
    for rnd, p in P_REINIT.items():
        assert row(c, round=rnd, control="reinit")["p_paired"] == pytest.approx(p, rel=1e-3)
    for rnd, p in P_RANDOM.items():
        assert row(c, round=rnd, control="random_prune")["p_paired"] == pytest.approx(p, rel=1e-3)
    first = row(c, round=1, control="reinit")
    half = T_975[2] * 0.01 / math.sqrt(3)  # paired: the spread of the differences, not of the groups
    assert first["diff"] == pytest.approx(0.13)
    assert first["diff_ci_low"] == pytest.approx(0.13 - half, abs=1e-6)
    assert first["diff_ci_high"] == pytest.approx(0.13 + half, abs=1e-6)
    assert first["t_paired"] == pytest.approx(0.13 / (0.01 / math.sqrt(3)), rel=1e-3)
    assert (first["n_ticket"], first["n_control"], first["n_pairs"]) == (3, 3, 3)
    assert first["ticket_mean"] == pytest.approx(0.94) and first["control_mean"] == pytest.approx(0.81)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.01, math.nan, 0.04])  # an untested round is not in the family: m = 2
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # 2 x 0.6 is capped at 1
    assert holm([]) == []


def test_verdicts_come_from_the_holm_adjusted_paired_test():
    c = compare(results_frame().drop(columns="run"))
    reinit = {rnd: row(c, round=rnd, control="reinit") for rnd in P_REINIT}
    # m = 4: 0.00053 x 4, 0.00197 x 3, 0.00274 x 2 (raised to the running max), 0.478 x 1
    assert reinit[2]["p_paired_holm"] == pytest.approx(4 * P_REINIT[2], rel=1e-3)
    assert reinit[1]["p_paired_holm"] == pytest.approx(3 * P_REINIT[1], rel=1e-3)
    assert reinit[4]["p_paired_holm"] == pytest.approx(3 * P_REINIT[1], rel=1e-3)
    assert reinit[3]["p_paired_holm"] == pytest.approx(P_REINIT[3], rel=1e-3)
    assert [reinit[r]["verdict"] for r in (1, 2, 3, 4)] == ["ticket better", "ticket better",
                                                            "not significant", "ticket better"]
    random = {rnd: row(c, round=rnd, control="random_prune") for rnd in (1, 2, 3, 4)}
    # m = 3 (round 4 is identical, untested): raw p = 0.035 < 0.05 but Holm gives 2 x 0.035 = 0.070
    assert random[1]["p_paired"] < 0.05 and random[1]["p_paired_holm"] == pytest.approx(2 * P_RANDOM[1], rel=1e-3)
    assert random[3]["p_paired_holm"] == pytest.approx(3 * P_RANDOM[3], rel=1e-3)
    assert [random[r]["verdict"] for r in (1, 2, 3, 4)] == ["not significant", "not significant", "worse",
                                                                 "same"]
    assert math.isnan(random[4]["p_paired"]) and math.isnan(random[4]["p_paired_holm"])
    assert random[4]["diff"] == 0


def test_welch_is_kept_beside_the_paired_test():
    c = compare(results_frame().drop(columns="run"))
    # Round 1 vs reinit: both sides sd 0.01, n 3: se = 0.01 sqrt(2/3), t = 0.13 / se, Welch df = 4.
    t = 0.13 / (0.01 * math.sqrt(2 / 3))
    cdf_df4 = 0.5 + 0.375 * (t / math.sqrt(1 + t * t / 4)) * (1 - t * t / (12 * (1 + t * t / 4)))
    assert row(c, round=1, control="reinit")["p_welch"] == pytest.approx(2 * (1 - cdf_df4), rel=1e-3)
    # Round 1 vs random_prune: one side constant (0.91 x 3) is still a Welch test.
    assert 0 < row(c, round=1, control="random_prune")["p_welch"] < 0.05


def test_welch_by_hand_with_unequal_variances():
    # [1, 3] vs [0, 0]: se^2 = 2/2 + 0 = 1, t = 2, Welch df = 1 (Cauchy): p = 1 - (2/pi) atan(2).
    # Student's pooled test would give df = 2 and p = 1 - 2/sqrt(6) = 0.18.
    assert welch_test([1.0, 3.0], [0.0, 0.0]) == pytest.approx(1 - 2 / math.pi * math.atan(2))
    assert math.isnan(welch_test([1.0, 3.0], [0.5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one constant side is a valid test, not a warning for the user
        assert welch_test([0.91] * 3, [0.93, 0.94, 0.95]) < 0.05


def test_verdict_thresholds():
    assert verdict({"n": 3, "diff": 0.1, "p": 0.01}, 0.05) == "not significant"  # p = alpha is not below alpha
    assert verdict({"n": 3, "diff": 0.1, "p": 0.01}, 0.049) == "ticket better"
    assert verdict({"n": 3, "diff": -0.1, "p": 0.01}, 0.049) == "worse"
    assert verdict(paired_test([0.9, 0.8], [0.9, 0.8]), math.nan) == "same"  # two identical pairs
    assert verdict(paired_test([0.9], [0.9]), math.nan) == "n/a"  # one pair proves nothing


def test_compare_options_and_families():
    frame = results_frame()
    strict = compare(frame, alpha=0.01)
    half = 9.924843 * 0.01 / math.sqrt(3)  # t(0.995, 2): the interval follows alpha
    assert row(strict, round=1, control="reinit")["diff_ci_low"] == pytest.approx(0.13 - half, abs=1e-6)
    # Holm's family is one control in one run: another run beside it changes nothing.
    both = compare(pd.concat([frame, results_frame("r2")], ignore_index=True))
    alone = compare(frame)
    assert list(both.loc[both["run"] == "r1", "p_paired_holm"]) == pytest.approx(list(alone["p_paired_holm"]),
                                                                                  nan_ok=True)
    # A round without a ticket (every seed's diverged, say) is skipped; later rounds are compared.
    gap = compare(frame[~((frame["round"] == 1) & (frame["variant"] == "ticket"))])
    assert sorted(set(gap["round"])) == [2, 3, 4]


def test_csv_numbers_keep_full_precision():
    from io import StringIO

    from scipy import stats

    c = compare(results_frame().drop(columns="run"))
    back = pd.read_csv(StringIO(c.to_csv(index=False)))  # what comparison.csv gives a reader
    ticket, control = np.array([0.95, 0.96, 0.97]), np.array([0.91, 0.93, 0.95])
    assert row(back, round=2, control="random_prune")["diff"] == np.mean(ticket - control)  # float noise and all
    p = row(back, round=1, control="reinit")["p_paired"]
    assert p == stats.ttest_rel([0.93, 0.94, 0.95], [0.80, 0.82, 0.81]).pvalue and p != float(f"{p:.4g}")


def test_identical_groups_of_unequal_size_are_not_different():
    ticket = [(0.098, 100, 0.098)] * 7
    frame = results_frame(run={(0, "ticket", 1.0): ticket, (1, "ticket", 0.5): ticket,
                               (1, "reinit", 0.5): ticket[:5]})
    c = compare(frame)
    (r,) = c.itertuples()
    assert (r.n_ticket, r.n_control, r.n_pairs) == (7, 5, 5)
    assert r.verdict == "same" and math.isnan(r.p_paired) and math.isnan(r.p_welch)
    # What the guard prevents: float noise in the variance makes scipy call these groups different.
    from scipy import stats
    with pytest.warns(RuntimeWarning, match="Precision loss"):
        assert stats.ttest_ind([0.098] * 7, [0.098] * 5, equal_var=False).pvalue < 0.05
    assert math.isnan(welch_test([0.098] * 7, [0.098] * 5))


def test_degenerate_paired_differences_get_no_p_value():
    # The same nonzero difference on every seed: t would divide by rounding error (scipy: p ~ 0).
    same_shift = paired_test([0.80, 0.82, 0.84], [0.79, 0.81, 0.83])
    assert math.isnan(same_shift["p"]) and same_shift["diff"] == pytest.approx(0.01) and same_shift["n"] == 3
    assert math.isnan(paired_test([0.9], [0.8])["p"])  # one pair
    assert paired_test([0.9, math.nan, 0.7], [0.8, 0.6, math.nan])["n"] == 1  # pairs with a NaN are dropped
    frame = results_frame(run={(1, "ticket", 0.5): [(0.80, 1, 0.8), (0.82, 1, 0.8), (0.84, 1, 0.8)],
                               (1, "reinit", 0.5): [(0.79, 1, 0.8), (0.81, 1, 0.8), (0.83, 1, 0.8)]})
    (r,) = compare(frame).itertuples()
    assert r.verdict == "n/a" and math.isnan(r.p_paired_holm) and r.diff == pytest.approx(0.01)


def test_controls_pair_with_the_ticket_of_the_same_seed():
    frame = results_frame(run={(1, "ticket", 0.5): [(0.90, 1, 0.9), (0.80, 1, 0.8), (0.70, 1, 0.7)],
                               (1, "reinit", 0.5): [(0.50, 1, 0.5), (0.79, 1, 0.8), (0.67, 1, 0.7)]})
    frame = frame[~((frame["variant"] == "reinit") & (frame["seed"] == 0))]  # reinit has seeds 1 and 2 only
    (r,) = compare(frame).itertuples()
    assert (r.n_ticket, r.n_control, r.n_pairs) == (3, 2, 2)
    assert r.diff == pytest.approx((0.01 + 0.03) / 2)  # seeds 1 and 2: 0.80 - 0.79, 0.70 - 0.67
    assert r.ticket_mean == pytest.approx(0.80)  # over all of the ticket's seeds


def test_real_three_seed_run_matches_direct_scipy_calls(tmp_path):
    from conftest import prune_tiny
    from scipy import stats

    run = prune_tiny(tmp_path, "three", "--seeds", "0,1,2", "--rounds", "2", "--controls", "reinit")
    results = pd.read_csv(run / "results.csv")
    comparison = pd.read_csv(run / "report" / "comparison.csv")
    assert len(comparison) == 2  # rounds 1 and 2 against reinit
    checked = 0
    for c in comparison.itertuples():
        def side(variant):
            rows = results[(results["round"] == c.round) & (results["variant"] == variant)]
            return rows.set_index("seed")["test_acc_at_early_stop"].sort_index()
        ticket, control = side("ticket"), side(c.control)
        assert list(ticket.index) == list(control.index) == [0, 1, 2]
        differences = ticket - control
        if np.ptp(differences) > 1e-9:
            expected = stats.ttest_rel(ticket, control)
            assert c.p_paired == pytest.approx(expected.pvalue, rel=5e-4)
            assert c.t_paired == pytest.approx(expected.statistic, rel=5e-4)
            checked += 1
        else:
            assert math.isnan(c.p_paired)
        assert c.diff == pytest.approx(differences.mean(), abs=1e-6)
        if ticket.nunique() > 1 or control.nunique() > 1:
            assert c.p_welch == pytest.approx(stats.ttest_ind(ticket, control, equal_var=False).pvalue, rel=5e-4)
    assert checked >= 2
    for control, rows in comparison.groupby("control"):
        assert list(rows["p_paired_holm"]) == pytest.approx(holm(rows["p_paired"]), rel=1e-3, nan_ok=True)


def test_down_to_names_the_end_of_the_unbroken_run_not_a_round_past_a_gap(tmp_path):
    text = (write_report([make_run(tmp_path)]) / "report.md").read_text()
    # reinit: better at 50% and 20%, not significant at 8%, better again at 3.5%
    assert ("Tickets beat reinit down to 20% weights remaining: significantly better in every round from 50% "
            "to 20% (2 of 4 tested rounds).") in text
    assert "down to 3.5%" not in text
    assert "tickets are also significantly better than reinit at 3.5% weights remaining" in text


def test_down_to_reaches_the_sparsest_round_when_every_round_is_significant(tmp_path):
    frame = results_frame()
    third = (frame["round"] == 3) & (frame["variant"] == "reinit")
    frame.loc[third, "test_acc_at_early_stop"] = [0.50, 0.51, 0.51]  # differences 0.10, 0.09, 0.11
    text = (write_report([make_run(tmp_path, frame=frame)]) / "report.md").read_text()
    assert ("Tickets beat reinit down to 3.5% weights remaining: significantly better in every round from 50% "
            "to 3.5% (4 of 4 tested rounds).") in text
    assert "also significantly better than reinit" not in text


def test_down_to_lists_rounds_when_the_densest_round_is_not_significant(tmp_path):
    frame = results_frame()
    first = (frame["round"] == 1) & (frame["variant"] == "reinit")
    frame.loc[first, "test_acc_at_early_stop"] = [0.93, 0.95, 0.94]  # differences 0, -0.01, 0.01
    text = (write_report([make_run(tmp_path, frame=frame)]) / "report.md").read_text()
    assert "Tickets are significantly better than reinit only at 20%, 3.5% weights remaining" in text
    assert "Tickets beat reinit" not in text


def test_diverged_networks_are_listed_and_left_out_of_every_statistic(tmp_path):
    frame = results_frame().assign(status="ok")
    # seed 2's round-2 ticket diverged: its accuracy would drag the mean and break the pairing
    broken = (frame["seed"] == 2) & (frame["round"] == 2) & (frame["variant"] == "ticket")
    frame.loc[broken, ["test_acc_at_early_stop", "status"]] = [0.098, "diverged"]
    out = write_report([make_run(tmp_path, frame=frame)])
    summary, comparison = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "comparison.csv")
    ticket = row(summary, round=2, variant="ticket")
    assert ticket["n_seeds"] == 2 and ticket["test_acc_at_early_stop_mean"] == pytest.approx(0.955)
    reinit = row(comparison, round=2, control="reinit")
    assert (reinit["n_ticket"], reinit["n_pairs"]) == (2, 2) and reinit["diff"] == pytest.approx(0.245)
    assert row(summary, round=1, variant="ticket")["n_seeds"] == 3
    text = (out / "report.md").read_text()
    assert "## Diverged networks" in text
    assert "- seed 2, round 2 (20% weights remaining), ticket" in text


def test_a_run_whose_networks_all_diverged_still_gets_a_report(tmp_path):
    frame = results_frame().assign(status="diverged")
    out = write_report([make_run(tmp_path, frame=frame[frame["round"] <= 1])])
    assert list(pd.read_csv(out / "summary.csv").columns[:4]) == ["round", "variant", "weights_remaining", "n_seeds"]
    assert "12 networks diverged" in (out / "report.md").read_text()


def test_rows_without_a_status_count_as_ok(tmp_path):
    frame = results_frame().assign(status="")
    frame.loc[frame["round"] == 1, "status"] = "ok"
    run = make_run(tmp_path, frame=frame)
    assert set(load_results(run)["status"]) == {"ok"}
    out = write_report([run])
    assert "Diverged" not in (out / "report.md").read_text()
    assert len(pd.read_csv(out / "summary.csv")) == len(RUN)


def test_labels_from_differing_config_keys(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", criterion="large_final", rewind="500")
    assert run_labels([a, b]) == ["criterion=magnitude, rewind=0", "criterion=large_final, rewind=500"]
    same = make_run(tmp_path, "same")
    assert run_labels([a, same]) == ["a", "same"]  # only the ignored name differs
    assert run_labels([a]) == ["a"]


def test_labels_leave_out_the_sections_a_run_does_not_read(tmp_path):
    """An IMP run's config.yaml carries sparse-train's defaults; they must not label it."""
    runs = []
    for name, verb, sparse in (("imp", "prune", {"methods": ["rigl"], "density": 0.1}),
                               ("rigl", "sparse-train", {"methods": ["static", "set"], "density": 0.05})):
        run = make_run(tmp_path, name)
        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**config, "sparse": sparse}))
        (run / "run.json").write_text(json.dumps({"name": name, "verb": verb}))
        runs.append(run)
    assert run_labels(runs) == ["verb=prune", "verb=sparse-train, density=0.05, methods=static,set"]


def test_report_over_several_runs_labels_rows(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", rewind="500")
    out = write_report([a, b], tmp_path / "both")
    summary = pd.read_csv(out / "summary.csv")
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(summary["run"]) == set(comparison["run"]) == {"rewind=0", "rewind=500"}
    assert len(summary) == 2 * len(RUN) and len(comparison) == 2 * 8
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
    assert len(pd.read_csv(out / "comparison.csv")) == 8
    for name in ("accuracy.png", "early_stop.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 10_000
        image = imread(out / name)
        assert image.shape[0] > 300 and image[..., :3].std() > 0.05  # not a blank canvas
    assert not list(out.glob(".*.tmp"))
    text = (out / "report.md").read_text()
    for statement in ("two-sided paired t-test", "Holm's step-down correction", "alpha = 0.05"):
        assert statement in text
    for name in ("accuracy.png", "early_stop.png", "learning_curves.png"):
        assert f"]({name})" in text
    assert "The dense network reaches 92.00% test accuracy" in text
    assert "highest at 20% weights remaining (round 2): 96.00%, +4.00 percentage points over the dense" in text
    assert "Tickets are not significantly better than random_prune in any of 3 tested rounds" in text
    assert "random_prune is significantly better than the ticket at 8% weights remaining" in text
    assert "random_prune and the ticket score the same on every seed at 3.5% weights remaining" in text
    assert "| 1 | 50% | 94.00% ± 2.48 | 81.00% ± 2.48 (ticket better) | 91.00% ± 0.00 (not significant) |" in text
    # Rounds 3 and 4 (means 0.61, 0.82) are below the dense CI (0.92 - 0.0497); round 2 is the sparsest match.
    assert "At 20% weights remaining (round 2), the sparsest round" in text
    assert "iteration 700 versus 1,100 for the dense network (36% sooner)" in text
    # reinit early-stops at 1000, 900, 1500, 1200 vs the ticket's 900, 700, 1600, 1500:
    # ratios 1.11, 1.29, 0.94, 0.80, median (0.94 + 1.11) / 2
    assert "Tickets early-stop sooner than reinit in 2 of 4 rounds (median ratio of early-stop iterations " \
           "reinit/ticket: 1.02x)" in text


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
