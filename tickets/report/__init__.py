"""The report stage: results.csv of one or more runs -> tables, plots and findings.

:func:`write_report` reads each run's ``results.csv`` (and the networks' ``metrics.csv`` for
learning curves) and writes into the report directory:

- ``summary.csv``: per (run,) round and variant: weights_remaining, n_seeds and, for each metric,
  its mean, std (ddof=1) and 95% confidence interval over seeds;
- ``comparison.csv``: per (run,) round, the ticket against each control: the paired t-test
  (``p_paired``), Holm-adjusted across rounds (``p_paired_holm``, which gives the verdict),
  Welch's test (``p_welch``), and the mean paired difference with its 95% CI;
- ``study.csv``: per (run,) control, the study-level test over the sparse rounds (ticket weights
  remaining at most ``max_weights_remaining``): a one-sample t-test of the seeds' mean paired
  differences, Holm-adjusted across controls, the seed-rounds where the ticket is ahead, and the
  seeds a test would need for 80% power (:func:`~tickets.report.statistics.study`);
- ``accuracy.png``, ``early_stop.png``, ``learning_curves.png``;
- ``report.md``: findings computed from the tables (the study-level test first), the method, and
  the diverged networks.

The CSVs keep full float precision; report.md rounds.

Networks whose row has ``status`` ``diverged`` are listed and left out of every statistic.
Modules: :mod:`~tickets.report.inputs` (reading runs), :mod:`~tickets.report.statistics`
(scipy.stats), :mod:`~tickets.report.plots`, :mod:`~tickets.report.markdown`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from tickets.errors import TicketsError
from tickets.report.across import compare_runs
from tickets.report.across import markdown_section as across_section
from tickets.report.inputs import load_results, run_labels, split_diverged
from tickets.report.markdown import markdown
from tickets.report.plots import plot_learning_curves, plot_vs_weights
from tickets.report.statistics import (
    MAX_WEIGHTS_REMAINING,
    compare,
    holm,
    mean_ci,
    paired_test,
    seeds_for_power,
    study,
    summarize,
    welch_test,
)
from tickets.store import atomic_write_text

__all__ = ["write_report", "load_results", "run_labels", "summarize", "compare", "study", "mean_ci", "paired_test",
           "welch_test", "holm", "seeds_for_power"]


def _check_threshold(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise TicketsError(f"{where} must be a fraction of weights in (0, 1], got {value!r}; e.g. 0.215 "
                           f"(Frankle & Carbin's sparse regime)")
    return float(value)


def configured_threshold(run_dir: Path) -> float:
    """``report.max_weights_remaining`` from a run's config.yaml, or :data:`MAX_WEIGHTS_REMAINING`
    when the file, its report section or the key is absent (runs made before the key existed)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return MAX_WEIGHTS_REMAINING
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise TicketsError(f"{path}: not valid YAML; fix the file, or pass the threshold explicitly") from None
    section = loaded.get("report") if isinstance(loaded, dict) else None
    value = section.get("max_weights_remaining") if isinstance(section, dict) else None
    if value is None:
        return MAX_WEIGHTS_REMAINING
    if isinstance(value, str):  # YAML 1.1 reads 2e-1 (no dot) as a string, as config.py accepts
        try:
            value = float(value)
        except ValueError:
            pass
    return _check_threshold(value, f"report.max_weights_remaining in {path}")


def write_report(run_dirs: list[Path], out_dir: Path | None = None, rounds_to_plot: Iterable[int] | None = None,
                 max_weights_remaining: float | None = None) -> Path:
    """Write summary.csv, comparison.csv, study.csv, plots and report.md for one or more runs; return the
    report directory.

    ``out_dir`` defaults to ``RUN/report`` for one run and to ``<first run's parent>/report-<names>``
    for several. Several runs are labelled by what differs between their configs (:func:`run_labels`).
    ``rounds_to_plot`` picks the learning-curve rounds (default: rounds near 100, 50, 20, 7 and 2%
    weights remaining). ``max_weights_remaining`` is the study-level test's threshold (the rounds
    whose ticket has at most that fraction of weights); None reads ``report.max_weights_remaining``
    from the first run's config.yaml, else 0.215. Raises TicketsError when a run has no results or
    the threshold is not in (0, 1].
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise TicketsError("no run given: pass one or more run directories, e.g. `tickets report outputs/<run>`")
    if len({d.resolve() for d in run_dirs}) < len(run_dirs):
        raise TicketsError("a run directory is given twice: pass each run once")
    threshold = (configured_threshold(run_dirs[0]) if max_weights_remaining is None
                 else _check_threshold(max_weights_remaining, "max_weights_remaining"))
    frames = [load_results(d) for d in run_dirs]
    labels = run_labels(run_dirs)
    many = len(run_dirs) > 1
    frames = [f.assign(run=label) if many else f.drop(columns="run", errors="ignore")
              for f, label in zip(frames, labels)]
    if out_dir is None:
        out_dir = (run_dirs[0] / "report" if not many else
                   run_dirs[0].resolve().parent / ("report-" + "-".join(d.resolve().name for d in run_dirs)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    results, diverged = split_diverged(pd.concat(frames, ignore_index=True))
    summary, comparison, studied = summarize(results), compare(results), study(results, threshold)
    for name, table in (("summary.csv", summary), ("comparison.csv", comparison), ("study.csv", studied)):
        atomic_write_text(out_dir / name, table.to_csv(index=False))

    plots = [("accuracy.png", "Test accuracy at early stop vs. weights remaining"),
             ("early_stop.png", "Early-stop iteration vs. weights remaining")]
    plot_vs_weights(summary, "test_acc_at_early_stop", 100, "Test accuracy at early stop (%)",
                    "Test accuracy at early stop vs. weights remaining\n(mean ± 95% CI over seeds)",
                    out_dir / plots[0][0])
    plot_vs_weights(summary, "early_stop_iter", 1, "Early-stop iteration (training iterations)",
                    "Early-stop iteration (minimum validation loss) vs. weights remaining\n(mean ± 95% CI over seeds)",
                    out_dir / plots[1][0])
    ok_frames = [split_diverged(f)[0] for f in frames]
    if plot_learning_curves(list(zip(labels, run_dirs, ok_frames)), rounds_to_plot, out_dir / "learning_curves.png"):
        plots.append(("learning_curves.png", "Learning curves: test accuracy vs. training iteration"))

    text = markdown(labels, run_dirs, summary, comparison, diverged, plots, studied, threshold)
    if many:  # the runs' tickets against each other, round by round
        across = compare_runs(results)
        atomic_write_text(out_dir / "runs.csv", across.to_csv(index=False))
        text += "\n" + "\n".join(across_section(across))
    atomic_write_text(out_dir / "report.md", text)
    return out_dir
