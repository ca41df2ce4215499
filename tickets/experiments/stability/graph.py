"""An instability analysis as a graph: per seed, the dense trajectory (theta_k) unblocks the copies,
and the two copies of a network unblock the evaluation of the path between them (done by the driver).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tickets.components import RunContext
from tickets.engine.contexts import Overrides
from tickets.engine.graph import Graph
from tickets.experiments.stability.jobs import CopyJob, TrajectoryJob, network_dir, rewind_path, stability_dir
from tickets.experiments.stability.paths import COPIES, Settings, columns, instability, path_errors, point_columns
from tickets.experiments.stability.section import write_plots
from tickets.store import atomic_write_json, read_json, write_csv_rows
from tickets.training import make_trainer


class StabilityGraph(Graph):
    """Every (seed, round, variant, k) the settings name, two copies each."""

    def __init__(self, context: RunContext, settings: Settings, existing_run: bool, overrides: Overrides = ()):
        self.context, self.settings, self.existing_run, self.overrides = context, settings, existing_run, overrides
        self.store = context.store
        self.run_dir = str(self.store.dir.resolve())
        self._finals: dict[tuple, dict[int, Path]] = {}
        self._retrained: set[tuple] = set()  # groups with a copy trained in this session: their path is evaluated anew

    def expected(self) -> int:
        s = self.settings
        variants = sum(1 if r == 0 else 1 + len(s.controls) for r in s.rounds)
        return len(s.seeds) * variants * len(s.ks) * COPIES

    def prepare(self) -> None:
        s = self.settings
        atomic_write_json(stability_dir(self.run_dir) / "stability.json",
                          {"at": s.ks, "points": s.points, "reset_bn": s.reset_bn, "seeds": s.seeds,
                           "rounds": s.rounds, "controls": s.controls})
        for seed in s.seeds:
            self.context.initial_state(seed)  # theta_0: the run's init.pt, or drawn as `tickets prune` draws it

    def complete(self) -> None:
        """stability.csv and the plots, from every path evaluated with these settings."""
        out = stability_dir(self.run_dir)
        rows = path_rows(out, self.settings)
        write_csv_rows(out / "stability.csv", columns(self.settings.points), rows)
        write_plots(pd.DataFrame(rows), self.settings.points, out, self.settings.reset_bn)

    def roots(self):
        """Per seed: the trajectory to the rewind points it lacks, or (all there) its copies."""
        jobs = []
        for seed in self.settings.seeds:
            thetas = self._theta_files(seed)
            missing = tuple(k for k in self.settings.ks if k not in thetas)
            jobs += [TrajectoryJob(self.run_dir, seed, missing, self.overrides)] if missing else self._copies(seed)
        return jobs

    def _copies(self, seed: int) -> list[CopyJob]:
        thetas = self._theta_files(seed)
        return [CopyJob(self.run_dir, *group, i, thetas[group[3]], self.overrides)
                for group in self._groups(seed) for i in range(COPIES)]

    def counts(self, job) -> bool:
        return isinstance(job, CopyJob)

    def priority(self, job) -> tuple:
        if isinstance(job, TrajectoryJob):
            return (0, job.seed)
        return (1, job.seed, job.round, job.variant != "ticket", job.variant, job.k, job.copy)

    def label(self, job) -> str:
        if isinstance(job, TrajectoryJob):
            return f"seed {job.seed} | dense trajectory to iteration {max(job.ks)}"
        return f"seed {job.seed} | round {job.round} | {job.variant} | k={job.k} | copy {job.copy}"

    def end_iteration(self, job) -> int:
        return max(job.ks) if isinstance(job, TrajectoryJob) else self.context.schedule.total

    def after(self, job, row: dict) -> list:
        if isinstance(job, TrajectoryJob):
            return self._copies(job.seed)
        self._copy_trained(job)
        return []

    def record(self, job, row: dict) -> None:
        if isinstance(job, CopyJob):
            self._retrained.add(job.group)
        if isinstance(job, CopyJob) and row.get("diverged_at") is not None:
            self.progress.warn(f"{self.label(job)} diverged at iteration {row['diverged_at']}: its "
                               "path errors are those of non-finite weights; a lower --lr may help")

    # the analysed networks -----------------------------------------------------------
    def _groups(self, seed: int) -> list[tuple]:
        """(seed, round, variant, k) of every network the analysis covers for ``seed``."""
        groups = []
        for round_ in self.settings.rounds:
            variants = ["ticket", *(self.settings.controls if round_ > 0 else [])]
            groups += [(seed, round_, variant, k) for variant in variants for k in self.settings.ks]
        return groups

    def _theta_files(self, seed: int) -> dict[int, str]:
        """The file of theta_k for every k that has one: init.pt, the run's rewind.pt, or a saved trajectory point."""
        seed_dir = Path(self.run_dir) / f"seed_{seed}"  # absolute: jobs may run in another working directory
        files = {0: str(seed_dir / "init.pt")}
        run_rewind = seed_dir / "rewind.pt"
        for k in self.settings.ks:
            if k == 0:
                continue
            if self.existing_run and k == self.context.schedule.rewind and run_rewind.exists():
                files[k] = str(run_rewind)
            elif rewind_path(self.run_dir, seed, k).exists():
                files[k] = str(rewind_path(self.run_dir, seed, k))
        return files

    def _path_is_current(self, group: tuple) -> bool:
        path_file = network_dir(self.run_dir, *group) / "path.json"
        if not path_file.exists():
            return False
        saved = read_json(path_file)
        return saved["points"] == self.settings.points and saved["reset_bn"] == self.settings.reset_bn

    def _copy_trained(self, job: CopyJob) -> None:
        """Note a trained copy; once both copies of its network are, evaluate the path between them."""
        finals = self._finals.setdefault(job.group, {})
        finals[job.copy] = job.dir / "final.pt"
        if len(finals) < COPIES:
            return
        del self._finals[job.group]
        if self._path_is_current(job.group) and job.group not in self._retrained:
            return
        seed, round_, variant, k = job.group
        errors = self._path_errors(self.context.new_model(), [self.store.load(finals[i]) for i in range(COPIES)])
        errors = [round(e, 6) for e in errors]  # accuracies are float32: 6 digits are all they hold
        done = read_json(job.dir / "done.json")
        row = {"seed": seed, "round": round_, "variant": variant, "weights_remaining": done["weights_remaining"],
               "k": k, "instability": round(instability(errors), 6), "err_start": errors[0], "err_end": errors[-1],
               **dict(zip(point_columns(self.settings.points), errors))}
        atomic_write_json(network_dir(self.run_dir, *job.group) / "path.json",
                          {"points": self.settings.points, "reset_bn": self.settings.reset_bn, "row": row})

    def _path_errors(self, model, finals: list) -> list[float]:
        t = self.context.config.train
        device = make_trainer(t.accelerator, t.devices, t.precision).strategy.root_device
        splits = self.context.splits.to(device)
        model.to(device)
        reset = None
        if self.settings.reset_bn:
            size = t.batch_size
            reset = [splits.train_x[i:i + size] for i in range(0, splits.train_x.shape[0], size)]
        try:
            return path_errors(model, finals[0], finals[1], self.settings.points, splits.test_x, splits.test_y, reset)
        finally:
            model.cpu().train()


def path_rows(out: Path, settings: Settings) -> list[dict]:
    """Every analysed network whose path was evaluated with the current points and BatchNorm setting."""
    rows = []
    for path in sorted(out.glob("seed_*/round_*/*/k_*/path.json")):
        data = read_json(path)
        if data["points"] == settings.points and data["reset_bn"] == settings.reset_bn:
            rows.append(data["row"])
    return sorted(rows, key=lambda r: (r["seed"], r["round"], r["variant"] != "ticket", r["variant"], r["k"]))
