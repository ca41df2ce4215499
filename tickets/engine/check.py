"""`tickets check RUN`: verify every file of a run against the checksums its jobs recorded.

Checked: config.yaml (against the sha256 in run.json) and run.json; the files of every finished
job of every kind (IMP networks, stability copies, supermasks), against its done.json; the
run's shared files (init.pt, rewind.pt, the rounds' mask.pt, stability's rewind_<k>.pt) against
what the jobs trained from them recorded, and, where no job recorded one yet, that it can be
read; results.csv against the rows in the done.json files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tickets.errors import TicketsError
from tickets.store import DIVERGED, RunStore

# Shared files a run's jobs read (relative to the run directory).
SHARED_FILES = ("seed_*/init.pt", "seed_*/rewind.pt", "seed_*/round_*/mask.pt", "stability/seed_*/rewind_*.pt")
# Directories that are one job each (finished once they hold done.json).
JOB_DIRS = ("seed_*/round_*/*", "stability/seed_*/round_*/*/k_*/copy_*")


@dataclass
class CheckReport:
    """What ``check_run`` found: problems (each one line with its fix) and counts of jobs."""

    problems: list[str] = field(default_factory=list)
    finished: int = 0
    diverged: int = 0
    unfinished: int = 0


def check_run(run_dir: Path) -> CheckReport:
    """Verify a run directory; raises TicketsError when it is not a run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TicketsError(f"{run_dir} is not a tickets run (no config.yaml); give a folder made by `tickets prune`")
    store = RunStore(run_dir.parent, run_dir.name)
    report = CheckReport()
    try:
        store.read_config()
    except TicketsError as error:
        report.problems.append(str(error))
    if store.run_json_path.exists() and not store.read_run_json():
        report.problems.append(f"{store.run_json_path} cannot be read; it is written anew when the run is resumed")
    _check_shared_files(store, report)
    for job_dir in sorted({p for pattern in JOB_DIRS for p in run_dir.glob(pattern) if p.is_dir()}):
        _check_job(store, job_dir, report)
    problem = store.results_problem()
    if problem:
        report.problems.append(f"{store.results_path} {problem}; it is rebuilt from them when the run is resumed")
    return report


def _check_shared_files(store: RunStore, report: CheckReport) -> None:
    recorded = store.recorded_inputs()
    for name, problem in store.damaged_inputs():
        report.problems.append(store.damage_message(name, problem))
    for path in sorted({p for pattern in SHARED_FILES for p in store.dir.glob(pattern)}):
        if path.is_file() and store.relative(path) not in recorded:
            try:
                store.load(path)
            except TicketsError as error:
                report.problems.append(str(error))


def _check_job(store: RunStore, job_dir: Path, report: CheckReport) -> None:
    if not store.is_done(job_dir):
        report.unfinished += 1
        return
    damaged = store.damaged_files(job_dir)
    if damaged:
        report.problems.append(f"{job_dir}: {', '.join(damaged)}; it is trained again when the run is resumed")
        return
    report.finished += 1
    report.diverged += store.done_row(job_dir).get("status") == DIVERGED
