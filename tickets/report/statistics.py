"""Statistics over seeds, on scipy.stats: per-group summaries and the ticket-vs-control tests.

:func:`summarize` and :func:`compare` are pure functions of a results DataFrame (the columns of
results.csv, diverged networks already left out; a ``run`` column, if present, is a grouping key).

The ticket of a round and each of its controls share the seed, hence the data order and the
mask: :func:`compare` pairs them by seed and tests the mean paired difference with a two-sided
paired t-test (``scipy.stats.ttest_rel``), Holm-adjusts the p-values across the rounds of each
control (:func:`holm`), and takes the verdict from the adjusted p-value at :data:`ALPHA`.
Welch's unpaired test (``scipy.stats.ttest_ind(equal_var=False)``) is reported beside it.

With a few seeds a per-round test has few degrees of freedom and Holm over many rounds is
strict, so :func:`study` answers the paper's question once per control: each seed's mean paired
difference over the sparse rounds (ticket weights remaining at most ``max_weights_remaining``),
a one-sample t-test of those per-seed means against 0 (``scipy.stats.ttest_1samp``), Holm across
the controls of a run, the count of seed-rounds where the ticket is ahead, and
(:func:`seeds_for_power`) how many seeds a test would need to detect the observed difference.

Verdicts are ``ticket better``, ``worse`` or ``not significant`` (a test that does not reject
says nothing about equality). Degenerate data get no p-value (NaN) instead of the t-test's
answer to a division by float noise (:func:`is_constant`): identical groups of any sizes,
paired differences that are all equal, and fewer than 2 pairs. Their verdicts are ``same``
(every pair equal) or ``n/a``.

The tables keep full float precision; rounding belongs to report.md.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
from scipy import stats

TICKET = "ticket"
METRIC = "test_acc_at_early_stop"
METRICS = (METRIC, "early_stop_iter", "final_test_acc")
ALPHA = 0.05
TEST = (f"two-sided paired t-test over seeds (ticket vs the same seed's control) on {METRIC}, "
        f"Holm-adjusted across the rounds of each control, alpha={ALPHA}")
BETTER, WORSE, NOT_SIGNIFICANT, SAME, NOT_TESTED = "ticket better", "worse", "not significant", "same", "n/a"
VERDICTS = (BETTER, WORSE, NOT_SIGNIFICANT, SAME, NOT_TESTED)
# Values closer than this (relative to their size, at least 1) are equal: results.csv keeps six
# decimals, so real differences are 1e-6 or more and float noise is about 1e-16.
RELATIVE_TOLERANCE = 1e-9
# The study-level test pools the rounds with at most this fraction of weights remaining:
# Frankle & Carbin's sparse regime (config key report.max_weights_remaining).
MAX_WEIGHTS_REMAINING = 0.215
POWER = 0.8  # the power at which seeds_for_power counts the seeds a test needs
MAX_SEEDS = 10**9  # seeds_for_power gives up (NaN) beyond this
STUDY_TEST = (f"per seed, the mean paired difference (ticket - the same seed's control of the same round) on "
              f"{METRIC} over the rounds at or below max_weights_remaining; a two-sided one-sample t-test of "
              f"the per-seed means against 0, Holm-adjusted across the controls of a run, alpha={ALPHA}")

COMPARISON_COLUMNS = ["round", "weights_remaining", "control", "n_ticket", "n_control", "n_pairs",
                      "ticket_mean", "control_mean", "diff", "diff_ci_low", "diff_ci_high", "t_paired",
                      "p_paired", "p_paired_holm", "p_welch", "verdict"]
STUDY_COLUMNS = ["control", "max_weights_remaining", "n_rounds", "min_weights_remaining", "n_seeds", "mean_diff",
                 "sd", "ci_low", "ci_high", "t", "p", "p_holm", "verdict", "pairs_ahead", "pairs",
                 "seeds_for_power"]


def is_constant(values: Iterable[float]) -> bool:
    """True when all values are equal up to float noise (:data:`RELATIVE_TOLERANCE`)."""
    x = np.asarray(list(values), dtype=float)
    return len(x) == 0 or np.ptp(x) <= RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(x))))


def _finite(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    return x[~np.isnan(x)]


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[int, float, float, float, float]:
    """``(n, mean, std, ci_low, ci_high)`` of the non-NaN values.

    std has ddof=1; the interval is mean ± t_{(1+level)/2, n-1} · std / √n (Student t). With one
    value, std and the interval are NaN; with values equal up to float noise, std is 0.
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n == 1:
        return 1, mean, math.nan, math.nan, math.nan
    std = 0.0 if is_constant(x) else float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * std / math.sqrt(n)
    return n, mean, std, mean - half, mean + half


