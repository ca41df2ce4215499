"""The report of any runs: the results tables and findings (:func:`write_report`), then one section per
experiment kind that a run holds (today: the instability analysis under ``RUN/stability/``).

A run made by ``tickets stability`` of a config has no results.csv: its report is the
instability section alone.
"""
from __future__ import annotations

from pathlib import Path

from tickets.experiments.connect.section import report_section as connect_section
from tickets.experiments.sparse.section import report_section as sparse_section
from tickets.experiments.stability.section import report_section as stability_section
from tickets.store import RunStore, atomic_write_text, read_csv_rows


def learning_section(run_dir: Path, relative_to: Path) -> list[str]:
    """The networks the driver found did not learn (run.json's ``did_not_learn``); none when all did."""
    names = RunStore(Path(run_dir).parent, Path(run_dir).name).read_run_json().get("did_not_learn", [])
    if not names:
        return []
    return [f"## Networks that did not learn ({Path(run_dir).name})", "",
            "They trained without a non-finite loss, so their status is ok (or diverged), but their results say "
            "nothing about their masks; a lower learning rate may help.", "",
            *[f"- {name}" for name in names], ""]


# Each section: (run directory, the report's folder) -> markdown lines (none when absent).
SECTIONS = (learning_section, stability_section, connect_section, sparse_section)


def has_results(run_dir: Path) -> bool:
    return bool(read_csv_rows(Path(run_dir) / "results.csv"))


def write_run_report(run_dirs: list[Path], out_dir: Path | None = None, **options) -> Path:
    """report.md (and the CSVs and plots) for ``run_dirs``; returns the report's path."""
    from tickets.report import write_report

    run_dirs = [Path(d) for d in run_dirs]
    out = Path(out_dir) if out_dir else (run_dirs[0] / "report" if run_dirs else None)
    lines = [line for run_dir in run_dirs for section in SECTIONS for line in section(run_dir, out or Path("."))]
    if any(has_results(d) for d in run_dirs) or not lines:
        report_md = write_report(run_dirs, out_dir, **options) / "report.md"  # no results: its error says so
        lines = [line for run_dir in run_dirs for section in SECTIONS for line in section(run_dir, report_md.parent)]
        text = report_md.read_text()
    else:
        report_md = out / "report.md"
        text = f"# Report: {', '.join(d.name for d in run_dirs)}\n"
    if lines:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    report_md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_md, text)
    return report_md
