"""The report stage: results.csv of one or more runs -> tables, plots and findings.

:func:`write_report` reads each run's ``results.csv`` (and the networks' ``metrics.csv`` for
learning curves) and writes into the report directory:

- ``summary.csv``: per (run,) round and variant: weights_remaining, n_seeds and, for each metric
  in :data:`METRICS`, its mean, std (ddof=1) and 95% confidence interval over seeds;
- ``comparison.csv``: per (run,) round, the ticket against each control: difference in means,
  its 95% confidence interval and a verdict from Welch's t-test (see :data:`TEST`);
- ``accuracy.png``, ``early_stop.png``, ``learning_curves.png``;
- ``report.md``: the plots and findings sentences computed from the tables.

:func:`summarize` and :func:`compare` are pure functions of a results DataFrame. The Student-t
distribution is implemented here (:func:`t_cdf`, :func:`t_ppf`) so that the package needs no scipy.
"""
from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tickets.errors import TicketsError

TICKET = "ticket"
METRICS = ("test_acc_at_early_stop", "early_stop_iter", "final_test_acc")
ALPHA = 0.05
TEST = "Welch's two-sided t-test on test_acc_at_early_stop, alpha=0.05"
VERDICTS = ("ticket better", "no difference", "worse", "too few seeds")
REQUIRED_COLUMNS = ("seed", "round", "variant", "weights_remaining") + METRICS

# Config keys that differ between runs without being what the runs compare.
IGNORED_CONFIG_KEYS = ("name", "seeds", "prune.rounds", "prune.controls", "train.accelerator", "train.devices")
# Default learning-curve rounds: those whose weights remaining are nearest to these fractions.
CURVE_TARGETS = (1.0, 0.5, 0.2, 0.07, 0.02)


# --- Student's t distribution -----------------------------------------------------------------

