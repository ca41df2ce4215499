"""The study-level test: one answer per control from the sparse rounds of every seed.

Each test builds a results.csv by hand and checks what the report wrote against numbers computed
here, straight from the rows with numpy and scipy (never with tickets' own helpers): per seed, the
mean of ticket - control over the rounds whose *ticket* has at most the threshold of weights
remaining; a one-sample t-test of those means; Holm across the controls; the seed count for 80%
power from the noncentral t distribution, searched upward one seed at a time.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from tickets import config as config_mod
from tickets.errors import TicketsError
from tickets.report import study, write_report

COLUMNS = ["run", "seed", "round", "variant", "criterion", "weights_remaining", "params_remaining", "acc_at_init",
           "best_val_loss", "early_stop_iter", "test_acc_at_early_stop", "final_test_acc", "final_test_loss",
           "iterations", "train_seconds", "status"]
METRIC = "test_acc_at_early_stop"
WEIGHTS = {0: 1.0, 1: 0.8, 2: 0.5, 3: 0.3, 4: 0.215, 5: 0.1, 6: 0.05}  # round 4 sits exactly on the threshold
TICKET = {  # per seed 0, 1, 2: the ticket's accuracy by round
    0: [0.950, 0.951, 0.953, 0.948, 0.946, 0.944, 0.936],
    1: [0.947, 0.949, 0.952, 0.950, 0.945, 0.941, 0.938],
    2: [0.945, 0.948, 0.950, 0.951, 0.949, 0.943, 0.940],
}
# ticket - control by seed, for rounds 1..6. reinit: the ticket is a little ahead in every sparse
# seed-round but by varying amounts, so each round's 2-dof test, Holm-adjusted over 6 rounds, misses.
# Round 3 (30%, above the threshold) has the ticket behind: counting it would change everything.
REINIT = {0: [0.004, -0.003, -0.020, 0.011, 0.024, 0.017],
          1: [0.006, 0.002, -0.030, 0.021, 0.009, 0.030],
          2: [-0.002, 0.005, -0.025, 0.016, 0.027, 0.012]}
RANDOM = {0: [0.003, 0.001, 0.020, 0.012, -0.004, 0.006],
          1: [0.002, -0.004, 0.010, -0.013, 0.002, -0.004],
          2: [0.001, 0.003, 0.030, 0.007, 0.000, 0.011]}


def results(seeds=(0, 1, 2), controls=(("reinit", REINIT), ("random_prune", RANDOM)), name="r"):
    rows = []

    def add(seed, rnd, variant, acc, weights=None, status="ok"):
        w = WEIGHTS[rnd] if weights is None else weights
        rows.append([name, seed, rnd, variant, "magnitude", w, round(266200 * w), 0.1, 0.3, 200 + 10 * rnd, acc,
                     acc - 0.001, 0.3, 400, 1.0, status])

    for seed in seeds:
        for rnd, acc in enumerate(TICKET[seed]):
            add(seed, rnd, "ticket", acc)
            for control, diffs in controls:
                if rnd:
                    # reinit's row of round 4 records other weights: the ticket's weights decide the regime
                    weights = 0.25 if (control == "reinit" and rnd == 4) else None
                    add(seed, rnd, control, round(acc - diffs[seed][rnd - 1], 6), weights)
    return pd.DataFrame(rows, columns=COLUMNS)


def make_run(tmp_path: Path, frame: pd.DataFrame, name: str = "r", report: dict | None = None, **prune) -> Path:
    run = tmp_path / name
    run.mkdir()
    config = {"name": name, "seeds": sorted(frame["seed"].unique().tolist()),
              "prune": {"rounds": 6, "rewind": "0", **prune}}
    if report is not None:
        config["report"] = report
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    frame.to_csv(run / "results.csv", index=False)
    return run


# --- the expected numbers, straight from results.csv -----------------------------------------

def per_seed_means(run: Path, control: str, threshold: float) -> dict[int, list[float]]:
    """seed -> the differences ticket - control of that seed's rounds whose ticket has <= threshold weights."""
    df = pd.read_csv(run / "results.csv")
    df = df[df["status"] != "diverged"]
    out: dict[int, list[float]] = {}
    for seed in sorted(df["seed"].unique()):
        for rnd in sorted(df["round"].unique()):
            t = df[(df["seed"] == seed) & (df["round"] == rnd) & (df["variant"] == "ticket")]
            c = df[(df["seed"] == seed) & (df["round"] == rnd) & (df["variant"] == control)]
            if len(t) and len(c) and t["weights_remaining"].iloc[0] <= threshold:
                out.setdefault(int(seed), []).append(t[METRIC].iloc[0] - c[METRIC].iloc[0])
    return out


