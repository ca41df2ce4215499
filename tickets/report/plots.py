"""The report's plots: accuracy and early-stop iteration vs. weights remaining, learning curves.

Figures render with Agg (no pyplot, so no global figure state) and are written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tickets.report.statistics import TICKET, runs_of, variants_of
from tickets.report.text import pct
from tickets.store import atomic_write_bytes

# Default learning-curve rounds: those whose weights remaining are nearest to these fractions.
CURVE_TARGETS = (1.0, 0.5, 0.2, 0.07, 0.02)


def _new_figure(width: float = 7.5, height: float = 4.5, **subplots) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots)


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def plot_vs_weights(summary: pd.DataFrame, metric: str, scale: float, ylabel: str, title: str, path: Path) -> None:
    """One line per (run,) variant of ``metric`` mean with 95% CI error bars; dense run as a dotted line."""
    fig, ax = _new_figure()
    many = "run" in summary.columns
    for i, (run_key, s) in enumerate(runs_of(summary)):
        prefix = f"{run_key['run']}: " if many else ""
        dense = s[(s["round"] == 0) & (s["variant"] == TICKET)]
        if len(dense):
            ax.axhline(scale * dense[f"{metric}_mean"].iloc[0], ls=":", lw=1.2,
                       color=f"C{i}" if many else "0.4", label=f"{prefix}dense network")
        for j, variant in enumerate(variants_of(s)):
            v = s[s["variant"] == variant]
            mean = v[f"{metric}_mean"]
            errors = [(mean - v[f"{metric}_ci_low"]).fillna(0) * scale,
                      (v[f"{metric}_ci_high"] - mean).fillna(0) * scale]
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
    if summary.size:  # a run whose every network diverged has nothing to plot
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
    """test_acc by iteration, averaged over those of ``seeds`` whose metrics.csv exists (None if none does)."""
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


def plot_learning_curves(runs: list[tuple[str, Path, pd.DataFrame]], rounds_to_plot, path: Path) -> bool:
    """Test accuracy vs iteration, one panel per (run, variant), one line per selected round.

    Each curve averages the networks that have a row in ``results`` (the report passes ok rows only).
    Returns False (and writes nothing) when no metrics.csv was found.
    """
    panels = {}  # (run label, variant) -> [(colour index, round, weights remaining, curve)]
    for label, run_dir, results in runs:
        tickets = results[results["variant"] == TICKET].groupby("round", as_index=False)["weights_remaining"].mean()
        rounds = _default_curve_rounds(tickets) if rounds_to_plot is None else list(rounds_to_plot)
        weights = results.groupby("round")["weights_remaining"].mean()
        for variant in variants_of(results):
            for rnd in (r for r in rounds if r in weights.index):
                seeds = results.loc[(results["round"] == rnd) & (results["variant"] == variant), "seed"]
                curve = _mean_curve(run_dir, sorted(seeds), rnd, variant)
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
                ax.plot(curve.index, 100 * curve.to_numpy(), color=f"C{k}", label=f"{pct(w)} (round {rnd})")
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