def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), by Lentz's continued fraction."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with ``df`` (> 0, may be fractional) degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (inverse of :func:`t_cdf`)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-12 * hi:  # bisection: t_cdf is increasing
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return 0.5 * (lo + hi)


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[int, float, float, float, float]:
    """``(n, mean, std, ci_low, ci_high)`` of the non-NaN values.

    std has ddof=1; the interval is mean +- t_{(1+level)/2, n-1} * std / sqrt(n).
    With one value, std and the interval are NaN.
    """
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n == 1:
        return 1, mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = t_ppf(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return n, mean, std, mean - half, mean + half


def welch(a: Iterable[float], b: Iterable[float], alpha: float = ALPHA) -> dict[str, float]:
    """Welch's two-sided t-test of mean(a) - mean(b) (NaNs dropped; each side needs >= 2 values).

    Returns ``diff``, its ``ci_low``/``ci_high`` at level 1 - alpha (Welch-Satterthwaite degrees of
    freedom, so the interval excludes 0 exactly when p < alpha), ``t``, ``df`` and ``p``.
    """
    a, b = (np.asarray(list(v), dtype=float) for v in (a, b))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs at least 2 values per side")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if se == 0.0:  # no spread at all: the difference is exact
        df = float(len(a) + len(b) - 2)
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0.0 else 0.0
    else:
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        t = diff / se
        p = _betainc(df / 2.0, 0.5, df / (df + t * t))  # = 2 * P(T > |t|)
    half = t_ppf(1.0 - alpha / 2.0, df) * se
    return {"diff": diff, "ci_low": diff - half, "ci_high": diff + half, "t": t, "df": df, "p": p}


# --- tables -----------------------------------------------------------------------------------

def _runs(df: pd.DataFrame) -> Iterator[tuple[dict, pd.DataFrame]]:
    """``({"run": label}, rows)`` per run in order of appearance, or ``({}, df)`` without a run column."""
    if "run" not in df.columns:
        yield {}, df
        return
    for run in df["run"].unique():
        yield {"run": run}, df[df["run"] == run]


def _variants(df: pd.DataFrame) -> list[str]:
    """The variants in df: the ticket first, then the controls in order of appearance."""
    names = list(df["variant"].unique())
    return sorted(names, key=lambda v: v != TICKET)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (run,) round and variant: weights_remaining, n_seeds and statistics over seeds.

    ``df`` has the columns of results.csv (a ``run`` column, if present, is a grouping key).
    For each metric in :data:`METRICS` the result has ``<metric>_mean``, ``_std`` (ddof=1),
    ``_ci_low`` and ``_ci_high`` (95%, Student t; NaN for a single seed).
    """
    rows = []
    for run_key, runs in _runs(df):
        for rnd in sorted(runs["round"].unique()):
            in_round = runs[runs["round"] == rnd]
            for variant in _variants(in_round):
                group = in_round[in_round["variant"] == variant]
                row = {**run_key, "round": int(rnd), "variant": variant,
                       "weights_remaining": float(group["weights_remaining"].mean()),
                       "n_seeds": int(group["seed"].nunique())}
                for metric in METRICS:
                    _, mean, std, low, high = mean_ci(group[metric])
                    row |= {f"{metric}_mean": mean, f"{metric}_std": std,
                            f"{metric}_ci_low": low, f"{metric}_ci_high": high}
                rows.append(row)
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "ci_low", "ci_high")]
    columns = (["run"] if "run" in df.columns else []) + ["round", "variant", "weights_remaining", "n_seeds"]
    return pd.DataFrame(rows, columns=columns + stats)


def compare(df: pd.DataFrame, metric: str = "test_acc_at_early_stop", alpha: float = ALPHA) -> pd.DataFrame:
    """Per (run,) round, the ticket against each control of that round, by Welch's t-test on ``metric``.

    ``diff`` = ticket mean - control mean; ``diff_ci_low``/``diff_ci_high`` its 1 - alpha interval.
    The verdict is ``ticket better`` / ``worse`` when p < alpha (by the sign of diff), else
    ``no difference``; ``too few seeds`` when either side has fewer than 2 seeds.
    """
    rows = []
    for run_key, runs in _runs(df):
        for rnd in sorted(runs["round"].unique()):
            in_round = runs[runs["round"] == rnd]
            ticket = in_round[in_round["variant"] == TICKET]
            if ticket.empty:  # e.g. a supermask run: nothing to compare against
                continue
            for control in _variants(in_round):
                if control == TICKET:
                    continue
                other = in_round[in_round["variant"] == control]
                a, b = ticket[metric].dropna(), other[metric].dropna()
                row = {**run_key, "round": int(rnd), "weights_remaining": float(ticket["weights_remaining"].mean()),
                       "control": control, "n_ticket": len(a), "n_control": len(b),
                       "ticket_mean": a.mean(), "control_mean": b.mean(), "diff": a.mean() - b.mean(),
                       "diff_ci_low": math.nan, "diff_ci_high": math.nan, "t": math.nan, "df": math.nan,
                       "p_value": math.nan, "test": TEST, "verdict": "too few seeds"}
                if len(a) >= 2 and len(b) >= 2:
                    w = welch(a, b, alpha)
                    verdict = "no difference" if w["p"] >= alpha else ("ticket better" if w["diff"] > 0 else "worse")
                    row |= {"diff_ci_low": w["ci_low"], "diff_ci_high": w["ci_high"], "t": w["t"], "df": w["df"],
                            "p_value": w["p"], "verdict": verdict}
                rows.append(row)
    columns = (["run"] if "run" in df.columns else []) + [
        "round", "weights_remaining", "control", "n_ticket", "n_control", "ticket_mean", "control_mean",
        "diff", "diff_ci_low", "diff_ci_high", "t", "df", "p_value", "test", "verdict"]
    return pd.DataFrame(rows, columns=columns)


# --- loading and labelling runs ---------------------------------------------------------------

def load_results(run_dir: Path) -> pd.DataFrame:
    """A run's results.csv; raises TicketsError when it is missing, empty or lacks columns."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise TicketsError(f"no results at {path}: run `tickets prune` first (or pass the run's directory)")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    if df.empty:
        raise TicketsError(f"{path} has no rows yet: run `tickets prune` first and let a round finish")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise TicketsError(f"{path} lacks columns {', '.join(missing)}: rerun `tickets prune` with this version")
    # A network retrained after an interrupted resume counts once: its latest row.
    return df.drop_duplicates(subset=["seed", "round", "variant"], keep="last").reset_index(drop=True)