def paired_test(ticket: Iterable[float], control: Iterable[float], level: float = 1 - ALPHA) -> dict[str, float]:
    """Two-sided paired t-test of ``ticket - control`` (equal-length sequences, pairs with a NaN dropped).

    Returns ``n`` (pairs), ``diff`` (mean difference), its ``ci_low``/``ci_high`` at ``level``,
    ``t`` and ``p``. With fewer than 2 pairs, or differences all equal (up to float noise), the
    test is undefined: ``t``, ``p`` and the interval are NaN (``diff`` is still given).
    """
    a, b = np.asarray(list(ticket), dtype=float), np.asarray(list(control), dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a paired test needs equal numbers of values, got {len(a)} and {len(b)}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    d = a - b
    out = {"n": len(d), "diff": float(d.mean()) if len(d) else math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "t": math.nan, "p": math.nan}
    if len(d) < 2 or is_constant(d):
        return out
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(confidence_level=level)
    return out | {"ci_low": float(ci.low), "ci_high": float(ci.high), "t": float(result.statistic),
                  "p": float(result.pvalue)}


def welch_test(ticket: Iterable[float], control: Iterable[float]) -> float:
    """The two-sided p-value of Welch's unpaired t-test (NaNs dropped).

    NaN with fewer than 2 values on a side or when both sides are constant (up to float noise):
    their variances are zero and the statistic would divide by rounding error.
    """
    a, b = _finite(ticket), _finite(control)
    if len(a) < 2 or len(b) < 2 or (is_constant(a) and is_constant(b)):
        return math.nan
    with warnings.catch_warnings():  # one constant side is fine: its variance is ~0 next to the other's
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(p_values: Iterable[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not in the family).

    With the m p-values sorted ascending, the i-th (from 1) becomes ``max_{j<=i} min(1, (m-j+1) p_(j))``;
    rejecting where the adjusted value is below alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(list(p_values), dtype=float)
    adjusted = np.full(len(p), math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def verdict(paired: dict[str, float], p_adjusted: float, alpha: float = ALPHA) -> str:
    """The verdict of one comparison from its :func:`paired_test` result and Holm-adjusted p-value."""
    if paired["n"] >= 2 and math.isnan(paired["p"]) and is_constant([paired["diff"], 0.0]):
        return SAME  # every pair equal
    if math.isnan(p_adjusted):
        return NOT_TESTED
    if p_adjusted >= alpha:
        return NOT_SIGNIFICANT
    return BETTER if paired["diff"] > 0 else WORSE


def significant_run(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split one control's comparison rows (sorted densest first) into the unbroken run of
    ``ticket better`` rounds that starts at the densest round, and the ``ticket better`` rounds after it."""
    rows = rows.sort_values("weights_remaining", ascending=False, kind="stable")
    better = (rows["verdict"] == BETTER).to_numpy()
    length = int(np.argmin(np.append(better, False)))  # the first round that is not better
    return rows.iloc[:length], rows.iloc[length:][better[length:]]


# --- tables -----------------------------------------------------------------------------------

def runs_of(df: pd.DataFrame) -> Iterator[tuple[dict, pd.DataFrame]]:
    """``({"run": label}, rows)`` per run in order of appearance, or ``({}, df)`` without a run column."""
    if "run" not in df.columns:
        yield {}, df
        return
    for run in df["run"].unique():
        yield {"run": run}, df[df["run"] == run]


def variants_of(df: pd.DataFrame) -> list[str]:
    """The variants in df: the ticket first, then the controls in order of appearance."""
    return sorted(df["variant"].unique(), key=lambda v: v != TICKET)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (run,) round and variant: weights_remaining, n_seeds and statistics over seeds.

    For each metric in :data:`METRICS` the result has ``<metric>_mean``, ``_std`` (ddof=1),
    ``_ci_low`` and ``_ci_high`` (95%, Student t; NaN for a single seed), at full precision.
    """
    rows = []
    for run_key, runs in runs_of(df):
        for rnd in sorted(runs["round"].unique()):
            in_round = runs[runs["round"] == rnd]
            for variant in variants_of(in_round):
                group = in_round[in_round["variant"] == variant]
                row = {**run_key, "round": int(rnd), "variant": variant,
                       "weights_remaining": float(group["weights_remaining"].mean()),
                       "n_seeds": int(group["seed"].nunique())}
                for metric in METRICS:
                    _, mean, std, low, high = mean_ci(group[metric])
                    row |= {f"{metric}_mean": mean, f"{metric}_std": std,
                            f"{metric}_ci_low": low, f"{metric}_ci_high": high}
                rows.append(row)
    columns = (["run"] if "run" in df.columns else []) + ["round", "variant", "weights_remaining", "n_seeds"]
    columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "ci_low", "ci_high")]
    return pd.DataFrame(rows, columns=columns)


def compare(df: pd.DataFrame, metric: str = METRIC, alpha: float = ALPHA) -> pd.DataFrame:
    """Per (run,) round, the ticket against each control of that round on ``metric`` (see the module docstring).

    ``diff`` is the mean paired difference (ticket - control) over the seeds that have both, with
    its 1 - alpha interval (per round, not adjusted); ``ticket_mean`` and ``control_mean`` are over
    all seeds of each side, as is ``p_welch``. ``p_paired_holm`` is adjusted across the rounds of
    the same control in the same run, and gives the verdict.
    """
    rows = []
    for run_key, runs in runs_of(df):
        family_start = len(rows)
        for rnd in sorted(runs["round"].unique()):
            in_round = runs[runs["round"] == rnd]
            ticket = in_round[in_round["variant"] == TICKET].set_index("seed")[metric]
            if ticket.empty:  # e.g. a supermask run: nothing to compare against
                continue
            for control in variants_of(in_round):
                if control == TICKET:
                    continue
                other = in_round[in_round["variant"] == control].set_index("seed")[metric]
                seeds = sorted(set(ticket.dropna().index) & set(other.dropna().index))
                paired = paired_test(ticket[seeds], other[seeds], level=1 - alpha)
                rows.append({**run_key, "round": int(rnd),
                             "weights_remaining": float(in_round.loc[in_round["variant"] == TICKET,
                                                                     "weights_remaining"].mean()),
                             "control": control, "n_ticket": int(ticket.notna().sum()),
                             "n_control": int(other.notna().sum()), "n_pairs": paired["n"],
                             "ticket_mean": ticket.mean(), "control_mean": other.mean(), "diff": paired["diff"],
                             "diff_ci_low": paired["ci_low"], "diff_ci_high": paired["ci_high"],
                             "t_paired": paired["t"], "p_paired": paired["p"], "p_welch": welch_test(ticket, other),
                             "_paired": paired})
        family = rows[family_start:]
        for control in dict.fromkeys(r["control"] for r in family):
            members = [r for r in family if r["control"] == control]
            for r, adjusted in zip(members, holm(r["p_paired"] for r in members)):
                r["p_paired_holm"] = adjusted
                r["verdict"] = verdict(r.pop("_paired"), adjusted, alpha)
    columns = (["run"] if "run" in df.columns else []) + COMPARISON_COLUMNS
    return pd.DataFrame(rows, columns=columns)


# --- the study-level test --------------------------------------------------------------------

def t_test_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided one-sample t-test over ``n`` values at ``alpha`` when the true mean is
    ``effect`` standard deviations from 0: P(|T| > t_{1-alpha/2, n-1}) for T noncentral t with
    n - 1 degrees of freedom and noncentrality ``effect`` · √n."""
    df = n - 1
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    noncentrality = effect * math.sqrt(n)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def seeds_for_power(mean_diff: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The fewest seeds (2 or more) at which a two-sided one-sample t-test at ``alpha`` of per-seed
    means with standard deviation ``sd`` detects a true mean ``mean_diff`` with at least ``power``.

    Power grows with n, so the search doubles n until the power is reached and then bisects (the
    answer an upward search one by one would give). NaN when undefined (sd not positive, a zero
    or NaN difference) or beyond :data:`MAX_SEEDS`.
    """
    if not (np.isfinite(mean_diff) and np.isfinite(sd)) or sd <= 0 or mean_diff == 0:
        return math.nan
    effect = abs(mean_diff) / sd
    if t_test_power(effect, 2, alpha) >= power:
        return 2
    low, high = 2, 4  # power(low) < power <= power(high) once the doubling stops
    while t_test_power(effect, high, alpha) < power:
        low, high = high, 2 * high
        if high > MAX_SEEDS:
            return math.nan
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if t_test_power(effect, middle, alpha) >= power else (middle, high)
    return high


def _study_row(pairs: pd.DataFrame, metric: str, alpha: float) -> dict:
    """The study-level statistics of one control from its (seed, round) pairs in the sparse regime."""
    d = pairs[f"{metric}_ticket"] - pairs[f"{metric}_control"]
    per_seed = d.groupby(pairs["seed"]).mean()
    n = len(per_seed)
    out = {"n_rounds": int(pairs["round"].nunique()),
           "min_weights_remaining": float(pairs["weights_remaining"].min()) if len(pairs) else math.nan,
           "n_seeds": n, "mean_diff": float(per_seed.mean()) if n else math.nan, "sd": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "t": math.nan, "p": math.nan,
           "pairs_ahead": int((d > 0).sum()), "pairs": int(len(d)), "seeds_for_power": math.nan}
    if n < 2:
        return out
    if is_constant(per_seed):  # every seed the same mean difference: t would divide by float noise
        return out | {"sd": 0.0}
    result = stats.ttest_1samp(per_seed.to_numpy(), 0.0)
    ci = result.confidence_interval(confidence_level=1 - alpha)
    sd = float(per_seed.std(ddof=1))
    return out | {"sd": sd, "ci_low": float(ci.low), "ci_high": float(ci.high), "t": float(result.statistic),
                  "p": float(result.pvalue), "seeds_for_power": seeds_for_power(out["mean_diff"], sd, alpha=alpha)}


def _study_verdict(r: dict, pairs: pd.DataFrame, metric: str, alpha: float) -> str:
    if math.isnan(r["p_holm"]):
        d = pairs[f"{metric}_ticket"] - pairs[f"{metric}_control"]
        return SAME if r["n_seeds"] >= 2 and is_constant(list(d) + [0.0]) else NOT_TESTED
    if r["p_holm"] >= alpha:
        return NOT_SIGNIFICANT
    return BETTER if r["mean_diff"] > 0 else WORSE


def study(df: pd.DataFrame, max_weights_remaining: float = MAX_WEIGHTS_REMAINING, metric: str = METRIC,
          alpha: float = ALPHA) -> pd.DataFrame:
    """Per (run,) control, the study-level test of the ticket against that control (:data:`STUDY_TEST`).

    A pair is a ticket and the control of the same seed and round, both with a value of ``metric``,
    in a round where the ticket's ``weights_remaining`` (its row for that seed) is at most
    ``max_weights_remaining``. Each seed contributes the mean of its pairs' differences (ticket -
    control); ``mean_diff``, ``sd`` (ddof=1), the 1 - alpha interval ``ci_low``/``ci_high``, ``t``
    and ``p`` are over those per-seed means (``n_seeds`` of them). ``p_holm`` is adjusted across the
    controls of the same run and gives the verdict. ``pairs_ahead`` counts the pairs where the ticket
    scores higher, of ``pairs``. ``seeds_for_power`` is :func:`seeds_for_power` of the observed mean
    and sd. Fewer than 2 seeds, or per-seed means all equal, get no p-value (verdict ``same`` when
    every pair is equal, else ``n/a``). Runs without tickets have no rows.
    """
    rows = []
    for run_key, runs in runs_of(df):
        tickets = runs[runs["variant"] == TICKET][["seed", "round", "weights_remaining", metric]]
        if tickets.empty:
            continue
        family = []
        for control in variants_of(runs):
            if control == TICKET:
                continue
            other = runs[runs["variant"] == control][["seed", "round", metric]]
            pairs = tickets.merge(other, on=["seed", "round"], suffixes=("_ticket", "_control"))
            pairs = pairs.dropna(subset=[f"{metric}_ticket", f"{metric}_control"])
            pairs = pairs[pairs["weights_remaining"] <= max_weights_remaining]
            family.append(({**run_key, "control": control, "max_weights_remaining": float(max_weights_remaining),
                            **_study_row(pairs, metric, alpha)}, pairs))
        for (r, pairs), adjusted in zip(family, holm(r["p"] for r, _ in family)):
            r["p_holm"] = adjusted
            r["verdict"] = _study_verdict(r, pairs, metric, alpha)
            rows.append(r)
    columns = (["run"] if "run" in df.columns else []) + STUDY_COLUMNS
    return pd.DataFrame(rows, columns=columns)
