"""report.md: findings sentences computed from the tables, the method, diverged networks, the table."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from tickets.report.statistics import (
    ALPHA,
    BETTER,
    MAX_SEEDS,
    MAX_WEIGHTS_REMAINING,
    METRIC,
    NOT_SIGNIFICANT,
    NOT_TESTED,
    POWER,
    SAME,
    TICKET,
    WORSE,
    runs_of,
    significant_run,
)
from tickets.report.text import acc, pct


def _listed(weights) -> str:
    return ", ".join(pct(w) for w in weights)


def _points(difference: float, sign: bool = False) -> str:
    """A difference of accuracies in percentage points: 0.01953 -> '1.95' (or '+1.95')."""
    return f"{100 * difference:{'+' if sign else ''}.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}"


def _seed_count(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _power_sentence(r: pd.Series, n_controls: int) -> str:
    """How many seeds a study would need to detect the observed mean difference (a test that did not reject)."""
    how = f"with {POWER:.0%} power (two-sided alpha {ALPHA}, one-sample t-test on per-seed means)"
    given = f"given the observed standard deviation of the per-seed means ({_points(r['sd'])} points)"
    if r["mean_diff"] == 0:
        return f"The observed mean difference is 0, so no number of seeds would detect it {how}."
    n = r["seeds_for_power"]
    detect = f"Detecting a mean difference of {_points(r['mean_diff'], sign=True)} points {how}"
    if math.isnan(n):
        return f"{detect} would take more than {MAX_SEEDS:,} seeds, {given}."
    n, have = int(n), int(r["n_seeds"])
    tail = (f"this report has {have}" if n > have else
            f"this report has {have}, and the test misses only after Holm's adjustment across the "
            f"{n_controls} controls")
    return f"{detect} would take {n:,} seeds, {given}; {tail}."


def study_findings(rows: pd.DataFrame) -> list[str]:
    """One sentence per control about the study-level test of one run (its rows of study.csv)."""
    out = []
    for _, r in rows.iterrows():
        c, regime = r["control"], f"At or below {pct(r['max_weights_remaining'])} weights remaining"
        if r["pairs"] == 0:
            out.append(f"No round with both a ticket and {c} has {pct(r['max_weights_remaining'])} weights remaining "
                       f"or fewer, so the study-level test has nothing to pool: train more rounds, or raise the "
                       f"threshold (`report.max_weights_remaining`).")
            continue
        rounds = (f" ({r['n_rounds']} round{'s' if r['n_rounds'] != 1 else ''}, the sparsest at "
                  f"{pct(r['min_weights_remaining'])})")
        ahead = f"ticket ahead on {r['pairs_ahead']} of {r['pairs']} seed-rounds"
        verdict, seeds = r["verdict"], _seed_count(int(r["n_seeds"]))
        if verdict == SAME:
            out.append(f"{regime}{rounds}, tickets and {c} score the same on every seed-round ({r['pairs']} pairs, "
                       f"{seeds}): nothing to test.")
            continue
        if verdict == NOT_TESTED:
            why = ("the study-level test needs at least 2 seeds, and with one there is no spread of per-seed means "
                   "to say how many seeds a test would need" if r["n_seeds"] < 2 else
                   "every seed shows the same mean difference, so the t-test is undefined, and with a standard "
                   "deviation of 0 across seeds no seed count for a test can be derived")
            out.append(f"{regime}{rounds}, the ticket minus {c} is {_points(r['mean_diff'], sign=True)} points "
                       f"({seeds}; {ahead}), not tested: {why}.")
            continue
        stats_text = (f"95% CI of ticket − {c} {_points(r['ci_low'], sign=True)} to "
                      f"{_points(r['ci_high'], sign=True)} points, p = {_p(r['p'])}, Holm {_p(r['p_holm'])}, {seeds}; "
                      f"{ahead}")
        if verdict == BETTER:
            out.append(f"{regime}{rounds}, tickets beat {c} by {_points(r['mean_diff'])} points ({stats_text}).")
        elif verdict == WORSE:
            out.append(f"{regime}{rounds}, {c} beats tickets by {_points(-r['mean_diff'])} points ({stats_text}).")
        else:
            out.append(f"{regime}{rounds}, tickets and {c} differ by {_points(r['mean_diff'], sign=True)} points, "
                       f"{NOT_SIGNIFICANT} ({stats_text}). {_power_sentence(r, len(rows))}")
    return out


def _control_findings(rows: pd.DataFrame, control: str) -> list[str]:
    """Sentences about the ticket against one control, from that control's comparison rows."""
    tested = rows[~rows["verdict"].isin([NOT_TESTED, SAME])]  # the rounds with a p-value
    if rows["verdict"].eq(NOT_TESTED).all():
        return [f"No round could be tested against {control}: the paired t-test needs at least 2 seeds that have "
                f"both networks, with differences that vary."]
    out = []
    run, later = significant_run(rows)
    of = f"of {len(tested)} tested round{'s' if len(tested) != 1 else ''}"
    if len(run):
        start, end = run["weights_remaining"].iloc[0], run["weights_remaining"].iloc[-1]
        span = (f"in every round from {pct(start)} to {pct(end)}" if len(run) > 1
                else f"in the densest round, {pct(start)}")
        out.append(f"Tickets beat {control} down to {pct(end)} weights remaining: significantly better {span} "
                   f"({len(run)} {of}).")
        if len(later):
            out.append(f"Past the first round without a significant difference, tickets are also significantly "
                       f"better than {control} at {_listed(later['weights_remaining'])} weights remaining.")
    elif len(later):
        out.append(f"Tickets are significantly better than {control} only at {_listed(later['weights_remaining'])} "
                   f"weights remaining ({len(later)} {of}), not from the densest round on.")
    else:
        out.append(f"Tickets are not significantly better than {control} in any {of}.")
    worse = rows[rows["verdict"] == WORSE]
    if len(worse):
        out.append(f"{control} is significantly better than the ticket at {_listed(worse['weights_remaining'])} "
                   f"weights remaining.")
    same = rows[rows["verdict"] == SAME]
    if len(same):
        out.append(f"{control} and the ticket score the same on every seed at {_listed(same['weights_remaining'])} "
                   f"weights remaining.")
    untested = rows[rows["verdict"] == NOT_TESTED]
    if len(untested):
        out.append(f"Not tested against {control} at {_listed(untested['weights_remaining'])} weights remaining "
                   f"(fewer than 2 paired seeds, or the same difference on every seed).")
    return out


