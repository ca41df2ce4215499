"""Instability analysis: linear mode connectivity (Frankle, Dziugaite, Roy & Carbin, ICML 2020).

For a network that starts at iteration k (the dense network of a config, or a round's ticket
or control of a run, with the dense network's weights theta_k), two copies train from k to the
end of training with different data orders and augmentation draws. Test error is evaluated at
``points`` evenly spaced points ``(1 - a) * A + a * B`` of the straight line between the two
trained networks A and B, interpolating every parameter and every buffer (BatchNorm statistics
included; integer buffers rounded). ``instability`` = the largest error on the path minus the
mean error of its two ends; a network is *stable* when it is about 0 (the paper's threshold is
2 percentage points). With ``reset_bn`` the BatchNorm statistics of every point are recomputed
on one pass over the (unaugmented) training set before it is evaluated.

theta_k comes from the dense network's own trajectory (same seed, batches and schedule as
``tickets prune`` trains it), so with ``RUN`` the k of the run's rewind point gives exactly its
``rewind.pt``. The masks are the run's (found with its rewind point); a control is derived from
the ticket at k as ``tickets prune`` derives it. Errors are fractions (0.02 = 2 points).

Everything goes to ``<run>/stability/``; each copy is a network directory (metrics.csv,
final.pt, done.json, and a mid-network checkpoint while it trains), so re-running resumes::

    stability.csv  stability.json  instability.png  path_round_<r>.png
    seed_<s>/rewind_<k>.pt                      theta_k (k > 0) from the dense trajectory
    seed_<s>/trajectory/                        the dense network's checkpoint while it runs to the largest k
    seed_<s>/round_<r>/<variant>/k_<k>/copy_0/, copy_1/, path.json
"""
from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from tickets import config as config_mod
from tickets.config import RunConfig
from tickets.errors import TicketsError
from tickets.components import RunContext
from tickets.executors import ExecutionPlan, make_executor
from tickets.jobs import remember_context
from tickets.lottery import check_environment, check_inputs, open_run
from tickets.progress import Progress
from tickets.registry import Registry
from tickets.store import (RunLock, RunStore, atomic_write_bytes, atomic_write_json, read_json,
                           write_csv_rows)
from tickets.stability_jobs import CopyJob, TrajectoryJob, network_dir, rewind_path
from tickets.ticket import State
from tickets.training import loss_and_accuracy, make_trainer

COPIES = 2
STABLE_THRESHOLD = 0.02  # Frankle et al.: stable when instability is below about 2 points


def point_columns(points: int) -> list[str]:
    """``err_0.00`` ... ``err_1.00``: one column per evenly spaced point of the path."""
    return [f"err_{a:.2f}" for a in alphas(points)]


def alphas(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]


def columns(points: int) -> list[str]:
    """stability.csv's columns."""
    return ["seed", "round", "variant", "weights_remaining", "k", "instability", "err_start", "err_end",
            *point_columns(points)]


def interpolate(a: State, b: State, alpha: float) -> State:
    """``(1 - alpha) * a + alpha * b`` for every tensor (parameters and buffers); integer tensors rounded."""
    out = {}
    for name, x in a.items():
        y = b[name]
        if x.is_floating_point():
            out[name] = torch.lerp(x, y, alpha)  # exactly a at 0 and b at 1
        else:
            out[name] = torch.round(torch.lerp(x.double(), y.double(), alpha)).to(x.dtype)
    return out


