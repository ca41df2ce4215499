"""Tickets of several runs side by side: each run's tickets against the first run's, round by round.

Runs that differ in how tickets are found or trained (``prune.retrain``, ``prune.structure``,
a transfer against tickets found on the target itself) are compared where their rounds meet:
the same round of the same seed, a paired t-test over the seeds both have, Holm's correction
over the rounds of each pair of runs. ``weights_a`` and ``weights_b`` give each side's weights
remaining, so rounds that do not prune alike are visible as such.
"""
from __future__ import annotations

import pandas as pd

from tickets.report.statistics import BETTER, METRIC, TICKET, WORSE, holm, paired_test, verdict

WORDS = {BETTER: "first run better", WORSE: "first run worse"}

COLUMNS = ["run_a", "run_b", "round", "weights_a", "weights_b", "n_seeds", "mean_a", "mean_b", "diff",
           "ci_low", "ci_high", "p_paired", "p_holm", "verdict"]


def compare_runs(results: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Per round, ``run_b``'s tickets against ``run_a``'s (the first run): ``diff`` is a − b."""
    tickets = results[results["variant"] == TICKET]
    runs = list(dict.fromkeys(tickets["run"]))
    rows = []
    for other in runs[1:]:
        pair_rows = []
        for round_ in sorted(set(tickets["round"])):
            a = tickets[(tickets["run"] == runs[0]) & (tickets["round"] == round_)].set_index("seed")
            b = tickets[(tickets["run"] == other) & (tickets["round"] == round_)].set_index("seed")
            seeds = sorted(set(a.index) & set(b.index))
            if not seeds:
                continue
            test = paired_test(a.loc[seeds, metric], b.loc[seeds, metric])
            pair_rows.append({"run_a": runs[0], "run_b": other, "round": int(round_),
                              "weights_a": float(a["weights_remaining"].mean()),
                              "weights_b": float(b["weights_remaining"].mean()), "n_seeds": len(seeds),
                              "mean_a": float(a.loc[seeds, metric].mean()),
                              "mean_b": float(b.loc[seeds, metric].mean()),
                              "diff": test["diff"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
                              "p_paired": test["p"], "_test": test})
        for row, adjusted in zip(pair_rows, holm(r["p_paired"] for r in pair_rows)):
            row["p_holm"] = adjusted
            said = verdict(row.pop("_test"), adjusted)
            row["verdict"] = WORDS.get(said, said)
        rows += pair_rows
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown_section(table: pd.DataFrame) -> list[str]:
    """The report's "Tickets across runs" section (empty for one run)."""
    if table.empty:
        return []
    lines = ["## Tickets across runs", "",
             "Each run's tickets against the first run's, same seed and round (`runs.csv`): the mean test accuracy "
             "at early stop of each, the paired difference first − other with its 95% CI, and the verdict of a "
             "paired t-test with Holm's correction over the rounds.", ""]
    for (a, b), rows in table.groupby(["run_a", "run_b"], sort=False):
        lines += [f"### `{a}` against `{b}`", "",
                  "| round | weights remaining | first | other | difference (points) | verdict |",
                  "|---:|---:|---:|---:|---:|---|"]
        for r in rows.itertuples():
            weights = f"{100 * r.weights_a:.1f}%" if abs(r.weights_a - r.weights_b) < 1e-6 else \
                f"{100 * r.weights_a:.1f}% / {100 * r.weights_b:.1f}%"
            ci = "" if pd.isna(r.ci_low) else f" ({100 * r.ci_low:+.2f} to {100 * r.ci_high:+.2f})"
            lines.append(f"| {r.round} | {weights} | {100 * r.mean_a:.2f}% | {100 * r.mean_b:.2f}% "
                         f"| {100 * r.diff:+.2f}{ci} | {r.verdict} |")
        lines.append("")
    return lines