def _early_stop_vs(s: pd.DataFrame, control: str) -> list[str]:
    """How much sooner the ticket reaches minimum validation loss than ``control``, round by round."""
    it = "early_stop_iter_mean"
    both = s[s["variant"] == TICKET].merge(s[s["variant"] == control], on="round", suffixes=("", "_c"))
    both = both[(both[it] > 0) & both[f"{it}_c"].notna()]
    if both.empty:
        return []
    sooner = both[both[it] < both[f"{it}_c"]]
    ratio = (both[f"{it}_c"] / both[it]).median()
    return [f"Tickets early-stop sooner than {control} in {len(sooner)} of {len(both)} rounds "
            f"(median ratio of early-stop iterations {control}/ticket: {ratio:.2f}x)."]


def findings(s: pd.DataFrame, c: pd.DataFrame, study: pd.DataFrame | None = None) -> list[str]:
    """Sentences about one run, computed from its summary ``s``, comparison ``c`` and study rows
    (the study-level test of each control comes first)."""
    out = study_findings(study) if study is not None else []
    dense = s[(s["round"] == 0) & (s["variant"] == TICKET)]
    dense = dense.iloc[0] if len(dense) else None
    tickets = s[(s["variant"] == TICKET) & (s["round"] > 0)].dropna(subset=[f"{METRIC}_mean"])
    if dense is not None:
        ci = (f" (95% CI {acc(dense[f'{METRIC}_ci_low'])}–{acc(dense[f'{METRIC}_ci_high'])}, {dense['n_seeds']} seeds)"
              if not math.isnan(dense[f"{METRIC}_ci_low"]) else f" ({dense['n_seeds']} seed)")
        out.append(f"The dense network reaches {acc(dense[f'{METRIC}_mean'])} test accuracy at early stop{ci} "
                   f"and early-stops at iteration {dense['early_stop_iter_mean']:,.0f}.")
    if len(tickets):
        best = tickets.loc[tickets[f"{METRIC}_mean"].idxmax()]
        gain = (f", {100 * (best[f'{METRIC}_mean'] - dense[f'{METRIC}_mean']):+.2f} percentage points over the "
                f"dense network" if dense is not None else "")
        out.append(f"The ticket's accuracy is highest at {pct(best['weights_remaining'])} weights remaining "
                   f"(round {best['round']}): {acc(best[f'{METRIC}_mean'])}{gain}.")
    ticket_rounds = set(s.loc[s["variant"] == TICKET, "round"])
    for _, lone in s[(s["variant"] != TICKET) & ~s["round"].isin(ticket_rounds)].iterrows():
        out.append(f"{lone['variant']} reaches {acc(lone[f'{METRIC}_mean'])} test accuracy at early stop "
                   f"(final {acc(lone['final_test_acc_mean'])}) with {pct(lone['weights_remaining'])} "
                   f"weights remaining ({lone['n_seeds']} seed{'s' if lone['n_seeds'] != 1 else ''}).")
    for control in c["control"].unique():
        out.extend(_control_findings(c[c["control"] == control], control))
        out.extend(_early_stop_vs(s, control))
    if dense is not None and len(tickets):
        has_ci = not math.isnan(dense[f"{METRIC}_ci_low"])
        floor = dense[f"{METRIC}_ci_low"] if has_ci else dense[f"{METRIC}_mean"]
        rule = "mean at least the dense CI's lower bound" if has_ci else "mean at least the dense mean"
        matching = tickets[tickets[f"{METRIC}_mean"] >= floor]
        if matching.empty:
            out.append(f"No pruned ticket matches the dense network's accuracy ({rule}).")
        else:
            m = matching.loc[matching["weights_remaining"].idxmin()]
            it, dense_it = m["early_stop_iter_mean"], dense["early_stop_iter_mean"]
            change = 1 - it / dense_it
            how = f"{abs(change):.0%} {'sooner' if change >= 0 else 'later'}"
            out.append(f"At {pct(m['weights_remaining'])} weights remaining (round {m['round']}), the sparsest round "
                       f"whose ticket matches the dense network's accuracy ({rule}), "
                       f"the ticket early-stops at iteration {it:,.0f} versus {dense_it:,.0f} for the dense network "
                       f"({how}).")
    return out


