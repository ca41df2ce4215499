"""A connect run for people: the plot of error along the curve and the line, and the report section."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tickets.experiments.connect.curves import barrier
from tickets.store import atomic_write_bytes, read_json


def write_plot(csv_path: Path, curve: str, path: Path) -> None:
    """Test and train error (%) against t, for the curve and the straight line."""
    df = pd.read_csv(csv_path)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(df["t"], 100 * df["test_err"], "-", marker=".", color="C0", label=f"{curve} curve, test")
    ax.plot(df["t"], 100 * df["train_err"], ":", color="C0", label=f"{curve} curve, train")
    ax.plot(df["t"], 100 * df["line_test_err"], "--", marker=".", color="C1", label="straight line, test")
    ax.plot(df["t"], 100 * df["line_train_err"], ":", color="C1", label="straight line, train")
    ax.set_xlabel("t (0: NET_A, 1: NET_B)")
    ax.set_ylabel("error (%)")
    ax.set_title(f"Error along the {curve} curve and the straight line between NET_A and NET_B")
    ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


def report_section(run_dir: Path, relative_to: Path) -> list[str]:
    """Markdown lines on a connect run's curve (none for other runs)."""
    run_dir = Path(run_dir)
    if not (run_dir / "connect.csv").is_file() or not (run_dir / "run.json").is_file():
        return []
    settings = read_json(run_dir / "run.json").get("connect")
    df = pd.read_csv(run_dir / "connect.csv")
    if not settings or df.empty:
        return []
    lines = ["## Mode connectivity (Garipov et al. 2018)", "",
             f"A {settings['curve']} curve with one trained bend joins NET_A `{settings['net_a']}` (t = 0) and NET_B "
             f"`{settings['net_b']}` (t = 1)" + (f", under their mask `{settings['mask']}`" if settings["mask"] else "")
             + f"; {len(df)} evenly spaced t, BatchNorm statistics recomputed at each point. Barrier = the largest "
             "error along the path minus the mean error of its two ends. All points in `connect.csv` "
             "(errors as fractions).", "",
             "| path | barrier, test error (points) | largest test error | at t | ends (NET_A, NET_B) "
             "| barrier, train error (points) |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, test, train in ((f"{settings['curve']} curve", "test_err", "train_err"),
                               ("straight line", "line_test_err", "line_train_err")):
        worst = df[test].idxmax()
        lines.append(f"| {label} | {100 * barrier(list(df[test])):.2f} | {100 * df[test].max():.2f}% | "
                     f"{df['t'][worst]:.2f} | {100 * df[test].iloc[0]:.2f}%, {100 * df[test].iloc[-1]:.2f}% | "
                     f"{100 * barrier(list(df[train])):.2f} |")
    lines.append("")
    if (run_dir / "connect.png").is_file():
        lines += [f"![connect.png]({os.path.relpath(run_dir / 'connect.png', relative_to)})", ""]
    return lines