def instability(errors: list[float]) -> float:
    """The largest error on the path minus the mean error of its two ends."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reset_batchnorm(model: nn.Module, batches) -> None:
    """Recompute every BatchNorm's running statistics as the average over ``batches`` (train-mode passes)."""
    norms = batch_norms(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def path_errors(model: nn.Module, a: State, b: State, points: int, x: torch.Tensor, y: torch.Tensor,
                reset_batches=None) -> list[float]:
    """Test error at ``points`` evenly spaced points from ``a`` to ``b``; ``reset_batches`` resets BatchNorm first."""
    errors = []
    for alpha in alphas(points):
        model.load_state_dict(interpolate(a, b, alpha))
        if reset_batches is not None:
            reset_batchnorm(model, reset_batches)
        model.eval()
        errors.append(1.0 - loss_and_accuracy(model, x, y)[1])
    return errors


@dataclass
class Settings:
    """What to analyse: rewind points (iterations), path points, BatchNorm reset, seeds, rounds, variants."""

    ks: list[int]
    points: int
    reset_bn: bool
    seeds: list[int]
    rounds: list[int]
    controls: list[str]


def parse_at(at: str, per_epoch: int, total: int) -> list[int]:
    """``"0,100it,2ep"`` -> sorted distinct iterations, each before the end of training."""
    ks = []
    for point in [p.strip() for p in str(at).split(",") if p.strip()]:
        k = config_mod.to_iterations(point, per_epoch, "--at")
        if k >= total:
            raise TicketsError(f"--at {point} (iteration {k}) is not before the end of training (iteration {total}, "
                               f"{per_epoch} per epoch); choose earlier points")
        ks.append(k)
    if not ks:
        raise TicketsError("--at names no rewind point; give e.g. --at 0,100it,2ep")
    return sorted(set(ks))


class StabilityAnalysis:
    """Runs (or resumes) the instability analysis of a config's dense network or of a run's rounds."""

    def __init__(self, config: RunConfig, out_root: str | Path, registry: Registry, *, at: str, points: int = 11,
                 reset_bn: bool = False, run_dir: Path | None = None, rounds: list[int] | None = None,
                 controls: list[str] | None = None, seeds: list[int] | None = None, quiet: bool = False):
        if points < 3:
            raise TicketsError(f"--points must be at least 3 (the two ends and a point between), got {points}")
        self.existing_run = run_dir is not None
        if not self.existing_run:
            config.prune.rounds, config.prune.controls = 0, []
        if seeds is not None and not self.existing_run:
            config.seeds = seeds
        if self.existing_run:
            store = RunStore(Path(run_dir).parent, Path(run_dir).name)
        else:
            store = RunStore(Path(out_root), config.name or config_mod.default_name(config, "stability"))
        self.context = RunContext.create(config, registry, store)
        check_environment(config)
        if not self.existing_run:
            open_run(config, Path(out_root), "stability")  # an existing run of that name must have these settings
        self.config, self.store = config, store
        sched = self.context.schedule
        model = self.context.new_model()
        if reset_bn and not batch_norms(model):
            raise TicketsError(f"--reset-bn: model {config.model.name!r} has no BatchNorm layers; drop --reset-bn")
        run_seeds = config.seeds
        if seeds is not None and self.existing_run:
            missing = [s for s in seeds if not (self.store.seed_dir(s) / "init.pt").exists()]
            if missing:
                raise TicketsError(f"seeds {missing} are not in run {self.store.dir} (its seeds: {config.seeds}); "
                                   "choose --seeds among them")
            run_seeds = seeds
        if self.existing_run:
            rounds = self._check_rounds(run_seeds, rounds)
            controls = config.prune.controls if controls is None else controls
            for control in controls:
                registry.entry("controls", control)  # an unknown name fails here; the jobs look it up
        else:
            rounds, controls = [0], []
        self.settings = Settings(parse_at(at, sched.per_epoch, sched.total), points, reset_bn, list(run_seeds),
                                 rounds, list(controls))
        variants = sum(1 if r == 0 else 1 + len(controls) for r in rounds)
        total = len(run_seeds) * variants * len(self.settings.ks) * COPIES
        self.progress = Progress(total, quiet=quiet)
        self.plan = ExecutionPlan.for_run(config, max_parallel=total)
        self.dir = self.store.dir / "stability"
        self.run_dir = str(self.store.dir.resolve())
        self.overrides = self._overrides() if self.existing_run else ()

    def _overrides(self) -> tuple:
        """The settings of RUN the analysis trains with differently (accelerator, devices), for its jobs."""
        stored = config_mod.from_dict(self.store.read_config()).train
        return tuple((f"train.{key}", getattr(self.config.train, key)) for key in ("accelerator", "devices")
                     if getattr(self.config.train, key) != getattr(stored, key))

    def _check_rounds(self, seeds: list[int], rounds: list[int] | None) -> list[int]:
        have = sorted(int(p.parent.name.split("_")[1]) for p in self.store.seed_dir(seeds[0]).glob("round_*/mask.pt"))
        if not have:
            raise TicketsError(f"run {self.store.dir} has no pruning rounds (no round_*/mask.pt); "
                               "give a run made by `tickets prune`")
        rounds = have if rounds is None else sorted(set(rounds))
        for seed in seeds:
            for r in rounds:
                if not (self.store.round_dir(seed, r) / "mask.pt").exists():
                    raise TicketsError(f"round {r} of seed {seed} has no mask in {self.store.dir}; choose --rounds "
                                       f"among {have} or run `tickets prune` further")
        return rounds

    # the whole analysis -------------------------------------------------------
    def run(self) -> Path:
        """Train what is missing, evaluate the paths, write stability.csv, plots and the report lines."""
        s = self.settings
        settings = {"at": s.ks, "points": s.points, "reset_bn": s.reset_bn, "seeds": s.seeds, "rounds": s.rounds,
                    "controls": s.controls}
        for seed in s.seeds:
            check_inputs(self.store, seed)
        executor = make_executor(self.plan, self.progress, self._label)  # fails before anything is written
        if self.existing_run:
            with RunLock(self.store.dir), self.progress:
                if not self.overrides:
                    remember_context(self.context)
                self._analyse(settings, executor)
        else:
            sched = self.context.schedule
            with self.store.running(config_mod.dump(self.config), verb="stability",
                                    components=self.context.provenance, iterations=sched.total,
                                    iterations_per_epoch=sched.per_epoch,
                                    execution=self.plan.describe()), self.progress:
                remember_context(self.context)
                self._analyse(settings, executor)
        return self.dir

    def _analyse(self, settings: dict, executor) -> None:
        atomic_write_json(self.dir / "stability.json", settings)
        with executor:
            self._drive(executor)
        rows = self.rows()
        write_csv_rows(self.dir / "stability.csv", columns(self.settings.points), rows)
        write_plots(pd.DataFrame(rows), self.settings.points, self.dir, self.settings.reset_bn)

    def rows(self) -> list[dict]:
        """Every analysed network whose path was evaluated with the current points and BatchNorm setting."""
        rows = []
        for path in sorted(self.dir.glob("seed_*/round_*/*/k_*/path.json")):
            data = read_json(path)
            if data["points"] == self.settings.points and data["reset_bn"] == self.settings.reset_bn:
                rows.append(data["row"])
        return sorted(rows, key=lambda r: (r["seed"], r["round"], r["variant"] != "ticket", r["variant"], r["k"]))

    # the graph of jobs ----------------------------------------------------------
    def _drive(self, executor) -> None:
        """Hand the executor every copy that can train (and the trajectories theta_k needs) until all are done.

        Every (seed, round, variant, k) is independent once its theta_k exists; a seed's dense
        trajectory (the critical path) goes first. A path is evaluated here as soon as both of
        its copies are trained.
        """
        ready: deque = deque()
        self._waiting: dict[int, list[tuple]] = {}  # seed -> groups waiting for its trajectory
        self._finals: dict[tuple, dict[int, Path]] = {}
        for seed in self.settings.seeds:
            self.context.initial_state(seed)  # theta_0: the run's init.pt, or drawn as `tickets prune` draws it
            thetas = self._theta_files(seed)
            missing = tuple(k for k in self.settings.ks if k not in thetas)
            if missing:
                ready.appendleft(TrajectoryJob(self.run_dir, seed, missing, self.overrides))
            for group in self._groups(seed):
                if self._path_is_current(group):
                    for i in range(COPIES):
                        self.progress.skip(self._label(self._copy_job(group, i, "")))
                elif group[3] in thetas:
                    ready.extend(self._copy_job(group, i, thetas[group[3]]) for i in range(COPIES))
                else:
                    self._waiting.setdefault(seed, []).append(group)
        while ready or executor.pending:
            while ready and executor.pending < executor.capacity:
                job = ready.popleft()
                if isinstance(job, CopyJob) and (job.dir / "done.json").exists():
                    self.progress.skip(self._label(job))
                    self._copy_trained(job)
                    continue
                end = max(job.ks) if isinstance(job, TrajectoryJob) else self.context.schedule.total
                self.progress.start(self._label(job), end)
                executor.submit(job)
            for job, row in executor.wait():
                if isinstance(job, TrajectoryJob):
                    self.progress.end(self._label(job), f"{self._label(job)} | done")
                    thetas = self._theta_files(job.seed)
                    ready.extendleft(self._copy_job(group, i, thetas[group[3]])
                                     for group in reversed(self._waiting.pop(job.seed, [])) for i in (1, 0))
                else:
                    self.progress.finish(self._label(job), row)
                    if row.get("diverged_at") is not None:
                        self.progress.warn(f"{self._label(job)} diverged at iteration {row['diverged_at']}: its "
                                           "path errors are those of non-finite weights; a lower --lr may help")
                    self._copy_trained(job)

    def _groups(self, seed: int) -> list[tuple]:
        """(seed, round, variant, k) of every network the analysis covers for ``seed``."""
        groups = []
        for round_ in self.settings.rounds:
            variants = ["ticket", *(self.settings.controls if round_ > 0 else [])]
            groups += [(seed, round_, variant, k) for variant in variants for k in self.settings.ks]
        return groups

    def _theta_files(self, seed: int) -> dict[int, str]:
        """The file of theta_k for every k that has one: init.pt, the run's rewind.pt, or a saved trajectory point."""
        files = {0: str(self.store.seed_dir(seed) / "init.pt")}
        run_rewind = self.store.seed_dir(seed) / "rewind.pt"
        for k in self.settings.ks:
            if k == 0:
                continue
            if self.existing_run and k == self.context.schedule.rewind and run_rewind.exists():
                files[k] = str(run_rewind)
            elif rewind_path(self.run_dir, seed, k).exists():
                files[k] = str(rewind_path(self.run_dir, seed, k))
        return files

    def _copy_job(self, group: tuple, copy: int, theta_k: str) -> CopyJob:
        return CopyJob(self.run_dir, *group, copy, theta_k, self.overrides)

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
        seed, round_, variant, k = job.group
        errors = self._path_errors(self.context.new_model(), [self.store.load(finals[i]) for i in range(COPIES)])
        errors = [round(e, 6) for e in errors]  # accuracies are float32: 6 digits are all they hold
        done = read_json(job.dir / "done.json")
        row = {"seed": seed, "round": round_, "variant": variant, "weights_remaining": done["weights_remaining"],
               "k": k, "instability": round(instability(errors), 6), "err_start": errors[0], "err_end": errors[-1],
               **dict(zip(point_columns(self.settings.points), errors))}
        atomic_write_json(network_dir(self.run_dir, *job.group) / "path.json",
                          {"points": self.settings.points, "reset_bn": self.settings.reset_bn, "row": row})

    def _label(self, job) -> str:
        if isinstance(job, TrajectoryJob):
            return f"seed {job.seed} | dense trajectory to iteration {max(job.ks)}"
        return f"seed {job.seed} | round {job.round} | {job.variant} | k={job.k} | copy {job.copy}"

    def _path_errors(self, model, finals: list[State]) -> list[float]:
        t = self.config.train
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


# --- plots and report -----------------------------------------------------------------------------

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
             f"points). BatchNorm statistics {'recomputed on the training set at each point (--reset-bn)' if settings['reset_bn'] else 'interpolated, not recomputed'}."
             f" Means over {df['seed'].nunique()} seed(s); all rows in `stability/stability.csv`.", "",
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
        stable = [k for k in by_k.index if by_k[k] < STABLE_THRESHOLD]
        at0 = by_k.get(0, math.nan)
        if not stable:
            verdict = f"unstable at every k analysed (smallest instability {100 * by_k.min():.2f} points)"
        elif len(stable) == len(by_k):
            verdict = f"stable at every k analysed ({', '.join(str(k) for k in by_k.index)})"
        else:
            verdict = f"stable from k = {stable[0]}" + ("" if math.isnan(at0) else
                                                       f" (instability {100 * at0:.2f} points at k = 0)")
        lines.append(f"- Round {round_}, {variant}: {verdict}.")
    lines.append("")
    lines += [f"![{name}]({os.path.relpath(stab / name, relative_to)})\n" for name in
              ["instability.png", *sorted(p.name for p in stab.glob("path_round_*.png"))] if (stab / name).exists()]
    return lines


def add_to_report(report_md: Path, run_dirs: list[Path]) -> None:
    """Append the instability sections of ``run_dirs`` to ``report_md`` (creating it if needed)."""
    lines = []
    for run_dir in run_dirs:
        lines += report_section(Path(run_dir), report_md.parent)
    if not lines:
        return
    text = report_md.read_text() if report_md.exists() else f"# Instability report: {Path(run_dirs[0]).name}\n"
    atomic_write_bytes(report_md, (text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n").encode())