def _table(s: pd.DataFrame, c: pd.DataFrame) -> list[str]:
    """A markdown table: per round, ticket accuracy ± CI half-width and each control with its verdict."""
    controls = list(c["control"].unique())
    lines = ["| " + " | ".join(["round", "weights remaining", TICKET] + controls) + " |",
             "|" + "---:|" * (3 + len(controls))]
    for rnd in sorted(s["round"].unique()):
        cells = []
        for variant in [TICKET] + controls:
            row = s[(s["round"] == rnd) & (s["variant"] == variant)]
            if row.empty:
                cells.append("")
                continue
            row = row.iloc[0]
            half = row[f"{METRIC}_ci_high"] - row[f"{METRIC}_mean"]
            cell = acc(row[f"{METRIC}_mean"]) + ("" if math.isnan(half) else f" ± {100 * half:.2f}")
            verdict = c[(c["round"] == rnd) & (c["control"] == variant)]["verdict"]
            cells.append(cell + (f" ({verdict.iloc[0]})" if len(verdict) else ""))
        weights = s[s["round"] == rnd]["weights_remaining"].iloc[0]
        lines.append(f"| {rnd} | {pct(weights)} | " + " | ".join(cells) + " |")
    return lines


def method(max_weights_remaining: float) -> str:
    """The Method section's text."""
    return (
        f"Accuracies are test accuracy at the early-stop iteration (minimum validation loss), as mean over seeds "
        f"with a 95% confidence interval mean ± t(0.975, n−1)·s/√n. Each control is compared with the ticket of "
        f"the same round and the same seed (same data order and, for most controls, the same mask).\n\n"
        f"**Study-level test** (the first findings, `study.csv`): for each seed, the mean paired difference "
        f"(ticket − control) over the rounds whose ticket has at most **{pct(max_weights_remaining)}** weights "
        f"remaining (`max_weights_remaining`, config key `report.max_weights_remaining`); a **two-sided "
        f"one-sample t-test** of those per-seed means against 0 (`scipy.stats.ttest_1samp`; `p`), its 95% "
        f"confidence interval from the t distribution, and **Holm's step-down correction** across the controls "
        f"of a run (`p_holm`). `pairs_ahead` of `pairs` counts the seed-rounds where the ticket scores higher. "
        f"`seeds_for_power` is the fewest seeds at which such a test (two-sided alpha {ALPHA}) has "
        f"{POWER:.0%} power for the observed mean difference, given the observed standard deviation of the "
        f"per-seed means (power from the noncentral t distribution).\n\n"
        f"**Per round** (`comparison.csv`): a **two-sided paired t-test** over the seeds that have both networks "
        f"(`scipy.stats.ttest_rel`; `p_paired`). The p-values of one control's rounds are adjusted for multiple "
        f"comparisons with **Holm's step-down correction** (`p_paired_holm`). With few seeds each round's test has "
        f"few degrees of freedom, which is why the study-level test pools the sparse rounds.\n\n"
        f"Verdicts (both tables) are *{BETTER}* or *{WORSE}* (by the sign of the mean difference) when the "
        f"adjusted p-value is below **alpha = {ALPHA}**, *{NOT_SIGNIFICANT}* otherwise (not rejecting is not "
        f"evidence of equality). Degenerate cases get no p-value: *{SAME}* when every pair scores the same, "
        f"*{NOT_TESTED}* with fewer than 2 paired seeds or when every seed shows the same nonzero difference (the "
        f"t statistic would divide by rounding error); they are left out of the Holm family. `diff` is the mean "
        f"paired difference with its 95% paired confidence interval (per round, not adjusted: it can exclude 0 "
        f"where the adjusted test does not reject). `p_welch` is Welch's unpaired t-test over all seeds of each "
        f"side, for reference (none when both sides are constant). Networks whose training diverged are left out "
        f"of every statistic. All numbers, at full precision, are in `summary.csv`, `comparison.csv` and "
        f"`study.csv`."
    )


