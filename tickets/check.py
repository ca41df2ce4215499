"""`tickets check RUN`: verify every file of a run against the checksums its networks recorded.

Checked: config.yaml (against the sha256 in run.json) and run.json; each finished network's
files (against its done.json); each seed's shared files (init.pt, rewind.pt, the rounds'
mask.pt) against what the networks trained from them recorded, and, where no network
recorded one yet, that it can be read; results.csv against the rows in the done.json files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tickets.errors import TicketsError
from tickets.store import DIVERGED, RunStore


@dataclass
class CheckReport:
    """What ``check_run`` found: problems (each one line with its fix) and counts of networks."""

    problems: list[str] = field(default_factory=list)
    finished: int = 0
    diverged: int = 0
    unfinished: int = 0
    unverified: int = 0  # finished before checksums were recorded


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
    for seed_dir in sorted(run_dir.glob("seed_*")):
        seed = int(seed_dir.name.split("_", 1)[1])
        _check_shared_files(store, seed, report)
        for net_dir in sorted(p for p in seed_dir.glob("round_*/*") if p.is_dir()):
            _check_network(store, seed, net_dir, report)
    problem = store.results_problem()
    if problem:
        report.problems.append(f"{store.results_path} {problem}; it is rebuilt from them when the run is resumed")
    return report


def _check_shared_files(store: RunStore, seed: int, report: CheckReport) -> None:
    recorded = store.recorded_inputs(seed)
    for name, problem in store.damaged_inputs(seed):
        report.problems.append(store.damage_message(name, problem))
    seed_dir = store.seed_dir(seed)
    for path in [seed_dir / "init.pt", seed_dir / "rewind.pt", *sorted(seed_dir.glob("round_*/mask.pt"))]:
        if path.is_file() and store.relative(path) not in recorded:
            try:
                store.load(path)
            except TicketsError as error:
                report.problems.append(str(error))


def _check_network(store: RunStore, seed: int, net_dir: Path, report: CheckReport) -> None:
    round_ = int(net_dir.parent.name.split("_", 1)[1])
    variant = net_dir.name
    if not store.is_done(seed, round_, variant):
        report.unfinished += 1
        return
    damaged = store.damaged_files(seed, round_, variant)
    if damaged:
        report.problems.append(f"{net_dir}: {', '.join(damaged)}; the network is trained again when the run is resumed")
        return
    report.finished += 1
    record = store.done_record(seed, round_, variant)
    report.unverified += "files" not in record
    report.diverged += store.done_row(seed, round_, variant)["status"] == DIVERGED