def _flatten(mapping: dict, prefix: str = "") -> dict[str, object]:
    """Nested mapping -> {"dotted.key": leaf value}."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


def _format_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def run_labels(run_dirs: list[Path]) -> list[str]:
    """One label per run: ``key=value`` for the config keys whose values differ between the runs.

    Keys are dotted paths into config.yaml, shortened to their last part where that is unambiguous
    (``prune.criterion`` -> ``criterion``); :data:`IGNORED_CONFIG_KEYS` are not compared. A single
    run, runs without config.yaml, or runs whose configs do not differ are labelled by directory name.
    """
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    configs = []
    for d in run_dirs:
        path = Path(d) / "config.yaml"
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
        configs.append(_flatten(loaded) if isinstance(loaded, dict) else None)
    if len(run_dirs) < 2 or None in configs:
        return names
    keys = list(dict.fromkeys(k for c in configs for k in c))
    keys = [k for k in keys if not any(k == i or k.startswith(i + ".") for i in IGNORED_CONFIG_KEYS)]
    unset = object()
    differing = [k for k in keys if len({repr(c.get(k, unset)) for c in configs}) > 1]
    last = [k.rsplit(".", 1)[-1] for k in differing]
    short = {k: s if last.count(s) == 1 else k for k, s in zip(differing, last)}
    labels = [", ".join(f"{short[k]}={_format_value(c[k]) if k in c else 'unset'}" for k in differing)
              for c in configs]
    return labels if differing and len(set(labels)) == len(labels) else names


# --- writing ----------------------------------------------------------------------------------

def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temp file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save(fig: Figure, path: Path) -> None:
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def _pct(fraction: float) -> str:
    """Weights remaining as a percentage: 0.035 -> '3.5%'."""
    return f"{100 * fraction:.3g}%"


def _acc(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


# --- plots ------------------------------------------------------------------------------------

def _new_figure(width: float = 7.5, height: float = 4.5, **subplots) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg; no pyplot, so no global figure to close
    return fig, fig.subplots(**subplots)


def _plot_vs_weights(summary: pd.DataFrame, metric: str, scale: float, ylabel: str, title: str, path: Path) -> None:
    """One line per (run,) variant of ``metric`` mean with 95% CI error bars; dense run as a dotted line."""
    fig, ax = _new_figure()
    many = "run" in summary.columns
    for i, (run_key, s) in enumerate(_runs(summary)):
        prefix = f"{run_key['run']}: " if many else ""
        dense = s[(s["round"] == 0) & (s["variant"] == TICKET)]
        if len(dense):
            ax.axhline(scale * dense[f"{metric}_mean"].iloc[0], ls=":", lw=1.2,
                       color=f"C{i}" if many else "0.4", label=f"{prefix}dense network")
        for j, variant in enumerate(_variants(s)):
            v = s[s["variant"] == variant]
            mean = v[f"{metric}_mean"]
            errors = [(mean - v[f"{metric}_ci_low"]).fillna(0) * scale, (v[f"{metric}_ci_high"] - mean).fillna(0) * scale]
            ax.errorbar(100 * v["weights_remaining"], scale * mean, yerr=errors, capsize=3, marker="os^vDP*"[j % 7],
                        ms=4, color=f"C{i}" if many else f"C{j}", ls=["-", "--", "-.", ":"][j % 4] if many else "-",
                        label=prefix + variant)
    ticks = sorted(set(100 * summary["weights_remaining"].round(6)), reverse=True)
    ticks = ticks[:: max(1, math.ceil(len(ticks) / 12))]
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    ax.invert_xaxis()  # pruning proceeds left to right
    ax.set(xlabel="Weights remaining (%, log scale)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)


def _default_curve_rounds(tickets: pd.DataFrame) -> list[int]:
    """The ticket rounds whose weights remaining are nearest (in log) to :data:`CURVE_TARGETS`."""
    if tickets.empty:
        return []
    log_w = np.log(tickets["weights_remaining"].to_numpy())
    rounds = tickets["round"].to_numpy()
    return sorted({int(rounds[np.argmin(abs(log_w - math.log(t)))]) for t in CURVE_TARGETS})


def _mean_curve(run_dir: Path, seeds: Iterable[int], rnd: int, variant: str) -> pd.Series | None:
    """test_acc by iteration, averaged over the seeds whose metrics.csv exists (None if none does)."""
    frames = []
    for seed in seeds:
        path = run_dir / f"seed_{seed}" / f"round_{rnd}" / variant / "metrics.csv"
        if path.is_file():
            try:
                frames.append(pd.read_csv(path)[["iteration", "test_acc"]].dropna())
            except (pd.errors.EmptyDataError, KeyError):
                continue
    frames = [f for f in frames if len(f)]
    return pd.concat(frames).groupby("iteration")["test_acc"].mean() if frames else None


def _plot_learning_curves(runs: list[tuple[str, Path, pd.DataFrame]], rounds_to_plot, path: Path) -> bool:
    """Test accuracy vs iteration, one panel per (run, variant), one line per selected round.

    Returns False (and writes nothing) when no metrics.csv was found.
    """
    panels = {}  # (run label, variant) -> [(colour index, round, weights remaining, curve)]
    for label, run_dir, results in runs:
        tickets = results[results["variant"] == TICKET].groupby("round", as_index=False)["weights_remaining"].mean()
        rounds = _default_curve_rounds(tickets) if rounds_to_plot is None else list(rounds_to_plot)
        weights = results.groupby("round")["weights_remaining"].mean()
        for variant in _variants(results):
            for rnd in (r for r in rounds if r in weights.index):
                curve = _mean_curve(run_dir, sorted(results["seed"].unique()), rnd, variant)
                if curve is not None:
                    panels.setdefault((label, variant), []).append((rounds.index(rnd), rnd, weights[rnd], curve))
    if not panels:
        return False
    labels = list(dict.fromkeys(label for label, _ in panels))
    variants = sorted(dict.fromkeys(v for _, v in panels), key=lambda v: v != TICKET)
    fig, axes = _new_figure(4.2 * len(variants), 3.4 * len(labels) + 0.6, nrows=len(labels), ncols=len(variants),
                            squeeze=False, sharex=True, sharey=True)
    for r, label in enumerate(labels):
        for c, variant in enumerate(variants):
            ax = axes[r][c]
            lines = panels.get((label, variant), [])
            for k, rnd, w, curve in lines:  # a round has the same colour in every panel
                ax.plot(curve.index, 100 * curve.to_numpy(), color=f"C{k}", label=f"{_pct(w)} (round {rnd})")
            ax.set_title(variant if len(labels) == 1 else f"{label}\n{variant}", fontsize="medium")
            ax.set(xlabel="Training iteration" if r == len(labels) - 1 else None,
                   ylabel="Test accuracy (%)" if c == 0 else None)
            ax.grid(alpha=0.3)
            if lines:
                ax.legend(fontsize="small", title="weights remaining", title_fontsize="small")
    # Zoom on where the curves separate: the steep first tenth of training would flatten the rest.
    tails = [100 * curve[curve.index >= 0.1 * curve.index.max()] for lines in panels.values() for *_, curve in lines]
    low, high = min(t.min() for t in tails), max(t.max() for t in tails)
    if np.isfinite(low) and high > low:
        axes[0][0].set_ylim(max(0.0, low - 0.1 * (high - low) - 0.5), min(100.0, high + 0.1 * (high - low) + 0.5))
    fig.suptitle("Learning curves: test accuracy vs. training iteration (mean over seeds; y axis zoomed)")
    _save(fig, path)
    return True


# --- findings ---------------------------------------------------------------------------------

def _findings(s: pd.DataFrame, c: pd.DataFrame) -> list[str]:
    """Sentences about one run, computed from its summary ``s`` and comparison ``c``."""
    acc = "test_acc_at_early_stop"
    out = []
    dense = s[(s["round"] == 0) & (s["variant"] == TICKET)]
    dense = dense.iloc[0] if len(dense) else None
    tickets = s[(s["variant"] == TICKET) & (s["round"] > 0)].dropna(subset=[f"{acc}_mean"])
    if dense is not None:
        ci = (f" (95% CI {_acc(dense[f'{acc}_ci_low'])}–{_acc(dense[f'{acc}_ci_high'])}, {dense['n_seeds']} seeds)"
              if not math.isnan(dense[f"{acc}_ci_low"]) else f" ({dense['n_seeds']} seed)")
        out.append(f"The dense network reaches {_acc(dense[f'{acc}_mean'])} test accuracy at early stop{ci} "
                   f"and early-stops at iteration {dense['early_stop_iter_mean']:,.0f}.")
    if len(tickets):
        best = tickets.loc[tickets[f"{acc}_mean"].idxmax()]
        gain = (f", {100 * (best[f'{acc}_mean'] - dense[f'{acc}_mean']):+.2f} percentage points over the dense network"
                if dense is not None else "")
        out.append(f"The ticket's accuracy is highest at {_pct(best['weights_remaining'])} weights remaining "
                   f"(round {best['round']}): {_acc(best[f'{acc}_mean'])}{gain}.")
    ticket_rounds = set(s.loc[s["variant"] == TICKET, "round"])
    for _, lone in s[(s["variant"] != TICKET) & ~s["round"].isin(ticket_rounds)].iterrows():
        out.append(f"{lone['variant']} reaches {_acc(lone[f'{acc}_mean'])} test accuracy at early stop "
                   f"(final {_acc(lone['final_test_acc_mean'])}) with {_pct(lone['weights_remaining'])} "
                   f"weights remaining ({lone['n_seeds']} seed{'s' if lone['n_seeds'] != 1 else ''}).")
    for control in c["control"].unique():
        rows = c[c["control"] == control]
        tested = rows[rows["verdict"] != "too few seeds"]
        better, worse = rows[rows["verdict"] == "ticket better"], rows[rows["verdict"] == "worse"]
        if tested.empty:
            out.append(f"Too few seeds to test the ticket against {control} (Welch's t-test needs 2 seeds per side).")
            continue
        if len(better):
            out.append(f"Tickets beat {control} down to {_pct(better['weights_remaining'].min())} weights remaining "
                       f"(significantly better in {len(better)} of {len(tested)} rounds, p < {ALPHA}).")
        else:
            out.append(f"Tickets are not significantly better than {control} in any of {len(tested)} rounds.")
        if len(worse):
            where = ", ".join(_pct(w) for w in worse["weights_remaining"])
            out.append(f"{control} is significantly better than the ticket at {where} weights remaining.")
        out.extend(_early_stop_vs(s, control))
    if dense is not None and len(tickets):
        has_ci = not math.isnan(dense[f"{acc}_ci_low"])
        floor = dense[f"{acc}_ci_low"] if has_ci else dense[f"{acc}_mean"]
        rule = "mean at least the dense CI's lower bound" if has_ci else "mean at least the dense mean"
        matching = tickets[tickets[f"{acc}_mean"] >= floor]
        if matching.empty:
            out.append(f"No pruned ticket matches the dense network's accuracy ({rule}).")
        else:
            m = matching.loc[matching["weights_remaining"].idxmin()]
            it, dense_it = m["early_stop_iter_mean"], dense["early_stop_iter_mean"]
            change = 1 - it / dense_it
            how = f"{abs(change):.0%} {'sooner' if change >= 0 else 'later'}"
            out.append(f"At {_pct(m['weights_remaining'])} weights remaining (round {m['round']}), the sparsest round "
                       f"whose ticket matches the dense network's accuracy ({rule}), "
                       f"the ticket early-stops at iteration {it:,.0f} versus {dense_it:,.0f} for the dense network "
                       f"({how}).")
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


def _table(s: pd.DataFrame, c: pd.DataFrame) -> list[str]:
    """A markdown table: per round, ticket accuracy +- CI half-width and each control with its verdict."""
    acc = "test_acc_at_early_stop"
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
            half = row[f"{acc}_ci_high"] - row[f"{acc}_mean"]
            cell = _acc(row[f"{acc}_mean"]) + ("" if math.isnan(half) else f" ± {100 * half:.2f}")
            verdict = c[(c["round"] == rnd) & (c["control"] == variant)]["verdict"]
            cells.append(cell + (f" ({verdict.iloc[0]})" if len(verdict) else ""))
        weights = s[s["round"] == rnd]["weights_remaining"].iloc[0]
        lines.append(f"| {rnd} | {_pct(weights)} | " + " | ".join(cells) + " |")
    return lines


def _markdown(labels: list[str], run_dirs: list[Path], summary: pd.DataFrame, comparison: pd.DataFrame,
              plots: list[tuple[str, str]]) -> str:
    many = len(labels) > 1
    lines = [f"# Lottery-ticket report: {', '.join(labels) if not many else f'{len(labels)} runs'}", ""]
    lines += [f"- `{label}`: `{d}`" for label, d in zip(labels, run_dirs)] + [""]
    lines += ["## Findings", ""]
    comparisons = dict((k.get("run"), g) for k, g in _runs(comparison))
    for run_key, s in _runs(summary):
        if many:
            lines += [f"### {run_key['run']}", ""]
        c = comparisons.get(run_key.get("run"), comparison.iloc[0:0])
        lines += [f"- {sentence}" for sentence in _findings(s, c)] + [""]
    tickets = summary[summary["variant"] == TICKET].dropna(subset=["test_acc_at_early_stop_mean"])
    if many and len(tickets):
        best = tickets.loc[tickets["test_acc_at_early_stop_mean"].idxmax()]
        lines += [f"Across runs, the ticket's accuracy is highest in `{best['run']}`: "
                  f"{_acc(best['test_acc_at_early_stop_mean'])} at {_pct(best['weights_remaining'])} weights remaining.",
                  ""]
    lines += ["## Method", "",
              f"Accuracies are test accuracy at the early-stop iteration (minimum validation loss), as mean over seeds "
              f"with a 95% confidence interval mean ± t(0.975, n−1)·s/√n. Each control is compared with the ticket of "
              f"the same round (same weights remaining) by **{TEST}**: the verdict is *ticket better* or *worse* when "
              f"p < {ALPHA} (by the sign of the difference), *no difference* otherwise, and *too few seeds* with fewer "
              f"than 2 seeds on either side. The confidence interval of the difference uses the Welch–Satterthwaite "
              f"degrees of freedom. All numbers are in `summary.csv` and `comparison.csv`.", ""]
    lines += ["## Plots", ""] + [f"![{title}]({name})\n" for name, title in plots]
    lines += ["## Test accuracy at early stop by round", "",
              "Mean over seeds ± the 95% CI half-width in percentage points; each control with its verdict.", ""]
    for run_key, s in _runs(summary):
        if many:
            lines += [f"### {run_key['run']}", ""]
        lines += _table(s, comparisons.get(run_key.get("run"), comparison.iloc[0:0])) + [""]
    return "\n".join(lines)


def write_report(run_dirs: list[Path], out_dir: Path | None = None, rounds_to_plot: Iterable[int] | None = None) -> Path:
    """Write summary.csv, comparison.csv, plots and report.md for one or more runs; return the report directory.

    ``out_dir`` defaults to ``RUN/report`` for one run and to ``<first run's parent>/report-<names>``
    for several. Several runs are labelled by what differs between their configs (:func:`run_labels`).
    ``rounds_to_plot`` picks the learning-curve rounds (default: rounds near 100, 50, 20, 7 and 2%
    weights remaining). Raises TicketsError when a run has no results.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise TicketsError("no run given: pass one or more run directories, e.g. `tickets report outputs/<run>`")
    if len({d.resolve() for d in run_dirs}) < len(run_dirs):
        raise TicketsError("a run directory is given twice: pass each run once")
    frames = [load_results(d) for d in run_dirs]
    labels = run_labels(run_dirs)
    many = len(run_dirs) > 1
    frames = [f.assign(run=label) if many else f.drop(columns="run", errors="ignore") for f, label in zip(frames, labels)]
    if out_dir is None:
        out_dir = (run_dirs[0] / "report" if not many else
                   run_dirs[0].resolve().parent / ("report-" + "-".join(d.resolve().name for d in run_dirs)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    results = pd.concat(frames, ignore_index=True)
    summary, comparison = summarize(results), compare(results)
    for name, table in (("summary.csv", summary), ("comparison.csv", comparison)):
        _atomic_write(out_dir / name, lambda tmp, table=table: table.to_csv(tmp, index=False))

    plots = [("accuracy.png", "Test accuracy at early stop vs. weights remaining"),
             ("early_stop.png", "Early-stop iteration vs. weights remaining")]
    _plot_vs_weights(summary, "test_acc_at_early_stop", 100, "Test accuracy at early stop (%)",
                     "Test accuracy at early stop vs. weights remaining\n(mean ± 95% CI over seeds)",
                     out_dir / plots[0][0])
    _plot_vs_weights(summary, "early_stop_iter", 1, "Early-stop iteration (training iterations)",
                     "Early-stop iteration (minimum validation loss) vs. weights remaining\n(mean ± 95% CI over seeds)",
                     out_dir / plots[1][0])
    if _plot_learning_curves(list(zip(labels, run_dirs, frames)), rounds_to_plot, out_dir / "learning_curves.png"):
        plots.append(("learning_curves.png", "Learning curves: test accuracy vs. training iteration"))

    text = _markdown(labels, run_dirs, summary, comparison, plots)
    _atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(text))
    return out_dir