def _diverged_section(diverged: pd.DataFrame) -> list[str]:
    lines = ["## Diverged networks", "",
             f"{len(diverged)} network{'s' if len(diverged) != 1 else ''} diverged (non-finite training loss) and "
             f"{'are' if len(diverged) != 1 else 'is'} left out of every statistic and plot above:", ""]
    for _, r in diverged.iterrows():
        where = f"`{r['run']}`: " if "run" in diverged.columns else ""
        lines.append(f"- {where}seed {r['seed']}, round {r['round']} ({pct(r['weights_remaining'])} weights "
                     f"remaining), {r['variant']}")
    return lines + [""]


def markdown(labels: list[str], run_dirs: list[Path], summary: pd.DataFrame, comparison: pd.DataFrame,
             diverged: pd.DataFrame, plots: list[tuple[str, str]], study: pd.DataFrame | None = None,
             max_weights_remaining: float = MAX_WEIGHTS_REMAINING) -> str:
    """The text of report.md (``study``: the rows of study.csv, whose findings come first)."""
    many = len(labels) > 1
    lines = [f"# Lottery-ticket report: {', '.join(labels) if not many else f'{len(labels)} runs'}", ""]
    lines += [f"- `{label}`: `{d}`" for label, d in zip(labels, run_dirs)] + [""]
    lines += ["## Findings", ""]
    comparisons = dict((k.get("run"), g) for k, g in runs_of(comparison))
    studies = dict((k.get("run"), g) for k, g in runs_of(study)) if study is not None else {}
    for run_key, s in runs_of(summary):
        if many:
            lines += [f"### {run_key['run']}", ""]
        c = comparisons.get(run_key.get("run"), comparison.iloc[0:0])
        lines += [f"- {sentence}" for sentence in findings(s, c, studies.get(run_key.get("run")))] + [""]
    tickets = summary[summary["variant"] == TICKET].dropna(subset=[f"{METRIC}_mean"])
    if many and len(tickets):
        best = tickets.loc[tickets[f"{METRIC}_mean"].idxmax()]
        lines += [f"Across runs, the ticket's accuracy is highest in `{best['run']}`: "
                  f"{acc(best[f'{METRIC}_mean'])} at {pct(best['weights_remaining'])} weights remaining.", ""]
    if len(diverged):
        lines += _diverged_section(diverged)
    lines += ["## Method", "", method(max_weights_remaining), ""]
    lines += ["## Plots", ""] + [f"![{title}]({name})\n" for name, title in plots]
    lines += ["## Test accuracy at early stop by round", "",
              "Mean over seeds ± the 95% CI half-width in percentage points; each control with its verdict.", ""]
    for run_key, s in runs_of(summary):
        if many:
            lines += [f"### {run_key['run']}", ""]
        lines += _table(s, comparisons.get(run_key.get("run"), comparison.iloc[0:0])) + [""]
    return "\n".join(lines)