def expected(run: Path, control: str, threshold: float = 0.215) -> dict:
    diffs = per_seed_means(run, control, threshold)
    means = np.array([np.mean(d) for d in diffs.values()])
    n = len(means)
    test = stats.ttest_1samp(means, 0)
    half = stats.t.ppf(0.975, n - 1) * means.std(ddof=1) / math.sqrt(n)
    every = [x for d in diffs.values() for x in d]
    return {"n_seeds": n, "mean_diff": means.mean(), "sd": means.std(ddof=1), "ci_low": means.mean() - half,
            "ci_high": means.mean() + half, "t": test.statistic, "p": test.pvalue,
            "pairs_ahead": sum(x > 0 for x in every), "pairs": len(every)}


def holm_of_two(p1: float, p2: float) -> tuple[float, float]:
    low, high = sorted((p1, p2))
    adjusted = {low: min(1.0, 2 * low)}
    adjusted[high] = max(adjusted[low], min(1.0, high))
    return adjusted[p1], adjusted[p2]


def seeds_needed(mean: float, sd: float) -> int:
    """Fewest seeds giving 80% power to a two-sided one-sample t-test at 0.05, one seed at a time."""
    n = 2
    while True:
        critical = stats.t.ppf(0.975, n - 1)
        nc = abs(mean) / sd * math.sqrt(n)
        if stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc) >= 0.8:
            return n
        n += 1


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report over a run with a diverged sparse ticket (seed 2, round 6), written once for the tests below."""
    tmp = tmp_path_factory.mktemp("study")
    frame = results()
    broken = (frame["seed"] == 2) & (frame["round"] == 6) & (frame["variant"] == "ticket")
    frame.loc[broken, [METRIC, "status"]] = [0.098, "diverged"]
    run = make_run(tmp, frame)
    out = write_report([run])
    return run, out


# --- tests ------------------------------------------------------------------------------------

def test_study_csv_matches_scipy_on_the_rows(report):
    run, out = report
    s = pd.read_csv(out / "study.csv")
    assert list(s.columns[:1]) == ["control"]
    for column in ("control", "max_weights_remaining", "n_seeds", "mean_diff", "ci_low", "ci_high", "p", "p_holm",
                   "verdict", "pairs_ahead", "pairs"):
        assert column in s.columns
    assert list(s["control"]) == ["reinit", "random_prune"]
    for control in ("reinit", "random_prune"):
        r = s[s["control"] == control].iloc[0]
        e = expected(run, control)
        assert r["max_weights_remaining"] == 0.215
        # rounds 4, 5, 6 for seeds 0 and 1, rounds 4 and 5 for seed 2 (its round-6 ticket diverged)
        assert (r["n_seeds"], r["pairs"], r["pairs_ahead"]) == (3, 8, e["pairs_ahead"]) and e["pairs"] == 8
        for key in ("mean_diff", "sd", "ci_low", "ci_high", "t", "p"):
            assert r[key] == pytest.approx(e[key], rel=1e-12), (control, key)
    reinit, random = (s[s["control"] == c].iloc[0] for c in ("reinit", "random_prune"))
    assert reinit["pairs_ahead"] == 8
    p_reinit, p_random = holm_of_two(expected(run, "reinit")["p"], expected(run, "random_prune")["p"])
    assert reinit["p_holm"] == pytest.approx(p_reinit, rel=1e-12)
    assert random["p_holm"] == pytest.approx(p_random, rel=1e-12)
    assert reinit["p_holm"] != reinit["p"]  # Holm was applied: 2 x the smaller p
    assert (reinit["verdict"], random["verdict"]) == ("ticket better", "not significant")


def test_the_study_answers_where_every_round_alone_misses(report):
    _, out = report
    c = pd.read_csv(out / "comparison.csv")
    reinit = c[c["control"] == "reinit"]
    assert "ticket better" not in set(reinit["verdict"])  # 6 rounds of 2-dof tests, Holm-adjusted
    assert set(reinit["verdict"]) <= {"not significant", "worse"}
    assert pd.read_csv(out / "study.csv").set_index("control").loc["reinit", "verdict"] == "ticket better"


def test_seeds_for_power_by_an_upward_search(report):
    run, out = report
    s = pd.read_csv(out / "study.csv").set_index("control")
    for control in ("reinit", "random_prune"):
        e = expected(run, control)
        assert s.loc[control, "seeds_for_power"] == seeds_needed(e["mean_diff"], e["sd"]), control
    assert s.loc["random_prune", "seeds_for_power"] > 3


def test_report_md_states_the_study_first_with_the_sign_count(report):
    run, out = report
    text = (out / "report.md").read_text()
    findings = text.split("## Findings\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    e = expected(run, "reinit")
    p_holm = holm_of_two(e["p"], expected(run, "random_prune")["p"])[0]
    first = findings[0]
    assert first.startswith("- At or below 21.5% weights remaining (3 rounds, the sparsest at 5%), tickets beat "
                            f"reinit by {100 * e['mean_diff']:.2f} points")
    assert f"p = {e['p']:.2g}, Holm {p_holm:.2g}, 3 seeds; ticket ahead on 8 of 8 seed-rounds" in first
    assert f"+{100 * e['ci_low']:.2f} to +{100 * e['ci_high']:.2f} points" in first
    assert findings[1].startswith("- At or below 21.5% weights remaining") and "random_prune" in findings[1]
    assert "The dense network reaches" in findings[2]


def test_not_significant_gets_the_seeds_a_study_would_need(report):
    run, out = report
    text = (out / "report.md").read_text()
    e = expected(run, "random_prune")
    line = next(line for line in text.splitlines() if line.startswith("- At or below") and "random_prune" in line)
    assert f"tickets and random_prune differ by {100 * e['mean_diff']:+.2f} points, not significant" in line
    n = seeds_needed(e["mean_diff"], e["sd"])
    assert (f"Detecting a mean difference of {100 * e['mean_diff']:+.2f} points with 80% power (two-sided alpha "
            f"0.05, one-sample t-test on per-seed means) would take {n:,} seeds, given the observed standard "
            f"deviation of the per-seed means ({100 * e['sd']:.2f} points); this report has 3.") in line
    reinit = next(line for line in text.splitlines() if line.startswith("- At or below") and "reinit" in line)
    assert "Detecting" not in reinit  # a test that rejected needs no seed count


def test_verdict_words_and_no_no_difference_anywhere(report):
    _, out = report
    allowed = {"ticket better", "worse", "not significant", "same", "n/a"}
    for name in ("comparison.csv", "study.csv"):
        assert set(pd.read_csv(out / name, keep_default_na=False)["verdict"]) <= allowed, name
    assert "not significant" in set(pd.read_csv(out / "comparison.csv")["verdict"])
    for name in ("summary.csv", "comparison.csv", "study.csv", "report.md"):
        assert "no difference" not in (out / name).read_text().lower(), name


def test_csvs_keep_full_precision(report):
    run, out = report
    df = pd.read_csv(run / "results.csv")
    ok = df[df["status"] == "ok"]
    summary = pd.read_csv(out / "summary.csv")
    sparse = ok[(ok["round"] == 5) & (ok["variant"] == "ticket")][METRIC]
    r = summary[(summary["round"] == 5) & (summary["variant"] == "ticket")].iloc[0]
    assert r[f"{METRIC}_mean"] == pytest.approx(sparse.mean(), rel=1e-14)
    assert r[f"{METRIC}_std"] == pytest.approx(sparse.std(ddof=1), rel=1e-14)
    c = pd.read_csv(out / "comparison.csv")
    r = c[(c["round"] == 5) & (c["control"] == "reinit")].iloc[0]
    t = ok[(ok["round"] == 5) & (ok["variant"] == "ticket")].set_index("seed")[METRIC].sort_index()
    k = ok[(ok["round"] == 5) & (ok["variant"] == "reinit")].set_index("seed")[METRIC].sort_index()
    paired = stats.ttest_rel(t, k)
    assert r["p_paired"] == pytest.approx(paired.pvalue, rel=1e-12)
    assert r["t_paired"] == pytest.approx(paired.statistic, rel=1e-12)
    assert r["diff"] == pytest.approx((t - k).mean(), rel=1e-12)
    assert r["diff_ci_low"] == pytest.approx(paired.confidence_interval().low, rel=1e-12)
    s = pd.read_csv(out / "study.csv")
    digits = max(len(v.split(".")[1]) for v in s["p"].astype(str))  # not cut to 4 significant digits
    assert digits > 8


def test_worse_and_holm_across_controls_decide_the_verdicts():
    # "better" beats the ticket on every sparse seed-round by varying margins (alone: a family of one).
    worse = {0: [0, 0, 0, -0.021, -0.018, -0.024], 1: [0, 0, 0, -0.015, -0.022, -0.019],
             2: [0, 0, 0, -0.020, -0.026, -0.017]}
    s = study(results(controls=(("better", worse),)).drop(columns="run")).set_index("control")
    means = [np.mean(d[3:]) for d in worse.values()]
    p = stats.ttest_1samp(means, 0).pvalue
    assert s.loc["better", "mean_diff"] == pytest.approx(np.mean(means), rel=1e-9) and np.mean(means) < 0
    assert s.loc["better", "p_holm"] == pytest.approx(p, rel=1e-9) and p < 0.05
    assert s.loc["better", "verdict"] == "worse" and s.loc["better", "pairs_ahead"] == 0
    # "close" has raw p < 0.05, the smaller of two: Holm doubles it past 0.05.
    close = {0: [0, 0, 0, 0.004, 0.010, 0.007], 1: [0, 0, 0, 0.011, 0.002, 0.003],
             2: [0, 0, 0, 0.009, 0.008, 0.012]}
    s = study(results(controls=(("close", close), ("random_prune", RANDOM))).drop(columns="run")).set_index("control")
    p_close = stats.ttest_1samp([np.mean(d[3:]) for d in close.values()], 0).pvalue
    p_random = stats.ttest_1samp([np.mean(d[3:]) for d in RANDOM.values()], 0).pvalue
    assert p_close < 0.05 < 2 * p_close and p_close < p_random  # the point of the example
    adjusted = holm_of_two(p_close, p_random)
    assert s.loc["close", "p"] == pytest.approx(p_close, rel=1e-9)
    assert s.loc["close", "p_holm"] == pytest.approx(adjusted[0], rel=1e-9)
    assert s.loc["random_prune", "p_holm"] == pytest.approx(adjusted[1], rel=1e-9)
    assert s.loc["close", "verdict"] == "not significant" and s.loc["close", "pairs_ahead"] == 9


def test_threshold_from_the_argument_the_config_or_the_default(tmp_path):
    frame = results()
    default = make_run(tmp_path, frame, "default")
    configured = make_run(tmp_path, frame, "configured", report={"max_weights_remaining": 0.3})
    for run, threshold in ((default, 0.215), (configured, 0.3)):
        s = study(frame.drop(columns="run"), threshold).set_index("control")
        e = expected(run, "reinit", threshold)
        assert s.loc["reinit", "mean_diff"] == pytest.approx(e["mean_diff"], rel=1e-12)
        assert s.loc["reinit", "pairs"] == e["pairs"] == (9 if threshold == 0.215 else 12)
    # 0.3 takes in round 3, where the ticket is behind reinit on every seed
    assert study(frame.drop(columns="run"), 0.3).set_index("control").loc["reinit", "pairs_ahead"] == 9
    out = write_report([configured], tmp_path / "from_config")
    assert set(pd.read_csv(out / "study.csv")["max_weights_remaining"]) == {0.3}
    assert "At or below 30% weights remaining (4 rounds" in (out / "report.md").read_text()
    out = write_report([configured], tmp_path / "from_argument", max_weights_remaining=0.1)
    s = pd.read_csv(out / "study.csv").set_index("control")
    assert s.loc["reinit", "max_weights_remaining"] == 0.1 and s.loc["reinit", "pairs"] == 6
    for bad in (0, 1.5, -0.1, float("nan")):
        with pytest.raises(TicketsError, match="max_weights_remaining"):
            write_report([default], tmp_path / "bad", max_weights_remaining=bad)
    assert not (tmp_path / "bad").exists()


def test_report_config_validates_and_never_changes_the_fingerprint():
    base = config_mod.RunConfig()
    assert base.report.max_weights_remaining == 0.215
    other = config_mod.build_config(sets=["report.max_weights_remaining=0.5"])
    assert other.report.max_weights_remaining == 0.5
    assert config_mod.fingerprint(other) == config_mod.fingerprint(base)
    without = config_mod.from_dict({k: v for k, v in base.to_dict().items() if k != "report"})
    assert config_mod.fingerprint(without) == config_mod.fingerprint(base)  # runs made before the key
    for bad in ("0", "1.01", "-1"):
        with pytest.raises(TicketsError, match=r"report\.max_weights_remaining .*\(0, 1\]"):
            config_mod.build_config(sets=[f"report.max_weights_remaining={bad}"])
    assert config_mod.build_config(sets=["report.max_weights_remaining=1"]).report.max_weights_remaining == 1


def test_several_runs_get_a_run_column_and_their_own_holm_family(tmp_path):
    a = make_run(tmp_path, results(name="a"), "a")
    b = make_run(tmp_path, results(controls=(("reinit", REINIT),), name="b"), "b", rewind="500it")
    out = write_report([a, b], tmp_path / "both")
    s = pd.read_csv(out / "study.csv")
    assert list(s.columns[:2]) == ["run", "control"]
    assert list(zip(s["run"], s["control"])) == [("rewind=0", "reinit"), ("rewind=0", "random_prune"),
                                                 ("rewind=500it", "reinit")]
    alone = s[s["run"] == "rewind=500it"].iloc[0]
    assert alone["p_holm"] == pytest.approx(expected(b, "reinit")["p"], rel=1e-12)  # a family of one
    assert alone["verdict"] == "ticket better"


def test_degenerate_studies_say_why_no_seed_count(tmp_path):
    one = make_run(tmp_path, results(seeds=(0,)), "one")
    text = (write_report([one]) / "report.md").read_text()
    assert "the study-level test needs at least 2 seeds" in text and "Detecting" not in text
    assert set(pd.read_csv(one / "report" / "study.csv", keep_default_na=False)["verdict"]) == {"n/a"}
    # every seed the same mean difference (0, 0.01, 0.03 and 0, 0.02, 0.02): sd 0
    flat = {0: [0, 0, 0, 0, 0.01, 0.03], 1: [0, 0, 0, 0, 0.02, 0.02]}
    frame = results(seeds=(0, 1), controls=(("reinit", flat),))
    text = (write_report([make_run(tmp_path, frame, "flat")]) / "report.md").read_text()
    assert "standard deviation of 0 across seeds" in text
    # nothing at or below the threshold
    text = (write_report([make_run(tmp_path, results()[lambda d: d["round"] <= 3], "dense")]) / "report.md").read_text()
    assert "No round with both a ticket and reinit has 21.5% weights remaining or fewer" in text
