"""The instability analysis for people: plots of error along the paths and vs. k, and the report section."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tickets.experiments.stability.paths import STABLE_THRESHOLD, alphas, point_columns
from tickets.store import atomic_write_bytes, read_json


def stable_from(by_k: pd.Series) -> int | None:
    """The smallest analysed k from which the network is stable at every later k too (None: not at the last)."""
    first = None
    for k in sorted(by_k.index, reverse=True):
        if by_k[k] >= STABLE_THRESHOLD:
            break
        first = k
    return first


def stability_verdict(by_k: pd.Series) -> str:
    """A phrase on mean instability by k: stable at every k, from some k on, or not at the last."""
    start = stable_from(by_k)
    at0 = by_k.get(0, math.nan)
    if start is None:
        if (by_k < STABLE_THRESHOLD).any():
            ks = ", ".join(str(k) for k in by_k.index if by_k[k] < STABLE_THRESHOLD)
            return f"not stable at the last k analysed (below 2 points only at k = {ks})"
        return f"unstable at every k analysed (smallest instability {100 * by_k.min():.2f} points)"
    if start == min(by_k.index):
        return f"stable at every k analysed ({', '.join(str(k) for k in by_k.index)})"
    return f"stable from k = {start} on" + ("" if math.isnan(at0)
                                            else f" (instability {100 * at0:.2f} points at k = 0)")


def _figure(width=7.5, height=4.5):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def write_plots(df: pd.DataFrame, points: int, out: Path, reset_bn: bool = False) -> list[tuple[str, str]]:
    """Error along the path for each k (one figure per round) and instability vs k; returns (file, title).

    The titles say how BatchNorm statistics were treated along the path (``reset_bn``).
    """
    how = "BatchNorm recomputed" if reset_bn else "BatchNorm interpolated"
    if df.empty:
        return []
    plots = []
    xs = alphas(points)
    cols = point_columns(points)
    for round_, group in df.groupby("round"):
        fig, ax = _figure()
        for (variant, k), g in group.groupby(["variant", "k"]):
            style = "-" if variant == "ticket" else "--"
            ax.plot(xs, 100 * g[cols].mean().to_numpy(), style, marker=".", label=f"{variant}, k={k}")
        ax.set_xlabel("interpolation a: (1 - a) * copy 0 + a * copy 1")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"Error along the linear path, round {round_} (mean over seeds; {how})")
        ax.legend(fontsize="small")
        name = f"path_round_{round_}.png"
        _save(fig, out / name)
        plots.append((name, f"Test error along the path between two copies, round {round_}"))
    fig, ax = _figure()
    for (round_, variant), g in df.groupby(["round", "variant"]):
        by_k = g.groupby("k")["instability"]
        mean, spread = 100 * by_k.mean(), 100 * by_k.std().fillna(0)
        label = f"round {round_} ({100 * g['weights_remaining'].iloc[0]:.3g}% weights), {variant}"
        ax.errorbar(mean.index, mean.to_numpy(), yerr=spread.to_numpy(), marker="o", capsize=3,
                    linestyle="-" if variant == "ticket" else "--", label=label)
    ax.axhline(100 * STABLE_THRESHOLD, color="gray", linestyle=":", label="2 points")
    ax.set_xscale("symlog", linthresh=max(1, int(df["k"][df["k"] > 0].min()) if (df["k"] > 0).any() else 1))
    ax.set_xlabel("rewind point k (iterations)")
    ax.set_ylabel("instability (percentage points)")
    ax.set_title(f"Instability vs. rewind point (mean ± sd over seeds; {how})")
    ax.legend(fontsize="small")
    _save(fig, out / "instability.png")
    plots.append(("instability.png", "Instability vs. rewind point k"))
    return plots


def report_section(run_dir: Path, relative_to: Path) -> list[str]:
    """Markdown lines on a run's instability analysis (none when it has none)."""
    stab = Path(run_dir) / "stability"
    if not (stab / "stability.csv").exists():
        return []
    df = pd.read_csv(stab / "stability.csv")
    if df.empty:
        return []
    settings = read_json(stab / "stability.json")
    lines = ["## Instability (linear mode connectivity)", "",
             f"Two copies of each network train from iteration k to the end with different data orders and "
             f"augmentation draws; test error is evaluated at {settings['points']} evenly spaced points of the "
             f"straight line between them (every parameter and buffer interpolated). Instability = the largest "
             f"error on the path minus the mean error of its ends (Frankle et al. 2020; stable below about 2 "
             f"points). BatchNorm statistics "
             + ("recomputed on the training set at each point (--reset-bn)" if settings["reset_bn"]
                else "interpolated, not recomputed")
             + f". Means over {df['seed'].nunique()} seed(s); all rows in `stability/stability.csv`.", "",
             "| round | weights remaining | variant | k | instability (points) | error at the ends |",
             "|---:|---:|---|---:|---:|---:|"]
    grouped = df.groupby(["round", "variant", "k"], sort=True)
    for (round_, variant, k), g in sorted(grouped, key=lambda x: (x[0][0], x[0][1] != "ticket", x[0][1], x[0][2])):
        ends = 100 * (g["err_start"].mean() + g["err_end"].mean()) / 2
        lines.append(f"| {round_} | {100 * g['weights_remaining'].iloc[0]:.3g}% | {variant} | {k} | "
                     f"{100 * g['instability'].mean():.2f} | {ends:.2f}% |")
    lines.append("")
    for (round_, variant), g in df.groupby(["round", "variant"]):
        by_k = g.groupby("k")["instability"].mean()
        lines.append(f"- Round {round_}, {variant}: {stability_verdict(by_k)}.")
    lines.append("")
    lines += [f"![{name}]({os.path.relpath(stab / name, relative_to)})\n" for name in
              ["instability.png", *sorted(p.name for p in stab.glob("path_round_*.png"))] if (stab / name).exists()]
    return lines
